"""The daemon against the real embedded broker: every window scored exactly once, DLQ reasons,
SIGTERM drain, restart without loss, several workers in one group."""
from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.daemon import (
    backend_kw,
    daemon_config,
    expected_window_ids,
    over_backends,
    produce_readings,
    read_topic,
    score_ids,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

T, S = 16, 4


def _create(bootstrap, topic, partitions=4):
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=bootstrap), {topic: partitions})


@pytest.mark.parametrize("form,scoring", [("single", "inline"), ("chunk", "inline"), ("single", "thread")])
def test_every_window_scored_exactly_once(broker, fresh_topic, daemon_bundle, inprocess_daemon, form, scoring,
                                          monkeypatch):
    """Every window once, with the model called inline (a cheap model) and on the scoring thread (the
    path of slow models, forced here)."""
    if scoring == "thread":
        import monitor.daemon.scoring

        monkeypatch.setattr(monitor.daemon.scoring, "INLINE_SCORE_S", -1.0)
    _create(broker.bootstrap, fresh_topic)
    series = [f"s{i}" for i in range(5)]
    produce_readings(broker.bootstrap, fresh_topic, series, 150, form=form, anomaly=(100, 110))
    r = inprocess_daemon(daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle,
                                       http__enabled=True, http__port=0))
    want = expected_window_ids(series, 150, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    import urllib.error
    import urllib.request

    def status(path):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{r.http_port}{path}").status
        except urllib.error.HTTPError as e:
            return e.code

    base = f"http://127.0.0.1:{r.http_port}"
    assert status("/healthz") == 200
    assert wait_until(lambda: status("/readyz") == 200, timeout_s=10)
    assert wait_until(lambda: b"anomon_windows_scored_total" in urllib.request.urlopen(base + "/metrics").read(),
                      timeout_s=10)
    stats = r.stop()
    ids = score_ids(got)
    assert set(ids) == want
    assert len(ids) == len(want)  # exactly once on a clean run
    ends: dict[str, list] = {}  # each series' records in window order (one partition, batches in order)
    for _, v, _ in got:
        ends.setdefault(json.loads(v)["series"], []).append(json.loads(v)["end_ts"])
    assert all(e == sorted(e) for e in ends.values())
    rec = json.loads(got[0][1])
    assert set(rec) >= {"id", "series", "start_ts", "end_ts", "scores", "thresholds", "anomalous", "model", "version"}
    assert set(rec["scores"]) == {"max_abs_z", "mean_sq_z"}
    assert rec["end_ts"] - rec["start_ts"] == (T - 1) * 10
    # the injected burst on s0 is flagged and raises one alert (hysteresis), keyed by series
    flagged = {json.loads(v)["id"] for _, v, _ in got if json.loads(v)["anomalous"]}
    assert any(i.startswith("s0@") for i in flagged)
    alerts = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", timeout_s=10, idle_s=1)]
    starts = [a for a in alerts if a["event"] == "start" and a["series"] == "s0"]
    assert len(starts) >= 1 and starts[0]["id"].startswith("s0@")
    assert stats["windows"] == len(want) and stats["commits"] >= 1
    assert (stats["threaded_batches"] > 0) == (scoring == "thread")


def test_child_process_scores_every_window_once_in_order(broker, fresh_topic, daemon_bundle, inprocess_daemon,
                                                          monkeypatch):
    """A slow model (forced) scores in a child process once the child has loaded it, the scoring thread
    meanwhile: every window once, each series in order, the same scores as the model in this process."""
    import monitor.daemon.scoring
    from monitor.modelstore import load_bundle

    monkeypatch.setattr(monitor.daemon.scoring, "INLINE_SCORE_S", -1.0)
    _create(broker.bootstrap, fresh_topic)
    series = [f"s{i}" for i in range(5)]
    produce_readings(broker.bootstrap, fresh_topic, series, 150)
    r = inprocess_daemon(daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle,
                                       scoring__child_process=True))
    assert wait_until(lambda: r.daemon._child is not None and r.daemon._child.ready(), timeout_s=120)
    produce_readings(broker.bootstrap, fresh_topic, series, 300, start=150)
    want = expected_window_ids(series, 300, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    stats = r.stop()
    assert stats["child_batches"] > 0 and stats["windows"] == len(want)
    assert sorted(score_ids(got)) == sorted(want)
    recs = [json.loads(v) for _, v, _ in got]
    ends: dict[str, list] = {}
    for rec in recs:
        ends.setdefault(rec["series"], []).append(rec["end_ts"])
    assert all(e == sorted(e) for e in ends.values())
    # the child's scores are the model's: score the last windows of s1 here and compare
    import numpy as np

    from tests.fixtures.daemon import _sine

    b = load_bundle(daemon_bundle)
    X = np.array([_sine(1, np.arange(w * S, w * S + T)) for w in range((300 - T) // S - 2, (300 - T) // S + 1)],
                 dtype=np.float32)[:, :, None]
    here = b.score_windows(X)
    mine = {rec["end_ts"]: rec["scores"] for rec in recs if rec["series"] == "s1"}
    last = sorted(mine)[-3:]
    for c in here.keys():
        assert np.allclose([mine[e][c] for e in last], here[c], rtol=1e-5, atol=1e-6)


def test_bad_records_go_to_the_dlq_with_a_reason(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    from streams.kafka import KafkaSettings, Sink

    _create(broker.bootstrap, fresh_topic, partitions=1)
    bad = [
        (b"x", b"not json"),
        (None, b'{"ts": 1, "value": 1}'),
        (b"x", b'{"series": "x", "ts": 1700000000000, "value": "high"}'),
        (b"x", b'{"series": "x", "ts": 1700000000000, "values": [1, 2]}'),
        (b"x", b'{"series": "x", "ts": 1700000000000, "value": NaN}'),
    ]
    with Sink(KafkaSettings(bootstrap_servers=broker.bootstrap)) as sink:
        for k, v in bad:
            sink.send(fresh_topic, v, key=k)
    produce_readings(broker.bootstrap, fresh_topic, ["good"], 40)
    with Sink(KafkaSettings(bootstrap_servers=broker.bootstrap)) as sink:  # a late and a duplicate reading
        sink.send(fresh_topic, b'{"series": "good", "ts": 1700000000005, "value": 0}', key=b"good")
        sink.send(fresh_topic, b'{"series": "good", "ts": 1700000000390, "value": 0}', key=b"good")
    r = inprocess_daemon(daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle))
    dlq = read_topic(broker.bootstrap, f"{fresh_topic}.dlq", min_count=7, timeout_s=60)
    want = expected_window_ids(["good"], 40, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=30)
    r.stop()
    # the DLQ is keyed like the input (several partitions): order by source offset
    dlq.sort(key=lambda r: int(dict(r[2])["anomon.source"].decode().rsplit(":", 1)[1]))
    reasons = [dict(h)["anomon.reason"].decode() for _, _, h in dlq]
    assert reasons == ["undecodable", "missing_field", "bad_field", "wrong_width", "nan_or_inf", "late", "duplicate"]
    assert all(dict(h).get("anomon.error") for _, _, h in dlq)
    assert set(score_ids(got)) == want


def test_sigterm_drains_and_restart_loses_nothing(broker, fresh_topic, daemon_bundle, spawn_daemon):
    """Run a subprocess, SIGTERM it mid-stream, produce more, restart: every window is scored, all complete."""
    _create(broker.bootstrap, fresh_topic)
    series = [f"s{i}" for i in range(8)]
    cfg = daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle)
    produce_readings(broker.bootstrap, fresh_topic, series, 90)
    d = spawn_daemon(cfg)
    first = expected_window_ids(series, 90, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(first), timeout_s=90)
    assert len(got) >= len(first), d.log()[-3000:]
    assert d.terminate() == 0, d.log()[-3000:]
    assert '"msg": "drained"' in d.log() and '"committed": true' in d.log()
    produce_readings(broker.bootstrap, fresh_topic, series, 170, start=90)
    d2 = spawn_daemon(cfg)
    want = expected_window_ids(series, 170, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=90)
    assert d2.terminate() == 0, d2.log()[-3000:]
    ids = score_ids(got)
    assert set(ids) == want, d2.log()[-3000:]
    assert len(ids) == len(want)  # a drained stop leaves nothing to emit twice
    for _, v, _ in got:
        rec = json.loads(v)
        assert rec["end_ts"] - rec["start_ts"] == (T - 1) * 10  # complete windows only


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_in_one_group_share_partitions(broker, fresh_topic, daemon_bundle, inprocess_daemon, workers):
    _create(broker.bootstrap, fresh_topic)
    series = [f"w{i}" for i in range(12)]
    cfg = daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle)
    runs = [inprocess_daemon(cfg, name=f"worker-{i}") for i in range(workers)]
    def inputs(r):  # (the group also shares the repartition topic's partitions)
        return {tp for tp in r.daemon._owned if tp.topic == fresh_topic}

    assert wait_until(lambda: sum(len(inputs(r)) for r in runs) == 4 and all(inputs(r) for r in runs), timeout_s=60)
    produce_readings(broker.bootstrap, fresh_topic, series, 120)
    want = expected_window_ids(series, 120, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=90)
    stats = [r.stop() for r in runs]
    ids = score_ids(got)
    assert set(ids) == want
    assert len(ids) == len(want)
    assert all(s["windows"] > 0 for s in stats)
    assert sum(s["windows"] for s in stats) == len(want)


def test_worker_joining_mid_stream_loses_no_window(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    """1 -> 2 -> 1 workers while data flows: windows are complete and none is lost (duplicates allowed).
    Series states are packed at every housekeeping pass (``pack_after_s = 0``), so packed states are
    committed, snapshotted, handed over and unpacked along the way."""
    _create(broker.bootstrap, fresh_topic)
    series = [f"j{i}" for i in range(10)]
    cfg = daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle, window__pack_after_s=0.0,
                        input__keyless="partition")  # (the assignor may balance on repartition partitions)
    a = inprocess_daemon(cfg, name="a")
    produce_readings(broker.bootstrap, fresh_topic, series, 60)
    assert wait_until(lambda: a.daemon.stats["windows"] > 0, timeout_s=60)
    b = inprocess_daemon(cfg, name="b")
    produce_readings(broker.bootstrap, fresh_topic, series, 120, start=60)
    def inputs(r):  # (the group also shares the repartition topic's partitions)
        return {tp for tp in r.daemon._owned if tp.topic == fresh_topic}

    assert wait_until(lambda: inputs(b) and inputs(a), timeout_s=60)
    produce_readings(broker.bootstrap, fresh_topic, series, 160, start=120)
    time.sleep(1.0)
    a.stop()
    produce_readings(broker.bootstrap, fresh_topic, series, 200, start=160)
    want = expected_window_ids(series, 200, T, S)
    assert wait_until(lambda: len(inputs(b)) == 4, timeout_s=60)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=90, idle_s=5)
    deadline = time.monotonic() + 30
    while set(score_ids(got)) != want and time.monotonic() < deadline:
        time.sleep(2)
        got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", timeout_s=30, idle_s=2)
    b.stop()
    ids = score_ids(got)
    assert set(ids) == want
    for _, v, _ in got:
        rec = json.loads(v)
        assert rec["end_ts"] - rec["start_ts"] == (T - 1) * 10


