"""Retraining from inside the daemon (issue 19.4, ``[retrain]``): when it is due, how each outcome is
counted, and on the real broker a daemon that retrains its model in a child process, promotes the
candidate and swaps to it without losing or repeating a window."""
from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import RetrainSection, load_config
from monitor.errors import ConfigError
from monitor.metrics import AnomonMetrics
from monitor.registry import Registry
from monitor.retrain_schedule import RetrainScheduler, read_state
from tests.fixtures.daemon import daemon_config, expected_window_ids, make_bundle, produce_readings, read_topic


class _Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _scheduler(tmp_path, metrics=None, **rt):
    reg = Registry(tmp_path / "reg")
    reg.add("pumps", make_bundle(tmp_path / "v1", name="pumps", version="v1"))
    clock = _Clock(time.time())
    s = RetrainScheduler(RetrainSection(**rt), model_dir=str(reg.current_path("pumps")), settings=None,
                         topics=["t"], fmt=None, metrics=metrics, clock=clock)
    return s, clock


def test_when_a_retrain_is_due(tmp_path):
    s, clock = _scheduler(tmp_path, every="1h", after_drift_events=3, min_interval_s=600)
    t0 = clock.t  # the version was promoted (reg.add) just now: the hour counts from then
    assert s.due(t0 + 60) is None
    assert s.due(t0 + 3601) == "schedule"
    s.note_drift(2)
    assert s.due(t0 + 60) is None
    s.note_drift()
    assert s.due(t0 + 60) == "drift"
    # a retrain started at t0 + 100 (any process: the state file): none again for min_interval_s, and
    # the hour counts from it
    (tmp_path / "reg" / "pumps" / "retrain.json").write_text(json.dumps({"format": 1, "last_started": t0 + 100}))
    assert s.due(t0 + 650) is None and s.due(t0 + 701) == "drift"
    s.drift_events = 0
    assert s.due(t0 + 3650) is None and s.due(t0 + 3701) == "schedule"
    (tmp_path / "reg" / "pumps" / "retrain.json").write_text(json.dumps({"format": 9}))
    with pytest.raises(Exception, match="retrain.json: format 9 is not supported"):
        s.due()


def test_retrain_needs_a_registry_model_and_valid_settings(tmp_path):
    b = make_bundle(tmp_path / "b", name="pumps")
    with pytest.raises(ConfigError, match=r"retrain: the model dir .* is not a registry's NAME/current"):
        RetrainScheduler(RetrainSection(every="1h"), model_dir=str(b), settings=None, topics=["t"], fmt=None)
    bad = {"retrain.every": "soon", "retrain.validation_fraction": 0.7, "retrain.max_fpr_factor": 0.5,
           "retrain.timeout_s": 0}
    problems: list = []
    load_config(None, env={}, overrides=bad, problems=problems)
    assert [str(p) for p in problems] == [
        "retrain.every: 'soon' is not a duration (90s, 15m, 24h, 1d, 1h30m) (from command line)",
        "retrain.timeout_s: must be > 0, got 0.0 (from command line)",
        "retrain.validation_fraction: must lie in (0, 0.5), got 0.7 (from command line)",
        "retrain.max_fpr_factor: must be at least 1, got 0.5 (from command line)"]


class _Conn:
    def __init__(self, res):
        self.res = res

    def poll(self):
        return self.res is not None

    def recv(self):
        return self.res

    def close(self):
        pass


class _Proc:
    def __init__(self, alive=False, exitcode=1):
        self._alive, self.exitcode = alive, exitcode

    def is_alive(self):
        return self._alive

    def join(self, timeout=None):
        pass


