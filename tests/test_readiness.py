"""Readiness means owning work (issue 20): ``/readyz`` answers 503 until the daemon's partitions are
assigned, and again when a member has owned none for ``input.ready_timeout_s``. Before the change it
answered 200 with no partitions assigned."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.fixtures.daemon import daemon_config, wait_until

pytestmark = pytest.mark.broker


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def test_readyz_is_503_until_partitions_are_assigned_and_when_none_are_owned(broker, fresh_topic, daemon_bundle,
                                                                              inprocess_daemon):
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 1})
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle, http__enabled=True,
                        http__port=0, input__ready_timeout_s=2.0,
                        input__keyless="partition")  # (no repartition topic: one partition in all)
    a = inprocess_daemon(cfg)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if a.http is not None:
                seen.append(_readyz(a.http_port))
            time.sleep(0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        assert wait_until(lambda: bool(seen) and seen[-1][0] == 200, timeout_s=60), seen[-3:]
    finally:
        stop.set()
        w.join()
    before = [(c, m) for c, m in seen if c != 200]
    assert a.daemon._owned, "ready without owning a partition"
    assert before and all(c == 503 for c, _ in before), before[-3:]  # joining: "not connected" / "not assigned yet"
    assert all(c != 200 for c, _ in seen[:len(before)])  # never 200 before the assignment

    # a second member of the group of a 1-partition topic owns nothing: 503 once ready_timeout_s has passed
    b = inprocess_daemon(cfg)
    assert wait_until(lambda: b.daemon.started and b.daemon.connected, timeout_s=60)
    assert wait_until(lambda: bool(a.daemon._owned) != bool(b.daemon._owned), timeout_s=60)
    idle = b if not b.daemon._owned else a
    busy = a if idle is b else b
    assert wait_until(lambda: _readyz(idle.http_port)[0] == 503, timeout_s=30)
    code, msg = _readyz(idle.http_port)
    assert code == 503 and "no partitions assigned" in msg, msg
    assert wait_until(lambda: _readyz(busy.http_port)[0] == 200, timeout_s=30), _readyz(busy.http_port)
    b.stop()
    a.stop()
