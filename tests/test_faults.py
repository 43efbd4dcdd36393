"""Faults against the real embedded broker and real daemon processes (issue 7): kill -9 and restart,
1 -> 2 -> 3 -> 1 processes in one group during a replay, a broker restart mid-stream, and model
trouble at start and at hot reload. Figures go to ``$ANOMON_RELIABILITY_OUT`` (tests/RELIABILITY.md).

No timed assertions: deadlines below only bound liveness waits.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from monitor.reliability import record
from tests.fixtures.daemon import (
    REPO,
    T0_MS,
    backend_kw,
    daemon_config,
    expected_window_ids,
    make_bundle,
    over_backends,
    produce_readings,
    read_topic,
    score_ids,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

T, S, PERIOD = 16, 4, 10
WINDOW_SPAN_MS = (T - 1) * PERIOD


def _create(bootstrap: str, topics: dict[str, int]) -> None:
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=bootstrap), topics)


class ScoreCollector:
    """Reads a scores topic continuously from the beginning in a thread; ``ids`` grows as scores arrive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        from streams.kafka import KafkaConsumer, KafkaSettings, TopicPartition

        self.ids: list[str] = []
        self.incomplete: list[str] = []
        self._stop = threading.Event()
        self._c = KafkaConsumer(**KafkaSettings(bootstrap_servers=bootstrap).to_kafka_python(),
                                enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._c.assign(tps)
        self._c.seek_to_beginning(*tps)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for recs in self._c.poll(timeout_ms=200).values():
                for r in recs:
                    v = json.loads(r.value)
                    self.ids.append(v["id"])
                    if v["end_ts"] - v["start_ts"] != WINDOW_SPAN_MS:
                        self.incomplete.append(v["id"])

    def wait_for(self, want: set[str], timeout_s: float = 120.0) -> bool:
        return wait_until(lambda: want <= set(self.ids), timeout_s=timeout_s, every_s=0.3)

    def close(self) -> None:
        self._stop.set()
        self._t.join(10)
        self._c.close()


class Replay(threading.Thread):
    """Produce readings for ``series`` step by step (``step`` readings each) until stopped or ``n_max``."""

    def __init__(self, bootstrap: str, topic: str, series: list[str], start: int, step: int = 8,
                 pause_s: float = 0.15, n_max: int = 100_000):
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, series)
        self.n, self.step, self.pause_s, self.n_max = start, step, pause_s, n_max
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from streams.kafka import KafkaSettings, Sink

        bootstrap, topic, series = self.args
        try:
            with Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=5) as sink:
                while not self._halt.is_set() and self.n < self.n_max:
                    nxt = min(self.n_max, self.n + self.step)
                    produce_readings(bootstrap, topic, series, nxt, start=self.n, sink=sink)
                    self.n = nxt
                    self._halt.wait(self.pause_s)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self, finish: bool = False) -> int:
        """Stop after the current step (``finish``: after ``n_max``); returns readings produced per series."""
        if finish:
            self.pause_s = 0.0
        else:
            self._halt.set()
        self.join(120)
        if self.error:
            raise self.error
        return self.n


def _assigned(d) -> int:
    return d.log().count('"msg": "partitions assigned"')


# --------------------------------------------------------------------------- crash


