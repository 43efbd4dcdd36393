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
