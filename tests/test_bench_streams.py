"""Pieces of ``anomon bench streams`` (monitor/bench/streams.py, monitor/bench/stream_peers.py) that run without data."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.bench import stream_peers as peers
from monitor.bench import streams
from monitor.evaluate_stream import LabelledSeries, evaluate_stream


def test_skab_changepoint_windows_lie_to_the_right():
    cp = np.zeros(1000, bool)
    cp[[100, 450, 480, 990]] = True
    s = LabelledSeries("x", np.zeros((1000, 1)), np.zeros(1000, int), None, "x", cp)
    w = streams._skab_cp_windows(60)(s, 400)
    # 100 is in the training rows; 450 and 480 overlap (merged); 990 is clipped at the end
    assert w == [(50, 139), (590, 599)]


def test_series_of_consecutive_windows():
    x = np.arange(20.0).reshape(10, 2)
    W = np.stack([x[i:i + 4] for i in range(7)])
    assert np.array_equal(peers._series_of(W), x)
    assert peers._series_of(W[::2]) is None


def test_pca_control_chart_flags_both_statistics():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 1))
    X = np.hstack([z, z + 0.01 * rng.normal(size=(2000, 1)), rng.normal(size=(2000, 1))])
    pc = peers.PCAControlChart(var_explained=0.9).fit(X)  # keeps (z, z) and the third column
    s = pc.score(np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 0.0], [6.0, 6.0, 0.0]]))["t2q"]
    assert s[0] < 1.0  # in control
    assert s[1] > 10.0  # breaks the correlation: Q
    assert s[2] > 3.0  # along the main component, far out: T²


def test_peer_runs_through_evaluate_stream_unregistered():
    from models import available_detectors

    rng = np.random.default_rng(1)
    n = 600
    x = rng.normal(size=(n, 2))
    y = np.zeros(n, int)
    x[400:410] += 8.0
    y[400:410] = 1
    s = LabelledSeries("p", x, y, 200, "p")
    res = evaluate_stream(None, peers.PCAControlChart, window=4, series=[s])
    assert res["config"]["detector"] == "pca-t2q" and res["series"]["p"]["nab_detail"]["standard"]["tp"] == 1
    assert "pca-t2q" not in available_detectors()
    cp = np.zeros(n, bool)
    cp[400] = True
    s.changepoints = cp
    res = evaluate_stream(None, peers.PCAControlChart, window=4, series=[s], nab_windows=streams._skab_cp_windows(60))
    d = res["series"]["p"]["nab_custom_detail"]["standard"]
    assert d["windows"] == 1 and d["tp"] == 1
    assert res["nab_custom_corpus"]["standard"] == pytest.approx(100 * (d["raw"] + 1) / 2)  # null -1, perfect 1


def test_tables_render_skips_and_both_layouts():
    cell = {k: 0.5 for k in (*streams.HEAD, "pooled_point_f1")}
    cell.update(nab_corpus={p: 10.0 for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")},
                nab_changepoint={p: 20.0 for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")},
                alerts=3, seconds=1.0)
    md = streams.tables({"datasets": {"skab": {"a": cell}, "ucr": {"a": cell, "b": {"skipped": "too slow"}}}})
    assert "| a | 0.500 |" in md and "20.0" in md and "Not run: b: too slow." in md


@pytest.mark.parametrize("cls", [peers.PyODIForest, peers.PyODKNN])
def test_pyod_adapters(cls):
    pytest.importorskip("pyod")
    rng = np.random.default_rng(2)
    det = cls().fit(rng.normal(size=(300, 3)))
    s = next(iter(det.score(np.array([[0.0, 0, 0], [9.0, 9, 9]])).values()))
    assert s[1] > s[0]