def test_crash_kill9_mid_stream_then_restart_loses_no_window(broker, fresh_topic, daemon_bundle, spawn_daemon):
    from streams.kafka import KafkaSettings, committed_offsets

    bs, topic = broker.bootstrap, fresh_topic
    settings = KafkaSettings(bootstrap_servers=bs)
    _create(bs, {topic: 4, f"{topic}.scores": 4})
    series = [f"c{i}" for i in range(8)]
    # commits every 2 s: windows emitted since the last commit are emitted again after the kill (duplicates)
    cfg = daemon_config(bs, topic, "g-" + topic, daemon_bundle, output__commit_interval_s=2.0)
    produce_readings(bs, topic, series, 80)
    col = ScoreCollector(bs, f"{topic}.scores", 4)
    try:
        d1 = spawn_daemon(cfg, name="crash-1")
        assert wait_until(lambda: len(col.ids) >= 40, timeout_s=90), d1.log()[-3000:]
        replay = Replay(bs, topic, series, start=80, n_max=400)
        replay.start()
        # kill -9 while the replay runs, after a commit, with windows emitted since that commit
        assert wait_until(lambda: committed_offsets(settings, "g-" + topic), timeout_s=90), d1.log()[-3000:]
        seen = len(col.ids)
        assert wait_until(lambda: len(col.ids) >= seen + 40 or replay.n >= 400, timeout_s=90), d1.log()[-3000:]
        windows_before_kill, replay_running = len(col.ids), replay.n < 400
        assert d1.kill() == -9
        n = replay.stop(finish=True)
        assert n == 400
        d2 = spawn_daemon(cfg, name="crash-2")
        want = expected_window_ids(series, n, T, S)
        ok = col.wait_for(want, timeout_s=120)
        got = list(col.ids)
        assert d2.terminate() == 0, d2.log()[-3000:]
    finally:
        col.close()
    lost = want - set(got)
    assert ok and not lost, (sorted(lost)[:10], d2.log()[-3000:])
    assert set(got) == want  # nothing foreign either
    assert not col.incomplete
    dups = len(got) - len(set(got))
    record("crash-kill9", {"windows_expected": len(want), "windows_lost": len(lost), "duplicates": dups,
                           "scores_before_kill": windows_before_kill, "replay_running_at_kill": replay_running,
                           "incomplete_windows": len(col.incomplete)},
           title="kill -9 of `anomon run` mid-stream, then restart",
           notes="duplicates: windows scored after the last commit before the kill, re-emitted under the same id",
           reproduce="pytest tests/test_faults.py::test_crash_kill9_mid_stream_then_restart_loses_no_window")


# --------------------------------------------------------------------------- rebalance


def test_rebalance_1_2_3_1_processes_during_a_replay(broker, fresh_topic, daemon_bundle, spawn_daemon):
    bs, topic = broker.bootstrap, fresh_topic
    _create(bs, {topic: 4, f"{topic}.scores": 4})
    series = [f"r{i}" for i in range(12)]
    cfg = daemon_config(bs, topic, "g-" + topic, daemon_bundle, input__session_timeout_ms=6000)
    col = ScoreCollector(bs, f"{topic}.scores", 4)
    procs = []
    try:
        d0 = spawn_daemon(cfg, name="rb-0")
        procs.append(d0)
        replay = Replay(bs, topic, series, start=0, step=4, pause_s=0.2)
        replay.start()
        assert wait_until(lambda: len(col.ids) > 0, timeout_s=90), d0.log()[-3000:]
        phases = [1]
        for k in (1, 2):  # 1 -> 2 -> 3 processes
            before = _assigned(d0)
            d = spawn_daemon(cfg, name=f"rb-{k}")
            procs.append(d)
            assert wait_until(lambda: _assigned(d) >= 1 and _assigned(d0) > before, timeout_s=120), d.log()[-3000:]
            phases.append(k + 1)
            seen = len(col.ids)
            assert wait_until(lambda: len(col.ids) > seen, timeout_s=60)
        before = _assigned(d0)
        for d in procs[1:]:  # 3 -> 1: the two newer ones drain and leave
            assert d.terminate() == 0, d.log()[-3000:]
        assert wait_until(lambda: _assigned(d0) > before, timeout_s=120), d0.log()[-3000:]
        phases.append(1)
        seen = len(col.ids)
        assert wait_until(lambda: len(col.ids) > seen, timeout_s=60)
        n = replay.stop()
        want = expected_window_ids(series, n, T, S)
        ok = col.wait_for(want, timeout_s=120)
        got = list(col.ids)
        assert d0.terminate() == 0, d0.log()[-3000:]
    finally:
        col.close()
    lost = want - set(got)
    assert ok and not lost, sorted(lost)[:10]
    assert set(got) == want
    assert not col.incomplete, col.incomplete[:5]
    per_proc = [sum(1 for ln in d.log().splitlines() if '"msg": "partitions assigned"' in ln) for d in procs]
    record("rebalance-1-2-3-1", {"processes": "->".join(map(str, phases)), "readings_per_series": n,
                                 "windows_expected": len(want), "windows_lost": len(lost),
                                 "duplicates": len(got) - len(set(got)), "incomplete_windows": len(col.incomplete),
                                 "assignments_per_process": per_proc},
           title="consumer group 1 -> 2 -> 3 -> 1 `anomon run` processes during a replay",
           notes="12 series, 4 partitions; leaving processes get SIGTERM (drain + commit)",
           reproduce="pytest tests/test_faults.py::test_rebalance_1_2_3_1_processes_during_a_replay")


