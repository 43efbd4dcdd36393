"""Many models in one daemon (issue 19.3): ``[[models]]`` entries route readings by topic, series
glob, series regex or header; each model windows and scores its own series with its own window length;
readings no entry matches are dead-lettered with reason ``no_model``, counted, never dropped."""
from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.config import load_config
from monitor.errors import ConfigError
from tests.fixtures.daemon import T0_MS, _sine, expected_window_ids, make_bundle, models_config, read_topic

pytestmark = pytest.mark.broker


def _write(path, text: str):
    path.write_text(text)
    return path


def _produce(bootstrap: str, plan: list[tuple[str, str, list]], n: int) -> None:
    """``plan``: (topic, series, headers) per series; n readings each, keyed by series."""
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_reading

    sink = Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=20)
    try:
        for a in range(n):
            for k, (topic, s, headers) in enumerate(plan):
                v = float(_sine(k, np.arange(a, a + 1))[0])
                sink.send(topic, encode_reading(s, T0_MS + a * 10, v), key=s, headers=headers or None)
        sink.flush()
    finally:
        sink.close()


def test_three_models_over_two_topics_score_every_window_with_the_right_model(broker, fresh_topic, tmp_path,
                                                                          inprocess_daemon):
    from streams.kafka import KafkaSettings, create_topics

    t1, t2 = f"{fresh_topic}-a", f"{fresh_topic}-b"
    create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap), {t1: 2, t2: 2})
    dirs = {name: make_bundle(tmp_path / name, length=L, stride=S, name=name)
            for name, L, S in (("pumps", 16, 4), ("fans", 12, 3), ("valves", 20, 5))}
    cfg = models_config(tmp_path / "anomon.toml", broker.bootstrap, [t1, t2], f"g-{fresh_topic}", fresh_topic, f"""
[[models]]
name = "pumps"
dir = "{dirs['pumps']}"
match = {{ topic = "{t1}", series = "pump-*" }}

[[models]]
name = "fans"
dir = "{dirs['fans']}"
match = {{ series_regex = "^fan-[0-9]+$" }}

[[models]]
name = "valves"
dir = "{dirs['valves']}"
match = {{ topic = "{t2}", header = {{ site = "b" }} }}
""", partitions=2)
    assert [e.name for e in cfg.models] == ["pumps", "fans", "valves"]
    n = 120
    plan = [(t1, "pump-1", []), (t1, "pump-2", []), (t1, "fan-1", []), (t2, "fan-2", []),
            (t2, "valve-1", [("site", b"b")]), (t2, "valve-2", [("site", b"b")]),
            (t1, "other-1", []),                       # no entry matches: no_model (the pumps lane reads t1)
            (t2, "pump-3", []),                        # pumps takes t1 only, valves wants the header: no_model
            (t2, "valve-3", [("site", b"a")])]         # the header's value differs: no_model
    _produce(broker.bootstrap, plan, n)
    want = {"pumps": expected_window_ids(["pump-1", "pump-2"], n, 16, 4),
            "fans": expected_window_ids(["fan-1", "fan-2"], n, 12, 3),
            "valves": expected_window_ids(["valve-1", "valve-2"], n, 20, 5)}
    total = sum(len(v) for v in want.values())
    r = inprocess_daemon(cfg)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=total, timeout_s=90)
    dlq = read_topic(broker.bootstrap, f"{fresh_topic}.dlq", min_count=3 * n, timeout_s=30)
    stats = r.stop()
    by_model: dict[str, list[str]] = {}
    for _, v, _ in got:
        rec = json.loads(v)
        by_model.setdefault(rec["model"], []).append(rec["id"])
    for name, ids in want.items():  # every window of each model's series, once, by that model
        assert sorted(by_model.get(name, [])) == sorted(ids), name
    assert len(got) == total
    reasons = {dict(h)["anomon.reason"] for _, _, h in dlq}
    assert reasons == {b"no_model"}
    assert sorted({json.loads(v)["series"] for _, v, _ in dlq}) == ["other-1", "pump-3", "valve-3"]
    assert len(dlq) == 3 * n  # each unmatched reading dead-lettered once (by one lane), none dropped
    assert stats["dlq"] == 3 * n and set(stats["lanes"]) == {"pumps", "fans", "valves"}
    assert stats["lanes"]["pumps"]["windows"] == len(want["pumps"])


def test_models_config_errors_name_the_entry_and_the_field(tmp_path):
    def load(text: str):
        return load_config(_write(tmp_path / "c.toml", '[input]\ntopics = ["t", "u"]\n' + text), env={})

    cases = [
        ('[[models]]\nname = "a"\ndir = "m"\n', "models[0] (a).match: give a match"),
        ('[[models]]\nname = "a"\ndir = "m"\nmatch = { colour = "x" }\n', "models[0] (a).match.colour: unknown rule"),
        ('[[models]]\nname = "a"\ndir = "m"\nmatch = { series_regex = "(" }\n', "models[0] (a).match.series_regex"),
        ('[[models]]\nname = "a b"\ndir = "m"\ndefault = true\n', "models[0].name: expected a short name"),
        ('[[models]]\nname = "a"\ndir = "m"\ndefault = true\n[[models]]\nname = "a"\ndir = "n"\nmatch = { topic = "t" }\n',
         "models: name 'a' is given to more than one entry"),
        ('[[models]]\nname = "a"\ndir = "m"\nmatch = { topic = "x" }\n', "models (a).match.topic: 'x' is not one of"),
        ('[[models]]\nname = "a"\ndir = "m"\nmatch = { topic = "t" }\n', "no [[models]] entry can match topic 'u'"),
        ('[model]\ndir = "m"\n[[models]]\nname = "a"\ndir = "m"\ndefault = true\n', "model.dir: give either"),
        ('[[models]]\nname = "a"\ndir = "m"\ndefault = true\nstrde = 3\n', "models[0] (a).strde: unknown setting"),
    ]
    for text, msg in cases:
        with pytest.raises(ConfigError) as e:
            load(text)
        assert msg in str(e.value), (text, str(e.value))
        assert "\n" not in str(e.value)


def test_an_entry_overrides_its_own_stride_and_scoring(tmp_path):
    from monitor.lanes import lane_config
    from monitor.routing import Router

    cfg = load_config(_write(tmp_path / "c.toml", """
[input]
topics = ["t"]
group_id = "g"
[[models]]
name = "fast"
dir = "m1"
match = { series = "f*" }
stride = 2
threshold = "calibrated"
[[models]]
name = "rest"
dir = "m2"
default = true
"""), env={})
    router = Router(cfg.models)
    fast, rest = (lane_config(cfg, e, router) for e in cfg.models)
    assert (fast.window.stride, fast.scoring.threshold, fast.input.group_id) == (2, "calibrated", "g.fast")
    assert (rest.window.stride, rest.scoring.threshold, rest.model.dir) == (0, "dspot", "m2")
    assert fast.progress_topic == "g.fast.progress" and rest.repartition_topic == "g.rest.repartition"
