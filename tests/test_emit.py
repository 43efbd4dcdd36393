"""Daemon._emit: the batches a cheap model scores in one drain of the queue are written out together
(one send, one wake, one metrics update), each keeping its own thresholds, batch metrics and ADWIN
update: what it writes equals what emitting them one at a time writes (real broker)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.daemon import T0_MS, daemon_config, read_topic

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def _daemon(broker, topic, bundle_dir, out):
    from prometheus_client import CollectorRegistry

    from monitor.daemon import Daemon
    from monitor.metrics import AnomonMetrics
    from streams.kafka import create_topics

    cfg = daemon_config(broker.bootstrap, topic, f"g-{out}", bundle_dir, output__scores_topic=f"{out}.scores",
                        output__alerts_topic=f"{out}.alerts", scoring__open_after=2, scoring__close_after=2)
    reg = CollectorRegistry()
    d = Daemon(cfg, metrics=AnomonMetrics(reg, process_collector=False, top_k=3))
    create_topics(d.settings, {f"{out}.scores": 3, f"{out}.alerts": 3})
    d.sink = d._make_sink()
    return d, reg


def _windows(d, series, n):
    """Window batches of several series (a burst in s0 and s2), as the windower makes them from plain readings."""
    from streams.kafka import TopicPartition

    tp = TopicPartition("in", 0)
    d.windower.assign(tp)
    items = []
    for a in range(n):
        for k, s in enumerate(series):
            v = float(np.sin(a / 5.0) + 0.01 * k)
            if s in ("s0", "s2") and 60 <= a < 70:
                v += 25.0
            items.append((len(items), s, (T0_MS + 10 * a) * 1000, (v,)))
    wins, rejs = d.windower.add_values(tp, items)
    assert not rejs
    return [(b, [T0_MS + 10 * i for i in idx]) for idx, b in wins]


def _takes(pending, size):
    """The pending window batches cut into model batches of ``size`` windows (as _score_pending cuts them)."""
    out, take, n = [], [], 0
    for b, ts in pending:
        i = 0
        while i < len(b):
            k = min(size - n, len(b) - i)
            take.append((b.take(slice(i, i + k)), ts[i:i + k]))
            n += k
            i += k
            if n == size:
                out.append(take)
                take, n = [], 0
    return out + ([take] if take else [])


def test_batches_emitted_together_write_what_emitting_each_writes(broker, fresh_topic, daemon_bundle):
    series = [f"s{i}" for i in range(6)]
    together, together_reg = _daemon(broker, fresh_topic, daemon_bundle, f"{fresh_topic}.a")
    each, each_reg = _daemon(broker, fresh_topic, daemon_bundle, f"{fresh_topic}.b")
    runs = []
    for d in (together, each):
        batches = []
        for take in _takes(_windows(d, series, 120), 7):
            X = np.concatenate([b.X for b, _ in take])
            batches.append((take, d.bundle, d.thresholds, d.bundle.score_windows(X), 0.001))
        runs.append(batches)
    assert len(runs[0]) > 10
    together._emit(runs[0])
    for batch in runs[1]:
        each._emit([batch])
    for d in (together, each):
        d.sink.flush()
        d.sink.close()

    def records(topic, drop=("scored_at",)):
        got = read_topic(broker.bootstrap, topic, timeout_s=20, idle_s=1.5)
        return sorted((k, json.dumps({f: v for f, v in json.loads(v).items() if f not in drop}, sort_keys=True))
                      for k, v, _ in got)

    scores_a, scores_b = records(f"{fresh_topic}.a.scores"), records(f"{fresh_topic}.b.scores")
    assert len(scores_a) == sum(len(b) for t, *_ in runs[0] for b, _ in t) and scores_a == scores_b
    # the online thresholds moved during the run: each batch's records carry the ones before it
    assert len({json.dumps(json.loads(v)["thresholds"], sort_keys=True) for _, v in scores_a}) > 1
    alerts_a, alerts_b = records(f"{fresh_topic}.a.alerts", ()), records(f"{fresh_topic}.b.alerts", ())
    assert alerts_a == alerts_b and {json.loads(v)["series"] for _, v in alerts_a} == {"s0", "s2"}
    for key in ("windows", "batches", "alerts", "drift"):
        assert together.stats[key] == each.stats[key], key
    assert together.metrics.top_series(together.bundle.name) == each.metrics.top_series(each.bundle.name)
    for name, labels in [("anomon_windows_scored_total", {"model": together.bundle.name}),
                         ("anomon_batch_size_count", {"model": together.bundle.name}),
                         ("anomon_alerts_total", {"model": together.bundle.name, "event": "start"})]:
        assert together_reg.get_sample_value(name, labels) == each_reg.get_sample_value(name, labels), name
    comp = together.bundle.components[0]
    assert together_reg.get_sample_value("anomon_score_sum", {"model": together.bundle.name, "component": comp}) == \
        pytest.approx(each_reg.get_sample_value("anomon_score_sum", {"model": each.bundle.name, "component": comp}))
