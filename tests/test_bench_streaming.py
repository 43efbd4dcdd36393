"""The streaming bench's load generator (real broker): the backlog and the live feed it continues."""
from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

import pytest

from monitor.bench.streaming import _produce, feed, phase
from streams.kafka import KafkaSettings, Source, create_topics

pytestmark = pytest.mark.broker


def _read(settings: KafkaSettings, topic: str, n: int) -> list:
    out: list = []
    with Source(settings, topic, f"g-{topic}", session_timeout_ms=6000, heartbeat_interval_ms=300) as src:
        deadline = time.monotonic() + 60
        while len(out) < n and time.monotonic() < deadline:
            out.extend(src.poll(0.3))
    return out


@pytest.mark.parametrize("form", ["single", "chunk"])
def test_feed_continues_every_series_after_its_phased_backlog(broker, form):
    """Series i's backlog holds per_series + phase(i) readings; the live feed goes on from there, each
    series' timestamps strictly increasing by the period with no gap or overlap, at the asked rate,
    every record's Kafka timestamp taken when it was sent."""
    s = KafkaSettings(bootstrap_servers=broker.bootstrap)
    topic = f"feed-{uuid.uuid4().hex[:8]}"
    create_topics(s, {topic: 2})
    n_series, per_series, stride, chunk, t0 = 7, 12, 5, 4, 1_700_000_000_000.0
    n_backlog = _produce(broker.bootstrap, topic, n_series, per_series, form, t0, chunk=chunk, stride=stride)
    sent_from = time.time() * 1000
    kept = feed(broker.bootstrap, topic, n_series, 400.0, 1.0, form, chunk, t0, per_series, stride)
    sent_to = time.time() * 1000
    assert 300 <= kept <= 500
    recs = _read(s, topic, n_backlog + 1)
    ts_of = defaultdict(list)
    live = 0
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        v = json.loads(r.value)
        assert r.key.decode() == v["series"]
        if form == "single":
            ts_of[v["series"]].append(v["ts"])
        else:
            ts_of[v["series"]] += [v["ts"] + j * v["period_ms"] for j in range(len(v["values"]))]
        if r.timestamp >= sent_from:
            live += 1
            assert r.timestamp <= sent_to
    assert live > 0
    for i in range(n_series):
        ts = ts_of[f"s{i}"]
        n_back = per_series + phase(i, n_series, stride)
        assert len(ts) > n_back  # the feed added readings to every series
        assert ts == [t0 + 10.0 * j for j in range(len(ts))]
    assert len({per_series + phase(i, n_series, stride) for i in range(n_series)}) > 1  # phases differ


def test_raw_consume_reference_reads_with_the_daemons_fetch_settings(broker):
    """The raw-consume reference uses the daemon's fetch settings: with kafka-python's 500 ms default,
    the fetch of a topic's empty partitions held the next fetch of the busy one for 500 ms, so the
    reference measured the broker's wait (one series: 36k records/s against 160k)."""
    from monitor.bench.streaming import _consumer_from_start, _raw_consume, fetch_settings
    from monitor.config import load_config

    s = KafkaSettings(bootstrap_servers=broker.bootstrap)
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    create_topics(s, {topic: 4})
    n = _produce(broker.bootstrap, topic, 1, 300, "single", 1_700_000_000_000.0)  # one series: one partition
    cfg = load_config(None, env={})
    fetch = fetch_settings(cfg)
    c = _consumer_from_start(broker.bootstrap, topic, fetch)
    try:
        assert c.config["fetch_max_wait_ms"] == cfg.input.fetch_max_wait_ms == 50
        assert c.config["max_poll_records"] == cfg.input.max_poll_records
    finally:
        c.close()
    assert _raw_consume(broker.bootstrap, topic, n, fetch) > 0


