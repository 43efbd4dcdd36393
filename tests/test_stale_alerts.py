"""Alerts that never end (issue 23.3): a series that stops sending while in alert gets its alert ended
with ``"reason": "stale"`` after ``scoring.alert_stale_s``; before, it stayed open for ever (28 series
were "in alert" in the operator's trial). Normal ends say ``"reason": "recovered"``."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.daemon import daemon_config, produce_readings, read_topic, wait_until

pytestmark = pytest.mark.broker


def test_an_open_alert_of_a_series_gone_quiet_ends_as_stale(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    from streams.kafka import KafkaSettings, create_topics

    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {fresh_topic: 2})
    # s0: a burst in its last readings (its alert opens and no normal window follows); s1: a burst
    # that ends inside its data (its alert closes the usual way)
    produce_readings(broker.bootstrap, fresh_topic, ["s0"], 120, anomaly=(100, 120))
    produce_readings(broker.bootstrap, fresh_topic, ["s1"], 200, anomaly=(100, 110))
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle,
                        scoring__alert_stale_s=3.0, scoring__threshold="calibrated")
    r = inprocess_daemon(cfg)
    assert wait_until(lambda: any(json.loads(v).get("reason") == "stale" for _, v, _ in
                                  read_topic(broker.bootstrap, f"{fresh_topic}.alerts", idle_s=1, timeout_s=5)),
                      timeout_s=40, every_s=1)
    r.stop()
    events = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", idle_s=1)]
    s0 = [e for e in events if e["series"] == "s0"]
    s1 = [e for e in events if e["series"] == "s1"]
    assert [e["event"] for e in s0] == ["start", "end"] and s0[1]["reason"] == "stale"
    assert s0[0]["id"] == s0[1]["id"]
    assert [e["event"] for e in s1] == ["start", "end"] and s1[1]["reason"] == "recovered"
    reg = r.metrics.registry
    model = s0[0]["model"]
    assert reg.get_sample_value("anomon_alerts_active", {"model": model}) == 0
    assert reg.get_sample_value("anomon_alerts_total", {"model": model, "event": "stale"}) == 1