# --------------------------------------------------------------------------- broker restart


def _readyz(port: int) -> bool | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


@over_backends
def test_broker_restart_mid_stream(own_broker, fresh_topic, daemon_bundle, inprocess_daemon, backend):
    """Stop and start the (in-memory) broker on the same port under a running daemon.

    Tansu's memory storage keeps nothing: topics, committed offsets and messages are gone after
    the restart. The daemon survives, reports not-ready while disconnected, reconnects, recreates
    its producer (the idempotent one is rejected by the new broker) and scores the new stream. No
    window is lost: those whose first readings lived only in the dead broker (they straddle the
    restart) are completed from the daemon's parked state.
    """
    from streams.broker import free_port
    from streams.kafka import KafkaSettings, committed_offsets, topic_partitions

    b = own_broker(port=free_port())
    bs, topic, group = b.bootstrap, fresh_topic, "g-" + fresh_topic
    settings = KafkaSettings(bootstrap_servers=bs)
    _create(bs, {topic: 2})
    series = ["a", "b", "c"]
    n1, n2 = 100, 200
    cfg = daemon_config(bs, topic, group, daemon_bundle, http__enabled=True, http__port=0, kafka__partitions=2,
                        **backend_kw(backend))
    r = inprocess_daemon(cfg)
    port = r.http_port
    produce_readings(bs, topic, series, n1)
    want1 = expected_window_ids(series, n1, T, S)
    got1 = read_topic(bs, f"{topic}.scores", min_count=len(want1), timeout_s=90)
    assert set(score_ids(got1)) == want1
    assert wait_until(lambda: r.daemon.stats["commits"] >= 1 and _readyz(port), timeout_s=60)
    assert wait_until(lambda: committed_offsets(settings, group), timeout_s=30)
    before = {"topics": sorted(t for t in (topic, f"{topic}.scores", f"{topic}.dlq", f"{group}.progress")
                               if topic_partitions(settings, t)),
              "committed_partitions": len(committed_offsets(settings, group))}

    b.stop()
    t_down = time.monotonic()
    assert wait_until(lambda: _readyz(port) is False, timeout_s=60), "never reported not-ready"
    saw_not_ready = time.monotonic() - t_down
    b.start()  # same port (EmbeddedBroker.restart() does stop + start like this)
    t_up = time.monotonic()
    # topics may come back at once, empty: clients' metadata requests and the daemon's producer
    # auto-create them; what matters is that offsets and messages are gone
    after = {"topics": sorted(t for t in before["topics"] if topic_partitions(settings, t)),
             "committed_partitions": len(committed_offsets(settings, group)),
             "input_messages": len(read_topic(bs, topic, timeout_s=5, idle_s=1)),
             "phase1_scores": len(set(score_ids(read_topic(bs, f"{topic}.scores", timeout_s=5, idle_s=1))) & want1)}
    assert wait_until(lambda: _readyz(port), timeout_s=120), "never ready again"
    ready_after = time.monotonic() - t_up
    _create(bs, {topic: 2})  # as a producer with auto-create (or an operator) would
    produce_readings(bs, topic, series, n2, start=n1)
    all_ids = expected_window_ids(series, n2, T, S)
    straddling = {i for i in all_ids - want1
                  if int(i.split("@")[1]) // 1000 - WINDOW_SPAN_MS < T0_MS + n1 * PERIOD}
    want2 = all_ids - want1
    deadline = time.monotonic() + 120
    got2: set[str] = set()
    while not want2 <= got2 and time.monotonic() < deadline:
        got2 = set(score_ids(read_topic(bs, f"{topic}.scores", timeout_s=20, idle_s=2)))
    stats = r.stop()
    lost = all_ids - want1 - got2
    assert not lost, sorted(lost)[:10]
    assert straddling <= got2
    got2_recs = read_topic(bs, f"{topic}.scores", timeout_s=20, idle_s=2)
    got2_list = score_ids(got2_recs)
    assert set(got2_list) <= all_ids, sorted(set(got2_list) - all_ids)[:10]
    spans = {json.loads(v)["end_ts"] - json.loads(v)["start_ts"] for _, v, _ in got2_recs}
    assert spans == {WINDOW_SPAN_MS}, spans  # straddling windows complete, not restarted
    assert after["committed_partitions"] == 0 and after["input_messages"] == 0 and after["phase1_scores"] == 0
    assert stats["unreadable_batches"] == 0  # a topic missing for a while is not an unreadable batch
    case = "broker-restart" + (f"-{backend}" if backend else "")  # the default backend keeps the old name
    record(case, {"backend": cfg.kafka.client, "windows_expected": len(all_ids), "windows_lost": len(lost),
                  "lost_windows_straddling_restart": f"{len(lost & straddling)} of {len(straddling)} "
                                                     f"({len(series)} series x ceil(T/S)-1)",
                  "duplicates_after_restart": len(got2_list) - len(set(got2_list)),
                  "readyz_false_within_s": round(saw_not_ready, 1),
                  "ready_again_after_start_s": round(ready_after, 1),
                  "producer_recreated": stats["rewinds"] >= 1,
                  "topics_before_after": f"{len(before['topics'])} -> {len(after['topics'])}",
                  "committed_offsets_before_after": f"{before['committed_partitions']} -> "
                                                    f"{after['committed_partitions']}",
                  "input_messages_after": after["input_messages"],
                  "scores_written_before_left_on_broker": after["phase1_scores"]},
           title="broker stop + start on the same port mid-stream (Tansu, memory storage)",
           notes="memory storage keeps nothing: topics, committed offsets, progress and messages are lost "
                 "(topics may be auto-created again, empty, by clients); the daemon keeps the open windows of "
                 "partitions it loses and continues them when the log comes back reset: 0 windows lost, "
                 "straddling ones included",
           reproduce="pytest tests/test_faults.py::test_broker_restart_mid_stream")


# --------------------------------------------------------------------------- model trouble


def _break(kind: str, src: Path, dst: Path) -> Path:
    import shutil

    if kind == "missing":
        return dst / "nope"
    shutil.copytree(src, dst)
    if kind == "corrupt-weights":
        (dst / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    elif kind == "corrupt-meta":
        (dst / "anomon.json").write_text('{"format": 1, "window": ')
    elif kind == "incompatible-format":
        c = json.loads((dst / "config.json").read_text())
        c["format_version"] = 99
        (dst / "config.json").write_text(json.dumps(c))
    elif kind == "unknown-detector":
        c = json.loads((dst / "config.json").read_text())
        c["detector"] = "no-such-detector"
        (dst / "config.json").write_text(json.dumps(c))
    return dst


@pytest.mark.parametrize("kind", ["missing", "corrupt-weights", "corrupt-meta", "incompatible-format",
                                  "unknown-detector", "window-mismatch"])
def test_model_trouble_at_start_is_a_clear_error(kind, broker, daemon_bundle, tmp_path):
    model = daemon_bundle if kind == "window-mismatch" else _break(kind, daemon_bundle, tmp_path / "m")
    extra = {"window__length": 32} if kind == "window-mismatch" else {}
    cfg = daemon_config(broker.bootstrap, "trouble-in", "g-trouble", model, **extra)
    path = write_config(tmp_path / "c.toml", cfg)
    p = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--config", str(path)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-2000:]
    assert lines and lines[-1].startswith("anomon: error: "), p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    msg = lines[-1]
    if kind != "window-mismatch":
        assert str(model) in msg
    expect = {"missing": "does not exist", "corrupt-weights": "safetensors", "corrupt-meta": "corrupt",
              "incompatible-format": "format_version 99", "unknown-detector": "no-such-detector",
              "window-mismatch": "window.length"}[kind]
    assert expect in msg, msg
    record(f"model-start-{kind}", {"exit_code": p.returncode, "error": msg.replace(str(tmp_path), "…")[:160]},
           title=f"model at start: {kind}",
           reproduce=f"pytest 'tests/test_faults.py::test_model_trouble_at_start_is_a_clear_error[{kind}]'")


def test_model_trouble_at_hot_reload_keeps_the_old_model(broker, fresh_topic, tmp_path, inprocess_daemon, caplog):
    import shutil

    bs, topic = broker.bootstrap, fresh_topic
    _create(bs, {topic: 1, f"{topic}.scores": 1})
    model = make_bundle(tmp_path / "model", version="v1")
    # watch_interval 0: reloads only on request (what SIGHUP does), so each step is exactly one attempt
    cfg = daemon_config(bs, topic, "g-" + topic, model, model__watch_interval_s=0, kafka__partitions=1)
    r = inprocess_daemon(cfg)
    reg = r.metrics.registry

    def failures() -> float:
        return reg.get_sample_value("anomon_model_reload_failures_total", {"model": "test-model"}) or 0.0

    col = ScoreCollector(bs, f"{topic}.scores", 1)
    versions: dict[str, set] = {}
    try:
        series, n = ["h0", "h1"], 0
        outcomes = []
        for step, breakage in enumerate(["corrupt-weights", "window-length", "pickle", None]):
            before = failures()
            staging = tmp_path / f"staging-{step}"
            if breakage == "window-length":
                make_bundle(staging, length=24, version="v-wrong-length")
            else:
                make_bundle(staging, version="v2" if breakage is None else f"v-{breakage}")
            if breakage == "corrupt-weights":
                (staging / "weights.safetensors").write_bytes(b"not safetensors at all")
            elif breakage == "pickle":
                (staging / "weights.safetensors").write_bytes(_pickle_payload(tmp_path / "pwned"))
            shutil.rmtree(model)
            shutil.copytree(staging, model)
            r.daemon.request_reload()
            if breakage:
                assert wait_until(lambda: failures() > before, timeout_s=60), caplog.text[-2000:]
                outcomes.append((breakage, r.daemon.bundle.version, r.daemon.watcher.last_error))
            else:
                assert wait_until(lambda: r.daemon.bundle.version == "v2", timeout_s=60), caplog.text[-2000:]
            produce_readings(bs, topic, series, n + 40, start=n)
            n += 40
            want = expected_window_ids(series, n, T, S)
            assert col.wait_for(want, timeout_s=90)
        for _, v, _ in read_topic(bs, f"{topic}.scores", timeout_s=30, idle_s=1):
            rec = json.loads(v)
            versions.setdefault(rec["version"], set()).add(rec["id"])
    finally:
        col.close()
    r.stop()
    assert not (tmp_path / "pwned").exists()
    for breakage, serving, err in outcomes:
        assert serving == "v1", (breakage, serving)
        assert err and str(model) in err
    assert "model reload failed, still serving" in caplog.text
    assert set(versions) == {"v1", "v2"}  # the broken bundles never served a window
    assert failures() == 3
    record("model-hot-reload", {"bad_reloads_tried": 3, "reload_failures_metric": int(failures()),
                                "served_versions": sorted(versions), "windows_scored": sum(map(len, versions.values())),
                                "pickle_executed": (tmp_path / "pwned").exists()},
           title="model hot reload: corrupt weights, wrong window length, pickle payload, then a good one",
           notes="old model keeps serving; each failure: `anomon_model_reload_failures_total` + an ERROR log line",
           reproduce="pytest tests/test_faults.py::test_model_trouble_at_hot_reload_keeps_the_old_model")


def _pickle_payload(marker: Path) -> bytes:
    import pickle

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Evil())
