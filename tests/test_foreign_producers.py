"""Producers anomon did not write, on the real broker (issue 20): every codec from both client
libraries is scored; a batch that cannot be read is skipped, counted and dead-lettered once, and
never stalls the daemon; a drained restart sends no dead letter twice.

Before the change (e1b32ea): one lz4 batch with the codec library missing stopped every partition
for good (0 windows from the readings after it, SIGTERM did not drain); a restart sent every dead
letter again (59 became 118).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.fixtures.daemon import T0_MS, _sine, daemon_config, expected_window_ids, read_topic, score_ids

pytestmark = pytest.mark.broker

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 120  # readings per series: (120 - 16) / 4 + 1 = 27 windows of T=16, S=4


def _readings(series: str, k: int, n: int = N, start: int = 0):
    from streams.records import encode_reading

    v = _sine(k, np.arange(n))
    return [encode_reading(series, T0_MS + i * 10, float(v[i])) for i in range(start, n)]


def _confluent_producer(bootstrap: str, codec: str, **extra):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    return confluent_kafka.Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                                     "linger.ms": 50, "partitioner": "murmur2_random", **extra})


def _kafka_python_producer(bootstrap: str, codec: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, compression_type=None if codec == "none" else codec,
                         linger_ms=50)


def _dead_letters(bootstrap: str, topic: str) -> list[dict]:
    out = []
    for key, value, headers in read_topic(bootstrap, topic, idle_s=2, timeout_s=20):
        h = {k: (v.decode() if v is not None else None) for k, v in headers}
        out.append({"key": key, "value": value, **h})
    return out


def _wait_scores(bootstrap: str, topic: str, want: int, timeout_s: float = 60) -> list:
    return read_topic(bootstrap, topic, min_count=want, timeout_s=timeout_s)


def test_every_codec_of_both_client_libraries_is_scored(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    """none, gzip, snappy, lz4 and zstd batches from confluent-kafka (librdkafka) and kafka-python
    producers, one series each, all in one topic: every window of every series is scored, 0 dead letters."""
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 4})
    series = []
    for codec in CODECS:
        sid = f"cf-{codec}"
        p = _confluent_producer(broker.bootstrap, codec)
        for v in _readings(sid, len(series)):
            p.produce(fresh_topic, v, key=sid.encode())
        assert p.flush(30) == 0
        series.append(sid)
        sid = f"kp-{codec}"
        kp = _kafka_python_producer(broker.bootstrap, codec)
        for v in _readings(sid, len(series)):
            kp.send(fresh_topic, v, key=sid.encode())
        kp.flush(30)
        kp.close()
        series.append(sid)
    want = expected_window_ids(series, N, 16, 4)
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle)
    r = inprocess_daemon(cfg)
    got = _wait_scores(broker.bootstrap, f"{fresh_topic}.scores", len(want))
    stats = r.stop()
    assert set(score_ids(got)) == want, sorted({i.split("@")[0] for i in want - set(score_ids(got))})
    assert stats["dlq"] == 0 and stats.get("unreadable_batches", 0) == 0


def test_an_unreadable_batch_is_skipped_counted_and_dead_lettered(broker, fresh_topic, daemon_bundle,
                                                                   inprocess_daemon, monkeypatch):
    """An lz4 batch while the lz4 library is missing (the fault as a user met it, on the kafka-python
    backend): the batch is skipped, one dead letter names its topic, partition and offsets,
    ``anomon_unreadable_batches_total{reason}`` counts it, every reading after it in the same partition
    is scored, and the daemon drains at once."""
    import kafka.codec

    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 1})
    p = _confluent_producer(broker.bootstrap, "lz4", **{"linger.ms": 200})
    for v in _readings("lz", 0, n=40):  # one batch: 40 compressible readings, linger 200 ms
        p.produce(fresh_topic, v * 3, key=b"lz")
    assert p.flush(30) == 0
    good = ["a", "b"]
    q = _confluent_producer(broker.bootstrap, "none")
    for k, s in enumerate(good):
        for v in _readings(s, k + 1):
            q.produce(fresh_topic, v, key=s.encode())
    assert q.flush(30) == 0

    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: False)
    want = expected_window_ids(good, N, 16, 4)
    # the kafka-python backend, whatever the default: librdkafka has every codec built in (its
    # unreadable batches: tests/test_kafka_confluent.py)
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle, kafka__client="kafka-python")
    r = inprocess_daemon(cfg)
    got = _wait_scores(broker.bootstrap, f"{fresh_topic}.scores", len(want), timeout_s=45)
    t0 = time.monotonic()
    stats = r.stop(timeout=20)
    drain_s = time.monotonic() - t0
    assert set(score_ids(got)) == want
    assert drain_s < 15
    assert stats["unreadable_batches"] >= 1
    dead = [d for d in _dead_letters(broker.bootstrap, f"{fresh_topic}.dlq") if d["anomon.reason"] == "unreadable_batch"]
    assert len(dead) == stats["unreadable_batches"]
    covered = []
    for d in dead:
        assert d["anomon.error"].startswith("codec:") and "lz4" in d["anomon.error"]
        first, last = map(int, d["anomon.offsets"].split("-"))
        assert d["anomon.source"] == f"{fresh_topic}:0:{first}"
        covered.extend(range(first, last + 1))
    assert covered == list(range(40))  # the lz4 readings, offsets 0-39, each named once
    counted = r.metrics.registry.get_sample_value("anomon_unreadable_batches_total", {"reason": "codec"})
    assert counted == stats["unreadable_batches"]


def test_a_drained_restart_sends_no_dead_letter_twice(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    """Bad records among good ones, a drained stop, a restart on the same group: the dead-letter topic
    holds each bad record once (before: every one twice), and the restart scores nothing again."""
    from streams.kafka import KafkaSettings, Sink, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 2})
    sink = Sink(KafkaSettings(bootstrap_servers=broker.bootstrap), linger_ms=5)
    bad = [b"not json", b'{"series": "a", "ts": 1, "value": NaN}', b'{"series": "a"}', b"[1,2"]
    n_bad = 0
    for s in ["a", "b", "c"]:
        for i, v in enumerate(_readings(s, 0, n=60)):
            sink.send(fresh_topic, v, key=s)
            if i % 15 == 7:
                sink.send(fresh_topic, bad[n_bad % len(bad)], key=s)
                n_bad += 1
    sink.flush()
    sink.close()
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle)
    r = inprocess_daemon(cfg)
    dl = read_topic(broker.bootstrap, f"{fresh_topic}.dlq", min_count=n_bad, timeout_s=40)
    assert len(dl) == n_bad
    first = r.stop()
    scores_before = len(read_topic(broker.bootstrap, f"{fresh_topic}.scores", idle_s=2))
    r2 = inprocess_daemon(cfg)
    time.sleep(8)  # joined, replayed from the committed offsets
    second = r2.stop()
    assert first["dlq"] == n_bad
    dl = read_topic(broker.bootstrap, f"{fresh_topic}.dlq", idle_s=2)
    sources = [dict(h)["anomon.source"] for _, _, h in dl]
    assert len(sources) == len(set(sources)) == n_bad
    assert len(read_topic(broker.bootstrap, f"{fresh_topic}.scores", idle_s=2)) == scores_before
    assert second["dlq"] == 0