def test_changed_model_file_is_reloaded_without_losing_windows(broker, fresh_topic, daemon_bundle, inprocess_daemon,
                                                                tmp_path):
    import shutil

    from tests.fixtures.daemon import make_bundle

    _create(broker.bootstrap, fresh_topic)
    model = tmp_path / "model"
    shutil.copytree(daemon_bundle, model)
    series = ["m0", "m1", "m2"]
    r = inprocess_daemon(daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, model))
    produce_readings(broker.bootstrap, fresh_topic, series, 60)
    first = expected_window_ids(series, 60, T, S)
    read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(first), timeout_s=60)
    v1 = r.daemon.bundle.version
    make_bundle(tmp_path / "v2", version="v2")
    for f in ("config.json", "weights.safetensors", "anomon.json"):
        shutil.copy(tmp_path / "v2" / f, model / f)
    assert wait_until(lambda: r.daemon.bundle.version == "v2", timeout_s=30)
    produce_readings(broker.bootstrap, fresh_topic, series, 120, start=60)
    want = expected_window_ids(series, 120, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    r.stop()
    recs = [json.loads(v) for _, v, _ in got]
    assert {x["id"] for x in recs} == want
    assert {x["version"] for x in recs} == {v1, "v2"}
    assert all(x["version"] == "v2" for x in recs if x["end_ts"] >= 1_700_000_000_000 + 80 * 10)


@over_backends
def test_open_alert_follows_its_partition_to_the_next_owner(broker, fresh_topic, daemon_bundle, inprocess_daemon,
                                                            backend):
    """A burst that is still going on when its partition changes hands keeps one alert: the next
    owner continues it under the same id (from the progress snapshot) and emits its end."""
    _create(broker.bootstrap, fresh_topic)
    series = ["h0", "h1", "h2"]
    cfg = daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, daemon_bundle,
                        scoring__threshold="calibrated", scoring__close_after=2, **backend_kw(backend))
    burst = (90, 200)  # on h0 only
    produce_readings(broker.bootstrap, fresh_topic, series, 120, anomaly=burst)
    a = inprocess_daemon(cfg, name="a")
    first = expected_window_ids(series, 120, T, S)
    assert wait_until(lambda: a.daemon.stats["windows"] >= len(first), timeout_s=60)
    a.stop()  # drain + commit: h0's alert is open
    alerts = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", timeout_s=10, idle_s=1)]
    assert [x["event"] for x in alerts if x["series"] == "h0"] == ["start"]
    produce_readings(broker.bootstrap, fresh_topic, series, 260, anomaly=burst, start=120)
    b = inprocess_daemon(cfg, name="b")
    want = expected_window_ids(series, 260, T, S)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=90, idle_s=3)
    b.stop()
    assert set(score_ids(got)) == want
    alerts = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", timeout_s=10, idle_s=1)]
    h0 = [x for x in alerts if x["series"] == "h0"]
    assert [x["event"] for x in h0] == ["start", "end"], h0
    assert h0[0]["id"] == h0[1]["id"]
    # the end comes after the burst: the first window clear of it ends at reading 200 + T - 1
    assert h0[1]["ts"] >= h0[0]["start_ts"]
    assert not [x for x in alerts if x["series"] != "h0"]