@pytest.mark.timeout(300)
def test_a_case_with_two_workers_scores_every_window_and_measures_latency(broker, tmp_path):
    """`--case DET,SERIES,STRIDE,FORM,2`: the backlog goes through `anomon run --workers 2` (a WorkerPool);
    every expected window is scored once, e2e comes from the workers' own reports, and the latency at
    half load from their histograms, on the same workers."""
    from monitor.bench.streaming import make_bench_bundle, run_case

    bundle = make_bench_bundle(tmp_path / "rz", "robust-zscore")
    c = run_case(broker.bootstrap, bundle, "robust-zscore", 8, 10, "single", 8 * 340, 64, 1.0, workers=2)
    assert c["workers"] == 2
    assert c["windows_scored"] == c["windows_expected"] == 8 * 21
    assert c["e2e_s"] > 0 and c["e2e_records_per_s"] > 0 and c["raw_consume_records_per_s"] > 0
    assert c["latency_windows"] > 0 and c["latency_p99_ms"] is not None
    assert c["latency_p50_ms"] <= c["latency_p99_ms"]


def _all_records(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list:
    from monitor.bench.streaming import _consumer_from_start

    c = _consumer_from_start(bootstrap, topic, {"max_poll_records": 2000, "fetch_max_wait_ms": 50})
    out: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
    finally:
        c.close()
    return out


def test_robust_z_of_the_peers_is_the_detectors_arithmetic(tmp_path):
    import numpy as np

    from monitor.bench.streaming import make_bench_bundle
    from monitor.bench.streaming_peers import robust_z, scorer_params
    from monitor.modelstore import load_bundle

    path = make_bench_bundle(tmp_path / "rz", "robust-zscore")
    X = np.random.default_rng(3).normal(size=(17, 140)) * 3
    mx, ms = robust_z(X.copy(), scorer_params(path))
    ref = load_bundle(path).score_windows(X[:, :, None].astype(np.float32))
    assert np.allclose(mx, ref["max_abs_z"], rtol=1e-4) and np.allclose(ms, ref["mean_sq_z"], rtol=1e-4)


def test_quix_is_skipped_with_a_note_without_an_interpreter_that_has_it(tmp_path):
    from monitor.bench.streaming_backends import _quix_python

    assert _quix_python(None)[0] is None and "--quix-python not given" in _quix_python(None)[2]
    py, version, note = _quix_python(str(tmp_path / "no-python"))
    assert py is None and version is None and "cannot import quixstreams" in note


@pytest.mark.timeout(240)
def test_peers_case_runs_every_pipeline_and_the_plain_loop_scores_as_anomon(broker, tmp_path):
    """`bench streaming --peers` on a tiny backlog: both backends, the plain loop and the raw consumers read
    it all; every end-to-end pipeline scores every expected window, and the plain loop's score records
    carry the same ids and scores as the daemon's."""
    from monitor.bench.streaming import make_bench_bundle
    from monitor.bench.streaming_backends import run_case

    bundle = make_bench_bundle(tmp_path / "rz", "robust-zscore")
    c = run_case(broker.bootstrap, bundle, 6, 10, budget=6 * 170, repeats=1, quix=None, quix_max_s=10,
                 latency_s=0, max_batch=64, workdir=tmp_path)
    assert c["windows_expected"] == 6 * 15  # at least a window length past the first window: 280 readings
    assert set(c["readings_per_s"]) == {"anomon_confluent", "anomon_kafka_python", "plain_confluent",
                                        "raw_kafka_python", "raw_confluent_tuned", "raw_confluent_default"}
    assert all(v > 0 for v in c["readings_per_s"].values())
    assert c["windows_ok"] == {"anomon_confluent": True, "anomon_kafka_python": True, "plain_confluent": True}
    assert c["ratios"]["confluent_vs_plain"] > 0 and c["ratios"]["confluent_vs_quix"] is None
    assert c["goals"]["confluent_vs_quix"]["met"] is None and "confluent_vs_raw_tuned_at_stride_10" in c["goals"]
    n = c["windows_expected"]
    plain = {json.loads(r.value)["id"]: json.loads(r.value) for r in _all_records(broker.bootstrap, c["topic"] + ".plain", n)}
    ours = {json.loads(r.value)["id"]: json.loads(r.value) for r in _all_records(broker.bootstrap, c["topic"] + ".scores", 2 * n)}
    assert len(plain) == n and set(plain) == set(ours)
    for i, p in plain.items():
        assert p["series"] == ours[i]["series"] and p["start_ts"] == ours[i]["start_ts"]
        assert p["scores"]["max_abs_z"] == pytest.approx(ours[i]["scores"]["max_abs_z"], rel=1e-4)
        assert p["anomalous"] == ours[i]["anomalous"]
