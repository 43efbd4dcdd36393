"""``anomon run --workers N``: N daemon processes in one group under one supervisor (monitor/workers.py)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from monitor.config import ConfigError, load_config
from monitor.workers import merge_expositions
from tests.fixtures.daemon import (
    REPO,
    daemon_config,
    expected_window_ids,
    produce_readings,
    read_topic,
    score_ids,
    wait_until,
    write_config,
)

T, S = 16, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _samples(text: str, name: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def _start_pool(broker, topic, bundle, spawn_daemon):
    """``anomon run`` with two workers on ``topic`` (4 partitions); returns (process, HTTP port) once ready."""
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {topic: 4})
    port = _free_port()
    cfg = daemon_config(broker.bootstrap, topic, "g-" + topic, bundle, http__enabled=True, http__port=port,
                        run__workers=2, input__keyless="partition")  # (4 partitions in all: no repartition topic)
    d = spawn_daemon(cfg, name="pool")
    assert wait_until(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90), (_get(port, "/readyz"), d.log()[-3000:])

    def shared() -> bool:  # both workers own partitions (no rebalance left to come while data flows)
        owned = _samples(_get(port, "/metrics")[1], "anomon_assigned_partitions")
        return len(owned) == 2 and all(v > 0 for v in owned.values()) and sum(owned.values()) == 4

    assert wait_until(shared, timeout_s=90), (_get(port, "/metrics")[1][-2000:], d.log()[-3000:])
    return d, port


# --------------------------------------------------------------------------- unit


def test_merge_expositions_labels_every_sample_with_its_worker():
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    texts = {}
    for w, (n, lat) in enumerate([(3, [0.01, 0.2]), (5, [0.02])]):
        r = CollectorRegistry()
        Counter("anomon_windows_scored", "Windows.", ["model"], registry=r).labels(model="m").inc(n)
        h = Histogram("anomon_e2e_seconds", "Latency.", ["model"], buckets=(0.05, 1.0), registry=r)
        for v in lat:
            h.labels(model="m").observe(v)
        texts[w] = generate_latest(r).decode()
    own = CollectorRegistry()
    Counter("anomon_worker_restarts", "Restarts.", registry=own).inc(2)
    out = merge_expositions(texts, generate_latest(own)).decode()
    assert _samples(out, "anomon_windows_scored_total") == {
        (("model", "m"), ("worker", "0")): 3.0, (("model", "m"), ("worker", "1")): 5.0}
    b = _samples(out, "anomon_e2e_seconds_bucket")
    assert b[(("le", "0.05"), ("model", "m"), ("worker", "0"))] == 1.0
    assert b[(("le", "+Inf"), ("model", "m"), ("worker", "0"))] == 2.0
    assert b[(("le", "0.05"), ("model", "m"), ("worker", "1"))] == 1.0
    assert _samples(out, "anomon_worker_restarts_total") == {(): 2.0}
    # one HELP/TYPE per family, whatever the number of workers
    assert out.count("# TYPE anomon_windows_scored_total counter") == 1
    assert out.count("# TYPE anomon_e2e_seconds histogram") == 1


def test_run_workers_is_validated_and_overridable():
    assert load_config(None, env={"ANOMON_RUN__WORKERS": "3"}).run.workers == 3
    with pytest.raises(ConfigError, match=r"run\.workers: must be between 1 and 64, got 0 \(from environment "
                                          r"ANOMON_RUN__WORKERS\)"):
        load_config(None, env={"ANOMON_RUN__WORKERS": "0"})
    with pytest.raises(ConfigError, match=r"run\.workers: expected an integer"):
        load_config(None, env={"ANOMON_RUN__WORKERS": "two"})


# --------------------------------------------------------------------------- real broker


@pytest.mark.broker
@pytest.mark.timeout(300)
def test_two_workers_score_every_window_once_and_serve_one_metrics_endpoint(broker, fresh_topic, daemon_bundle,
                                                                            spawn_daemon):
    bs = broker.bootstrap
    d, port = _start_pool(broker, fresh_topic, daemon_bundle, spawn_daemon)
    assert _get(port, "/healthz")[0] == 200
    series = [f"w{i}" for i in range(12)]
    produce_readings(bs, fresh_topic, series, 120)
    want = expected_window_ids(series, 120, T, S)
    got = read_topic(bs, f"{fresh_topic}.scores", min_count=len(want), timeout_s=90)
    ids = score_ids(got)
    assert set(ids) == want and len(ids) == len(want)
    text = _get(port, "/metrics")[1]
    assert wait_until(lambda: sum(_samples(_get(port, "/metrics")[1], "anomon_windows_scored_total").values())
                      == len(want), timeout_s=30)
    scored = _samples(_get(port, "/metrics")[1], "anomon_windows_scored_total")
    by_worker = {dict(k)["worker"]: v for k, v in scored.items()}
    assert set(by_worker) == {"0", "1"} and all(v > 0 for v in by_worker.values()), by_worker  # both own partitions
    assert _samples(text, "anomon_workers") == {(("state", "down"),): 0.0, (("state", "running"),): 2.0,
                                                (("state", "starting"),): 0.0}
    assert d.terminate() == 0, d.log()[-3000:]
    logs = [json.loads(ln) for ln in d.log().splitlines() if ln.startswith("{")]
    assert {str(x.get("worker")) for x in logs if x.get("msg") == "drained"} == {"0", "1"}
    assert any(x.get("msg") == "stopped 2 workers" for x in logs)


@pytest.mark.broker
@pytest.mark.timeout(300)
def test_a_killed_worker_is_started_again_and_no_window_is_lost(broker, fresh_topic, daemon_bundle, spawn_daemon):
    bs = broker.bootstrap
    d, port = _start_pool(broker, fresh_topic, daemon_bundle, spawn_daemon)
    series = [f"k{i}" for i in range(8)]
    produce_readings(bs, fresh_topic, series, 80)
    assert wait_until(lambda: len(read_topic(bs, f"{fresh_topic}.scores", timeout_s=10, idle_s=1)) > 0, timeout_s=60)
    pids = {}
    for ln in d.log().splitlines():
        if ln.startswith("{"):
            x = json.loads(ln)
            if str(x.get("msg", "")).startswith("worker ") and "started (pid" in x["msg"]:
                pids[x["worker_index"]] = x["pid"]
    assert set(pids) == {0, 1}, d.log()[-3000:]
    os.kill(pids[1], signal.SIGKILL)
    produce_readings(bs, fresh_topic, series, 200, start=80)
    assert wait_until(lambda: _samples(_get(port, "/metrics")[1], "anomon_worker_restarts_total") == {(): 1.0},
                      timeout_s=60), d.log()[-3000:]
    assert wait_until(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90), d.log()[-3000:]
    want = expected_window_ids(series, 200, T, S)
    ok = wait_until(lambda: want <= set(score_ids(read_topic(bs, f"{fresh_topic}.scores", timeout_s=20, idle_s=1))),
                    timeout_s=120, every_s=1.0)
    got = read_topic(bs, f"{fresh_topic}.scores", timeout_s=20, idle_s=1)
    assert d.terminate() == 0, d.log()[-3000:]
    ids = score_ids(got)
    assert ok and set(ids) == want, sorted(want - set(ids))[:10]  # duplicates allowed (at least once)
    for _, v, _ in got:
        rec = json.loads(v)
        assert rec["end_ts"] - rec["start_ts"] == (T - 1) * 10


@pytest.mark.broker
@pytest.mark.timeout(180)
def test_workers_that_fail_before_serving_stop_the_pool_with_their_error(broker, daemon_bundle, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(daemon_bundle, model)
    c = json.loads((model / "config.json").read_text())
    c["detector"] = "no-such-detector"
    (model / "config.json").write_text(json.dumps(c))
    cfg = daemon_config(broker.bootstrap, "pool-trouble-in", "g-pool-trouble", model, run__workers=2)
    path = write_config(tmp_path / "c.toml", cfg)
    p = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--config", str(path)], cwd=REPO,
                       capture_output=True, text=True, timeout=150)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-3000:]
    assert "no-such-detector" in p.stderr  # the workers' own error lines
    assert lines[-1].startswith("anomon: error: worker ") and "3 times in a row before it served" in lines[-1], lines[-1]
    assert "Traceback" not in p.stderr


@pytest.mark.broker
@pytest.mark.timeout(180)
def test_workers_stop_when_their_supervisor_is_killed(broker, fresh_topic, daemon_bundle, spawn_daemon):
    """kill -9 of the supervisor leaves no worker behind: each gets SIGTERM (drains, commits) and exits."""
    d, port = _start_pool(broker, fresh_topic, daemon_bundle, spawn_daemon)
    pids = [json.loads(ln)["pid"] for ln in d.log().splitlines()
            if ln.startswith("{") and "started (pid" in json.loads(ln).get("msg", "")]
    assert len(pids) == 2
    assert d.kill() == -9

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (exited, not yet reaped by init) counts as gone
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] == "Z"
        except OSError:
            return True

    assert wait_until(lambda: all(gone(p) for p in pids), timeout_s=60), pids