@pytest.mark.parametrize("res,proc,outcome,reason", [
    ({"ok": True, "promoted": True, "candidate": "v2", "previous": "v1"}, _Proc(), "promoted", ""),
    ({"ok": True, "promoted": False, "candidate": "v2", "previous": "v1", "reason": "its scores collapse"}, _Proc(),
     "refused", "its scores collapse"),
    ({"ok": False, "reason": "retrain pumps: no window of 16 readings left"}, _Proc(), "failed",
     "retrain pumps: no window of 16 readings left"),
    (None, _Proc(alive=False, exitcode=-9), "failed", "the retrain process exited with code -9 and no result"),
])
def test_every_outcome_is_counted_written_and_logged(tmp_path, caplog, res, proc, outcome, reason):
    reg = CollectorRegistry()
    s, clock = _scheduler(tmp_path, metrics=AnomonMetrics(reg), every="1h")
    promoted = []
    s.on_promoted = lambda: promoted.append(1)
    assert s._lock()
    s._proc, s._conn, s._started = proc, _Conn(res), time.monotonic()
    s.tick()
    assert not s.running
    assert reg.get_sample_value("anomon_retrains_total", {"model": "pumps", "outcome": outcome}) == 1
    assert reg.get_sample_value("anomon_retrain_running", {"model": "pumps"}) == 0
    st = read_state(tmp_path / "reg" / "pumps" / "retrain.json")
    assert st["outcome"] == outcome and st["reason"] == reason and st["running"] is False
    assert promoted == ([1] if outcome == "promoted" else [])
    assert s._lock()  # the lock was released


@pytest.mark.broker
def test_the_daemon_retrains_promotes_and_swaps_without_losing_a_window(broker, fresh_topic, tmp_path,
                                                                       inprocess_daemon):
    reg = Registry(tmp_path / "reg")
    reg.add("pumps", make_bundle(tmp_path / "v1", name="pumps", version="v1"))
    series = ["p1", "p2"]
    produce_readings(broker.bootstrap, fresh_topic, series, 600)
    metrics = AnomonMetrics(CollectorRegistry())
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", reg.current_path("pumps"),
                        model__watch_interval_s=0.2, retrain__every="2s", retrain__min_interval_s=3600)
    r = inprocess_daemon(cfg, metrics=metrics)
    d = r.daemon
    deadline = time.monotonic() + 90
    while reg.current("pumps") == "v1" or d.bundle.version == "v1":
        assert time.monotonic() < deadline, f"no retrain promoted: {read_state(tmp_path / 'reg' / 'pumps' / 'retrain.json')}"
        time.sleep(0.2)
    new = reg.current("pumps")
    produce_readings(broker.bootstrap, fresh_topic, series, 800, start=600)
    want = expected_window_ids(series, 800, 16, 4)
    deadline = time.monotonic() + 60
    while d.stats["windows"] < len(want) and time.monotonic() < deadline:
        time.sleep(0.1)
    r.stop()
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want))]
    assert sorted(g["id"] for g in got) == sorted(want)  # every window once, across the swap
    first = expected_window_ids(series, 600, 16, 4)
    assert {g["version"] for g in got if g["id"] not in first} == {new}  # produced after the swap
    for s in series:  # each series: the old version's windows, then the new one's, one switch
        seq = [g["version"] for g in sorted((g for g in got if g["id"].startswith(s + "@")),
                                             key=lambda g: int(g["id"].split("@")[1]))]
        k = seq.index(new)
        assert set(seq[:k]) <= {"v1"} and set(seq[k:]) == {new}
    m = metrics.registry
    assert m.get_sample_value("anomon_retrains_total", {"model": "pumps", "outcome": "promoted"}) == 1
    st = read_state(tmp_path / "reg" / "pumps" / "retrain.json")
    assert st["outcome"] == "promoted" and st["trigger"] == "schedule" and st["candidate"] == new
    assert st["checks"]["validation_fpr"] <= st["checks"]["max_fpr"]
    assert [e["action"] for e in reg.history("pumps")][-1] == "promote"


def test_check_config_reports_a_bad_models_setting_and_retrain_without_a_registry(tmp_path):
    from monitor.check_config import check

    b = make_bundle(tmp_path / "b", name="pumps")
    reg = Registry(tmp_path / "reg")
    reg.add("fans", make_bundle(tmp_path / "f", name="fans"))
    p = tmp_path / "c.toml"
    p.write_text(f"""[retrain]
every = "24h"
[[models]]
name = "pumps"
dir = "{b}"
match = {{ series = "pump-*" }}
[[models]]
name = "fans"
dir = "{reg.current_path('fans')}"
default = true
stride = "x"
""")
    _, _, problems = check(str(p), {}, env={})
    assert problems == [
        f"models (pumps).dir: {b} is not a registry's NAME/current, and [retrain] is on: a retrained version would "
        "have nowhere to go (anomon models add NAME DIR; serve REGISTRY/NAME/current)",
        f"window.stride: expected an integer, got 'x' (from config file {p} (models fans))"]
