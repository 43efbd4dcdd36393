"""The model registry (issue 19.4): versions under REGISTRY/NAME/VERSION/, an atomically replaced
``current`` pointer, promote and rollback; a daemon serving ``current`` hot-swaps between micro-batches,
every score record names the version that scored it, and no window is lost or scored twice."""
from __future__ import annotations

import json
import time

import pytest

from monitor.commands.models import run as models_run  # noqa: F401 - the CLI module imports
from monitor.cli import main
from monitor.registry import Registry, RegistryError
from tests.fixtures.daemon import daemon_config, expected_window_ids, make_bundle, models_config, produce_readings, read_topic


def test_add_promote_rollback_and_their_errors(tmp_path, capsys):
    b1 = make_bundle(tmp_path / "b1", name="pumps", version="v1")
    b2 = make_bundle(tmp_path / "b2", name="pumps", version="v2")
    b3 = make_bundle(tmp_path / "b3", length=12, name="pumps", version="v3")
    reg = Registry(tmp_path / "reg")
    assert reg.add("pumps", b1) == "v1" and reg.current("pumps") == "v1"  # the first version is current
    assert reg.add("pumps", b2) == "v2" and reg.current("pumps") == "v1"
    reg.add("pumps", b3)
    assert reg.versions("pumps") == ["v1", "v2", "v3"]
    assert reg.promote("pumps", "v2") == "v1" and reg.current("pumps") == "v2"
    assert (reg.current_path("pumps") / "anomon.json").is_file()
    with pytest.raises(RegistryError, match="windows 12x1 differ from the serving v2's 16x1"):
        reg.promote("pumps", "v3")
    with pytest.raises(RegistryError, match="no version 'v9'"):
        reg.promote("pumps", "v9")
    with pytest.raises(RegistryError, match="version v2 of pumps exists already"):
        reg.add("pumps", b2)
    assert reg.rollback("pumps") == ("v2", "v1") and reg.current("pumps") == "v1"
    with pytest.raises(RegistryError, match="no earlier version to roll back to"):
        reg.rollback("pumps")
    assert [e["action"] for e in reg.history("pumps")] == ["add", "promote", "add", "add", "promote", "rollback"]
    (tmp_path / "b4").mkdir()
    with pytest.raises(Exception, match="not an anomon model bundle"):
        reg.add("pumps", tmp_path / "b4")  # what does not load is never added
    assert main(["models", "--registry", str(tmp_path / "reg"), "list"]) == 0
    assert "pumps  current v1" in capsys.readouterr().out
    assert main(["models", "--registry", str(tmp_path / "reg"), "promote", "pumps", "v7"]) == 2
    assert "anomon: error: pumps: no version 'v7'" in capsys.readouterr().err


@pytest.mark.broker
def test_a_daemon_follows_promote_and_rollback_without_losing_a_window(broker, fresh_topic, tmp_path, inprocess_daemon):
    reg = Registry(tmp_path / "reg")
    for v in ("v1", "v2"):
        reg.add("pumps", make_bundle(tmp_path / v, name="pumps", version=v))
    series = ["p1", "p2"]
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", reg.current_path("pumps"),
                        model__watch_interval_s=0.2)
    r = inprocess_daemon(cfg)
    scores = f"{fresh_topic}.scores"

    def produce_and_wait(start: int, stop: int) -> None:
        produce_readings(broker.bootstrap, fresh_topic, series, stop, start=start)
        want = len(expected_window_ids(series, stop, 16, 4))
        deadline = time.monotonic() + 60
        while r.daemon.stats["windows"] < want and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.daemon.stats["windows"] == want

    def swap(version: str) -> None:
        deadline = time.monotonic() + 30
        while r.daemon.bundle.version != version and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.daemon.bundle.version == version

    produce_and_wait(0, 100)
    reg.promote("pumps", "v2")
    swap("v2")
    produce_and_wait(100, 200)
    reg.rollback("pumps")
    swap("v1")
    produce_and_wait(200, 300)
    r.stop()
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, scores, min_count=r.daemon.stats["windows"])]
    ids = [g["id"] for g in got]
    assert sorted(ids) == sorted(expected_window_ids(series, 300, 16, 4))  # every window, once
    version_at = {g["id"]: g["version"] for g in got}
    first = expected_window_ids(series, 100, 16, 4)
    second = expected_window_ids(series, 200, 16, 4) - first
    third = set(ids) - first - second
    assert {version_at[i] for i in first} == {"v1"}
    assert {version_at[i] for i in second} == {"v2"}
    assert {version_at[i] for i in third} == {"v1"}


