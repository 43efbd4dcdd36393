"""Consumer lag in /metrics is what an external tool reads (issue 20): high-water mark minus the
group's committed offset, per partition (it was high-water minus the fetch position, which read 0
while the committed offsets stayed behind)."""
from __future__ import annotations

import pytest

from tests.fixtures.daemon import daemon_config, expected_window_ids, produce_readings, read_topic, wait_until

pytestmark = pytest.mark.broker


def test_consumer_lag_gauge_equals_committed_to_high_water(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    from streams.kafka import KafkaSettings, TopicPartition, committed_offsets, create_topics, partition_ends

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    create_topics(settings, {fresh_topic: 2})
    series = ["a", "b", "c"]
    produce_readings(broker.bootstrap, fresh_topic, series, 90)  # 90 = 16 + 4 * 18 + 2: 14 readings left open
    group = f"g-{fresh_topic}"
    cfg = daemon_config(broker.bootstrap, fresh_topic, group, daemon_bundle, input__keyless="partition")
    r = inprocess_daemon(cfg)
    want = expected_window_ids(series, 90, 16, 4)
    read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    tps = [TopicPartition(fresh_topic, p) for p in (0, 1)]
    reg = r.metrics.registry

    def external() -> dict:
        ends = partition_ends(settings, tps)
        done = committed_offsets(settings, group)
        return {tp.partition: ends[tp] - (done.get(tp) or 0) for tp in tps}

    def gauge() -> dict:
        return {p: reg.get_sample_value("anomon_consumer_lag", {"topic": fresh_topic, "partition": str(p)})
                for p in (0, 1)}

    assert wait_until(lambda: r.daemon.stats["commits"] > 0 and gauge() == external(), timeout_s=30), \
        (gauge(), external())
    lag = external()
    assert sum(lag.values()) > 0  # the readings of the open windows (and never the fetch position's 0)
    r.stop()
