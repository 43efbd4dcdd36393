"""AnomonMetrics: injected registry, names, bounded cardinality, bulk histogram updates."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import MAX_ALLOWLIST, MAX_DLQ_REASONS, AnomonMetrics

#: The only metrics that may carry a series id label (documented, bounded).
SERIES_LABELLED = {"anomon_top_series_score", "anomon_series_score"}


def families(reg):
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def exercise(m: AnomonMetrics) -> None:
    m.record_consumed("ecg", 10)
    m.record_produced("anomon.scores", 3)
    m.dead_letter("late")
    m.set_lag("ecg", 0, 5)
    m.commit()
    m.rebalance("assigned")
    m.observe_batch("vrae", 3, 0.01, n_anomalous=1)
    m.observe_latency("vrae", [0.1, 0.2])
    m.observe_scores("vrae", "total", [1.0, 2.0, 3.0])
    m.set_threshold("vrae", "total", 2.5)
    m.drift("vrae", "total")
    m.alert("vrae", "start")
    m.observe_series("vrae", ["s1", "s2", "s3"], [1.0, 2.0, 3.0])
    m.set_series_state(3, 0)
    m.evicted(1)
    m.model_load("vrae", "v1", detector="vrae")
    m.model_load_failed("vrae")
    m.set_ready(True)


def test_never_uses_global_registry():
    before = set(REGISTRY._names_to_collectors)
    reg = CollectorRegistry()
    m = AnomonMetrics(reg)
    exercise(m)
    assert set(REGISTRY._names_to_collectors) == before
    # a second instance on another registry coexists (no duplicate-timeseries error)
    AnomonMetrics(CollectorRegistry())
    with pytest.raises(ValueError):
        AnomonMetrics(None)  # type: ignore[arg-type]


def test_names_and_labels():
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, series_allowlist=["s1"])
    exercise(m)
    fams = families(reg)
    ours = {n for n in fams if n.startswith("anomon_")}
    others = set(fams) - ours
    assert all(n.startswith(("process_", "python_")) for n in others), others
    assert "process_resident_memory_bytes" in fams
    expected = {
        "anomon_records_consumed", "anomon_windows_scored", "anomon_alerts", "anomon_dead_letter_records",
        "anomon_consumer_lag", "anomon_batch_scoring_seconds", "anomon_produce_to_score_seconds",
        "anomon_score", "anomon_threshold", "anomon_drift_events", "anomon_model_info", "anomon_model_loaded",
        "anomon_model_reload_failures", "anomon_up", "anomon_ready", "anomon_top_series_score",
        "anomon_series_score",
    }
    assert expected <= ours, expected - ours
    for name, fam in fams.items():
        for s in fam.samples:
            if "series" in s.labels:
                assert name in SERIES_LABELLED, f"{name} carries a series label"
    assert reg.get_sample_value("anomon_records_consumed_total", {"topic": "ecg"}) == 10
    assert reg.get_sample_value("anomon_consumer_lag", {"topic": "ecg", "partition": "0"}) == 5
    assert reg.get_sample_value("anomon_alerts_total", {"model": "vrae", "event": "start"}) == 1
    assert reg.get_sample_value("anomon_alerts_active", {"model": "vrae"}) == 1
    assert reg.get_sample_value("anomon_model_loaded", {"model": "vrae"}) == 1
    assert reg.get_sample_value("anomon_model_reload_failures_total", {"model": "vrae"}) == 1
    info = [s for s in fams["anomon_model_info"].samples][0]
    assert info.labels["version"] == "v1" and info.labels["model"] == "vrae" and info.labels["loaded_at"]
    assert reg.get_sample_value("anomon_series_score", {"model": "vrae", "component": "total", "series": "s1"}) == 1.0
    assert reg.get_sample_value("anomon_series_score", {"model": "vrae", "component": "total", "series": "s2"}) is None
    assert reg.get_sample_value("anomon_up") == 1 and reg.get_sample_value("anomon_ready") == 1


def test_bulk_score_histogram_matches_observe():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.lognormal(0, 3, 2000), [-5.0, 0.0, 1e9, np.nan, np.inf]])
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, process_collector=False)
    m.observe_scores("m", "c", vals)
    ref_reg = CollectorRegistry()
    bounds = m.scores.labels(model="m", component="c")._upper_bounds[:-1]
    ref = Histogram("ref", "", buckets=bounds, registry=ref_reg)
    for v in vals[np.isfinite(vals)]:
        ref.observe(v)
    got = {s.labels["le"]: s.value for s in families(reg)["anomon_score"].samples if s.name.endswith("_bucket")}
    want = {s.labels["le"]: s.value for s in families(ref_reg)["ref"].samples if s.name.endswith("_bucket")}
    assert got == want
    assert reg.get_sample_value("anomon_score_count", {"model": "m", "component": "c"}) == np.isfinite(vals).sum()
    assert reg.get_sample_value("anomon_score_sum", {"model": "m", "component": "c"}) == pytest.approx(
        vals[np.isfinite(vals)].sum()
    )


def test_top_k_is_bounded_and_tracks_the_worst():
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, top_k=3, top_k_window_s=60, process_collector=False)
    rng = np.random.default_rng(1)
    for step in range(50):
        ids = [f"s{i}" for i in range(step * 100, step * 100 + 100)]
        m.observe_series("vrae", ids, rng.random(100), now=1000.0 + step)
    m.observe_series("vrae", ["hot1", "hot2"], [50.0, 40.0], now=1050.0)
    top = m.top_series("vrae")
    assert len(top) == 3 and top[0] == ("hot1", 50.0) and top[1] == ("hot2", 40.0)
    fam = families(reg)["anomon_top_series_score"]
    assert len(fam.samples) == 3
    # everything expires after the window; new scores take over
    m.observe_series("vrae", ["late"], [0.5], now=2000.0)
    assert m.top_series("vrae") == [("late", 0.5)]
    assert len(families(reg)["anomon_top_series_score"].samples) == 1
    with pytest.raises(ValueError):
        AnomonMetrics(CollectorRegistry(), top_k=10_000)


def test_allowlist_and_dlq_reasons_are_bounded():
    with pytest.raises(ValueError):
        AnomonMetrics(CollectorRegistry(), series_allowlist=[f"s{i}" for i in range(MAX_ALLOWLIST + 1)])
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, process_collector=False)
    for i in range(MAX_DLQ_REASONS + 20):
        m.dead_letter(f"reason-{i}")
    fam = families(reg)["anomon_dead_letter_records"]
    reasons = {s.labels["reason"] for s in fam.samples if s.name.endswith("_total")}
    assert len(reasons) == MAX_DLQ_REASONS + 1 and "other" in reasons
    assert reg.get_sample_value("anomon_dead_letter_records_total", {"reason": "other"}) == 20


def test_assignment_removes_stale_lag_and_alert_end():
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, process_collector=False)
    m.set_position("t", 0, position=10, highwater=25)
    m.set_position("t", 1, position=3, highwater=None)  # unknown high-water mark: no series
    m.set_lag("t", 2, 4)
    assert reg.get_sample_value("anomon_consumer_lag", {"topic": "t", "partition": "0"}) == 15
    assert reg.get_sample_value("anomon_consumer_lag", {"topic": "t", "partition": "1"}) is None
    m.set_assignment([("t", 0)])
    assert reg.get_sample_value("anomon_consumer_lag", {"topic": "t", "partition": "2"}) is None
    assert reg.get_sample_value("anomon_assigned_partitions") == 1
    m.alert("vrae", "end")  # an end without start never goes negative
    assert reg.get_sample_value("anomon_alerts_active", {"model": "vrae"}) == 0
    with pytest.raises(ValueError):
        m.alert("vrae", "middle")


def test_every_metric_is_documented_in_deploy_readme():
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    doc = (Path(__file__).resolve().parents[1] / "deploy" / "README.md").read_text()
    m = AnomonMetrics(CollectorRegistry(), process_collector=False)
    for c in vars(m).values():
        if isinstance(c, MetricWrapperBase):
            name = c._name + {"counter": "_total", "info": "_info"}.get(c._type, "")
            assert f"`{name}`" in doc, name


def test_model_reload_under_a_new_name_unloads_the_old_one():
    reg = CollectorRegistry()
    m = AnomonMetrics(reg, process_collector=False)
    m.model_load("a", "v1", components=["total", "kl"])
    assert reg.get_sample_value("anomon_drift_events_total", {"model": "a", "component": "kl"}) == 0
    assert reg.get_sample_value("anomon_alerts_total", {"model": "a", "event": "end"}) == 0
    m.model_load("a", "v2", reload=True, loaded_at=1000.0)
    assert reg.get_sample_value("anomon_model_reloads_total", {"model": "a"}) == 1
    assert reg.get_sample_value("anomon_model_load_timestamp_seconds", {"model": "a"}) == 1000.0
    info = [s for s in families(reg)["anomon_model_info"].samples]
    assert [s.labels["version"] for s in info] == ["v2"]
    m.model_load("b", "v1", reload=True)
    assert reg.get_sample_value("anomon_model_loaded", {"model": "a"}) == 0
    assert reg.get_sample_value("anomon_model_loaded", {"model": "b"}) == 1
    assert {s.labels["model"] for s in families(reg)["anomon_model_info"].samples} == {"b"}
    m.model_load_failed("b", still_serving=False)
    assert reg.get_sample_value("anomon_model_loaded", {"model": "b"}) == 0
