"""Keyless readings (issue 20): a producer that sends readings without a key spreads each series over
every partition; the daemon re-sends them to the repartition topic keyed by series, so every window
of such a series is scored, once, in order. Before the change: 0 of 7 windows of a series spread over
4 partitions came out, with no dead letter and no warning."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.daemon import T0_MS, _sine, daemon_config, expected_window_ids, read_topic, score_ids

pytestmark = pytest.mark.broker


def _produce_round_robin(bootstrap: str, topic: str, series: list[str], n: int, partitions: int) -> int:
    """Readings of every series, no key, partition i % partitions for the i-th record (round-robin)."""
    from kafka import KafkaProducer

    from streams.records import encode_reading

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    i = 0
    for a in range(n):
        for k, s in enumerate(series):
            v = float(_sine(k, np.arange(a, a + 1))[0])
            p.send(topic, encode_reading(s, T0_MS + a * 10, v), partition=i % partitions)
            i += 1
    p.flush(30)
    p.close()
    return i


def test_keyless_readings_spread_over_partitions_are_all_scored(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 4})
    series, n = ["k0", "k1", "k2"], 200
    _produce_round_robin(broker.bootstrap, fresh_topic, series, n, 4)
    want = expected_window_ids(series, n, 16, 4)
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle)
    r = inprocess_daemon(cfg)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    stats = r.stop()
    ids = score_ids(got)
    assert set(ids) == want and len(ids) == len(want)  # every window, once
    assert stats["dlq"] == 0 and stats["repartitioned"] == n * len(series)
    ends: dict[str, list] = {}
    for _, v, _ in got:
        ends.setdefault(json.loads(v)["series"], []).append(json.loads(v)["end_ts"])
    assert all(e == sorted(e) for e in ends.values())  # in order
    # each series' readings went to one partition of the repartition topic, keyed by series
    rp = read_topic(broker.bootstrap, cfg.repartition_topic, min_count=n * len(series), timeout_s=30)
    assert len(rp) == n * len(series)
    assert {k for k, _, _ in rp} == {s.encode() for s in series}
    assert all(any(h == "anomon.origin" for h, _ in hs) for _, _, hs in rp)


def test_keyless_partition_mode_keeps_the_old_behaviour_and_says_what_it_means(broker, fresh_topic, daemon_bundle):
    from monitor.config import load_config

    cfg = daemon_config(broker.bootstrap, fresh_topic, "g", daemon_bundle, input__keyless="partition")
    assert cfg.repartition_topic is None
    with pytest.raises(Exception, match="input.keyless"):
        load_config(None, env={}, overrides={"input.keyless": "shuffle"})
