"""Issue 20/22: the progress record's schema (version 4: each series' entry with named fields; older
positional records still read) and the anomaly likelihood carried across a restart in it."""
from __future__ import annotations

import json
import time

import pytest

from monitor.daemon.progress import PROGRESS_VERSION, ProgressMixin, entry_from_record, entry_to_record
from tests.fixtures.daemon import daemon_config, make_bundle, produce_readings, read_topic


def test_entries_round_trip_and_old_positional_entries_read():
    for entry in ([7, 0], [7, 3, 2, 0, "s@5", 5, 9.5], [7, 0, 0, 4, None, 5, 1.25]):
        rec = entry_to_record(entry, {"f": 1, "n": 3})
        assert isinstance(rec, dict) and rec["ts"] == 7 and rec["likelihood"] == {"f": 1, "n": 3}
        assert entry_from_record(json.loads(json.dumps(rec))) == (entry, {"f": 1, "n": 3})
        assert entry_from_record(entry) == (entry, None)  # versions 1-3
    with pytest.raises(ValueError, match=r"progress entry of t:0 series 'a': missing field 'anomalous_run'"):
        entry_from_record({"ts": 1, "skip": 0, "alert": {"id": "x"}}, "t:0 series 'a'")
    with pytest.raises(ValueError, match="expected an object, got str"):
        entry_from_record("7,0", "t:0 series 'a'")


@pytest.mark.broker
def test_records_of_every_version_are_read_from_the_topic(broker, fresh_topic):
    """One progress topic holding a version-3 record set (positional, an open alert), a version-4 set of
    another partition, and a newer version-4 set that cannot be read: each partition gets its last set
    this version reads."""
    from streams.kafka import KafkaConsumer, KafkaSettings, Sink, TopicPartition, create_topics

    topic = f"{fresh_topic}.progress"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    create_topics(settings, {topic: 1})
    v3 = {"v": 3, "topic": "in", "partition": 0, "offset": 40, "seq": 1, "part": 0, "parts": 1, "dlq_upto": 12,
          "series": {"a": [100, 0], "b": [200, 1, 3, 0, "b@150", 150, 7.5]}, "thresholds": None}
    v4 = {"v": PROGRESS_VERSION, "topic": "in", "partition": 1, "offset": 9, "seq": 2, "part": 0, "parts": 1,
          "dlq_upto": -1, "series": {"c": entry_to_record([300, 2], {"f": 1, "n": 5, "mean": 1.0, "std": 0.5,
                                                                      "since": 0, "recent": [1.0]})}}
    broken = dict(v4, offset=99, seq=3, series={"c": {"skip": 0}})  # unreadable: the set before it is used
    sink = Sink(settings, linger_ms=5)
    for v in (v3, v4, broken):
        sink.send(topic, json.dumps(v).encode(), key=f"in:{v['partition']}", partition=0)
    sink.flush()
    sink.close()
    cons = KafkaConsumer(**settings.to_kafka_python(), enable_auto_commit=False, group_id=None)
    try:
        meta: dict = {}
        best = ProgressMixin._scan_progress(cons, TopicPartition(topic, 0), 0, 3, {"in:0", "in:1"}, meta)
    finally:
        cons.close()
    assert best["in:0"] == (40, {"a": [100, 0], "b": [200, 1, 3, 0, "b@150", 150, 7.5]})
    assert best["in:1"] == (9, {"c": [300, 2]})
    assert meta["in:0"]["dlq_upto"] == 12 and meta["in:0"]["likelihood"] == {}
    assert meta["in:1"]["likelihood"]["c"]["n"] == 5


@pytest.mark.broker
def test_a_restarted_daemon_resumes_each_series_likelihood(broker, fresh_topic, tmp_path, inprocess_daemon):
    series = ["p1", "p2"]
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", make_bundle(tmp_path / "m"),
                        scoring__likelihood=True, scoring__likelihood_learning=20, scoring__likelihood_window=100)
    produce_readings(broker.bootstrap, fresh_topic, series, 800)
    want = 2 * ((800 - 16) // 4 + 1)
    r = inprocess_daemon(cfg)
    deadline = time.monotonic() + 60
    while r.daemon.stats["windows"] < want and time.monotonic() < deadline:
        time.sleep(0.1)
    d1 = r.daemon
    r.stop()
    assert d1.stats["windows"] == want
    before = {s: d1._likelihood.get(s) for s in series}
    assert all(a is not None and a.ready for a in before.values())  # estimated before the stop
    progress = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, cfg.progress_topic, min_count=1)]
    last = progress[-1]
    assert last["v"] == PROGRESS_VERSION and all(isinstance(e, dict) and "ts" in e for e in last["series"].values())

    r2 = inprocess_daemon(cfg)
    d2 = r2.daemon
    deadline = time.monotonic() + 60
    while any(d2._likelihood.get(s) is None for s in series) and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in series:
        a, b = before[s], d2._likelihood.get(s)
        assert b is not None and (b.n_seen_, b.mean_, b.std_) == (a.n_seen_, pytest.approx(a.mean_, rel=1e-8),
                                                                    pytest.approx(a.std_, rel=1e-8))
        assert list(b._recent) == pytest.approx(list(a._recent), rel=1e-8)
        assert b.score_one(5.0) == pytest.approx(a.score_one(5.0), rel=1e-6)  # judged as before the restart
    produce_readings(broker.bootstrap, fresh_topic, series, 840, start=800)
    want2 = 2 * ((840 - 16) // 4 + 1)
    deadline = time.monotonic() + 60
    while d2.stats["windows"] < want2 - want and time.monotonic() < deadline:
        time.sleep(0.1)
    r2.stop()
    assert d2.stats["windows"] == want2 - want
    assert d2._likelihood.get("p1").n_seen_ == before["p1"].n_seen_ + (want2 - want) // 2  # learning went on