@pytest.mark.broker
def test_retrain_promotes_a_candidate_that_validates_and_refuses_one_that_collapses(broker, fresh_topic, tmp_path,
                                                                                   capsys):
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_reading

    reg = Registry(tmp_path / "reg")
    reg.add("pumps", make_bundle(tmp_path / "v1", name="pumps", version="v1"))
    produce_readings(broker.bootstrap, fresh_topic, ["p1", "p2"], 600)
    base = ["retrain", "pumps", "--registry", str(tmp_path / "reg"), "--bootstrap-servers", broker.bootstrap]
    assert main([*base, "--from-topic", fresh_topic, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["promoted"] and res["previous"] == "v1" and reg.current("pumps") == res["candidate"]
    assert res["checks"]["validation_fpr"] <= res["checks"]["max_fpr"] and res["checks"]["validation_windows"] > 20
    # a flat stream: the candidate's scores do not spread, it is kept but refused, the current one stays
    flat = f"{fresh_topic}-flat"
    sink = Sink(KafkaSettings(bootstrap_servers=broker.bootstrap))
    for i in range(400):
        sink.send(flat, encode_reading("p1", 1_700_000_000_000 + 10 * i, 0.0), key="p1")
    sink.flush()
    sink.close()
    promoted = reg.current("pumps")
    assert main([*base, "--from-topic", flat]) == 1
    out = capsys.readouterr().out
    assert "refused, still serving" in out and "collapse" in out
    assert reg.current("pumps") == promoted
    d = reg.describe("pumps")
    assert d["refused"] == 1 and len(d["versions"]) == 3


@pytest.mark.broker
def test_two_routed_models_from_the_registry_swap_one_without_losing_a_window(broker, fresh_topic, tmp_path,
                                                                             inprocess_daemon):
    reg = Registry(tmp_path / "reg")
    for v in ("v1", "v2"):
        reg.add("pumps", make_bundle(tmp_path / f"p{v}", name="pumps", version=v))
    reg.add("fans", make_bundle(tmp_path / "f1", length=12, stride=3, name="fans", version="f1"))
    cfg = models_config(tmp_path / "anomon.toml", broker.bootstrap, [fresh_topic], f"g-{fresh_topic}", fresh_topic, f"""
[[models]]
name = "pumps"
dir = "{reg.current_path('pumps')}"
match = {{ series = "pump-*" }}
watch_interval_s = 0.2
[[models]]
name = "fans"
dir = "{reg.current_path('fans')}"
default = true
""")
    r = inprocess_daemon(cfg)
    series = ["pump-1", "fan-1"]

    def total(n: int) -> int:
        return len(expected_window_ids(["pump-1"], n, 16, 4)) + len(expected_window_ids(["fan-1"], n, 12, 3))

    def produce_and_wait(start: int, stop: int) -> None:
        produce_readings(broker.bootstrap, fresh_topic, series, stop, start=start)
        deadline = time.monotonic() + 60
        while r.daemon.stats["windows"] < total(stop) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.daemon.stats["windows"] == total(stop)

    produce_and_wait(0, 100)
    reg.promote("pumps", "v2")
    deadline = time.monotonic() + 30
    while r.daemon.lanes["pumps"].bundle.version != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    produce_and_wait(100, 200)
    r.stop()
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=total(200))]
    ids = sorted(g["id"] for g in got)
    assert ids == sorted(expected_window_ids(["pump-1"], 200, 16, 4) | expected_window_ids(["fan-1"], 200, 12, 3))
    first = expected_window_ids(["pump-1"], 100, 16, 4)
    assert {g["version"] for g in got if g["id"] in first} == {"v1"}
    assert {g["version"] for g in got if g["series"] == "pump-1" and g["id"] not in first} == {"v2"}
    assert {g["version"] for g in got if g["series"] == "fan-1"} == {"f1"}
