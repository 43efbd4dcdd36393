"""Issue 20: SPOT/DSPOT thresholds and ADWIN are kept per input partition in its progress record
(version 3), so a restart or a rebalance resumes them instead of starting again from the calibration."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from models.thresholds import StreamThresholds
from tests.fixtures.daemon import daemon_config, expected_window_ids, make_bundle, produce_readings, read_topic


def test_each_partition_adapts_on_its_own_scores():
    rng = np.random.default_rng(0)
    st = StreamThresholds({"e": 3.0}, ["e"], {"e": rng.normal(size=3000)}, "dspot", 1e-3, 50, "m v1")
    st.classify({"e": rng.normal(size=500) + 5.0}, 500, "t:0")  # partition 0 moves to a new level
    st.classify({"e": rng.normal(size=500)}, 500, "t:1")
    assert st.current("t:0")["e"] > st.current("t:1")["e"] + 3
    assert st.current()["e"] == st.current("t:0")["e"]  # the gauge: the highest
    calibrated = StreamThresholds({"e": 3.0}, ["e"], {"e": rng.normal(size=3000)}, "calibrated", 1e-3, 50)
    assert not calibrated.online and calibrated.state("t:0") is None
    assert calibrated.classify({"e": np.array([2.0, 4.0])}, 2, "t:0")[0].tolist() == [False, True]


@pytest.mark.broker
def test_a_restarted_daemon_resumes_each_partitions_thresholds_and_drift_detector(broker, fresh_topic, tmp_path,
                                                                               inprocess_daemon):
    bundle = make_bundle(tmp_path / "m", name="pumps")
    series = ["p1", "p2", "p3"]
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", bundle, scoring__threshold="dspot")
    produce_readings(broker.bootstrap, fresh_topic, series, 400)
    want = len(expected_window_ids(series, 400, 16, 4))
    r = inprocess_daemon(cfg)
    deadline = time.monotonic() + 60
    while r.daemon.stats["windows"] < want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.daemon.stats["windows"] == want
    d1 = r.daemon
    with d1._lock:  # every window is scored: what the drained stop writes to the progress records
        adapted = {tp: d1.thresholds.current(tp) for tp in d1.thresholds.parts}
        fed = {tp: list(d1._adwin_in[tp]) for tp in adapted}
    r.stop()
    assert adapted and all(fed.values())
    fresh = StreamThresholds(d1.bundle.thresholds, d1.bundle.alert_components, d1.bundle.calibration, "dspot",
                             cfg.scoring.q, cfg.scoring.dspot_depth)
    assert all(adapted[tp] != fresh.current("x") for tp in adapted)  # they moved away from the calibration's

    r2 = inprocess_daemon(cfg)
    d2 = r2.daemon
    deadline = time.monotonic() + 60
    while not set(adapted) <= set(d2.thresholds.parts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {tp: d2.thresholds.current(tp) for tp in adapted} == adapted  # resumed exactly
    assert {tp: list(d2._adwin_in[tp]) for tp in adapted} == fed
    # and it goes on: the next windows are scored once, their records carry the resumed thresholds
    produce_readings(broker.bootstrap, fresh_topic, series, 440, start=400)
    want2 = len(expected_window_ids(series, 440, 16, 4))
    deadline = time.monotonic() + 60
    while d2.stats["windows"] < want2 - want and time.monotonic() < deadline:
        time.sleep(0.1)
    r2.stop()
    assert d2.stats["windows"] == want2 - want
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=want2)]
    assert len({g["id"] for g in got}) == len(got) == want2
