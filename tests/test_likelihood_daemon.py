"""Issue 22: the anomaly-likelihood stage in the daemon (``scoring.likelihood``): each series is judged
against its own long-run score distribution, so one model serves a noisy series without flagging it
and still catches a burst on a calm one."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from monitor.config import load_config
from tests.fixtures.daemon import T0_MS, _sine, daemon_config, make_bundle, read_topic


def test_likelihood_settings_are_checked():
    problems: list = []
    load_config(None, env={}, overrides={"scoring.likelihood_threshold": 1.5, "scoring.likelihood_window": 10},
                problems=problems)
    assert [str(p) for p in problems] == [
        "scoring.likelihood_threshold: must lie in (0, 1), got 1.5 (from command line)",
        "scoring.likelihood_window: must be at least 100 windows, got 10 (from command line)"]


@pytest.mark.broker
def test_a_noisy_series_is_not_flagged_and_a_burst_on_a_calm_one_is(broker, fresh_topic, tmp_path, inprocess_daemon):
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_reading

    n, burst = 1600, (1400, 1440)
    rng = np.random.default_rng(3)
    i = np.arange(n)
    calm = _sine(0, i) + rng.normal(scale=0.05, size=n)
    calm[burst[0]:burst[1]] += 3.0
    noisy = _sine(1, i) + rng.normal(scale=0.6, size=n)  # far noisier than the model's training data
    sink = Sink(KafkaSettings(bootstrap_servers=broker.bootstrap), linger_ms=20)
    for a in range(n):
        for sid, x in (("calm", calm), ("noisy", noisy)):
            sink.send(fresh_topic, encode_reading(sid, T0_MS + a * 10, float(x[a])), key=sid)
    sink.flush()
    sink.close()
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", make_bundle(tmp_path / "m"),
                        scoring__likelihood=True, scoring__likelihood_learning=50, scoring__likelihood_window=200)
    r = inprocess_daemon(cfg)
    want = 2 * ((n - 16) // 4 + 1)
    deadline = time.monotonic() + 60
    while r.daemon.stats["windows"] < want and time.monotonic() < deadline:
        time.sleep(0.1)
    r.stop()
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=want)]
    assert len(got) == want
    by = {s: sorted((g for g in got if g["series"] == s), key=lambda g: g["end_ts"]) for s in ("calm", "noisy")}
    comp = r.daemon.bundle.alert_components[0]
    for g in got:
        assert 0.0 <= g["scores"]["anomaly_likelihood"] <= 1.0 and g["thresholds"]["anomaly_likelihood"] == 0.5
    settled = by["noisy"][200:]  # after its learning period and first estimate
    over = np.mean([g["scores"][comp] > g["thresholds"][comp] for g in settled])
    flagged = np.mean([g["anomalous"] for g in settled])
    assert over > 0.3 and flagged < 0.02, (over, flagged)  # a raw threshold flags it; its likelihood does not
    b0, b1 = T0_MS + burst[0] * 10, T0_MS + (burst[1] + 16) * 10  # windows that hold burst readings end here
    calm_settled = by["calm"][200:]
    assert any(g["anomalous"] for g in calm_settled if b0 <= g["end_ts"] < b1)
    assert not any(g["anomalous"] for g in calm_settled if g["end_ts"] < b0)
    alerts = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", min_count=1)]
    assert {a["series"] for a in alerts if a["event"] == "start"} == {"calm"}
