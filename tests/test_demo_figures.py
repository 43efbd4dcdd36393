"""The demo's two kinds of figures (issue 21): window-level precision / recall / F1 beside the alert-level
ones, computed as their one-sentence definitions say, and printed each with its definition."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from monitor.demo import DEFINITIONS, S, T, _print_summary, evaluate_demo

REPO = Path(__file__).resolve().parents[1]


def _window(w: int, anomalous: bool) -> dict:
    start, end = w * S, w * S + T - 1  # period 1 ms, t0 0: sample i is at i ms
    return {"id": f"s@{end * 1000}", "series": "s", "start_ts": float(start), "end_ts": float(end),
            "scores": {"c": 1.0 if anomalous else 0.0}, "anomalous": anomalous}


def test_window_and_alert_figures_follow_their_definitions():
    # 4 windows of one series; one ventricular beat at sample 200 lies in windows 2 and 3 only
    stream = SimpleNamespace(series="s", offset_ms=0.0, period_ms=1.0, beats=[(50, "N"), (200, "V")])
    scores = [_window(0, False), _window(1, True), _window(2, True), _window(3, False)]
    # one alert: opened by window 1 (its end), closed at window 3's end; its span starts at window 1's start
    alerts = [{"id": "a", "event": "start", "series": "s", "start_ts": float(S + T - 1), "ts": float(S + T - 1)},
              {"id": "a", "event": "end", "series": "s", "start_ts": float(S + T - 1), "ts": float(3 * S + T - 1)}]
    d = SimpleNamespace(bundle=SimpleNamespace(alert_components=["c"]))
    out = evaluate_demo(scores + [scores[1]], alerts, [stream], 0.0, {"s": T + 3 * S}, d)
    assert (out["windows_expected"], out["windows_scored"], out["windows_lost"], out["duplicates"]) == (4, 4, 0, 1)
    # window level: flagged 1, 2; anomalous 2, 3 -> TP 1 (window 2), FP 1 (window 1), FN 1 (window 3)
    assert out["windows_labelled_anomalous"] == 2
    assert (out["window_precision"], out["window_recall"], out["window_f1"]) == (0.5, 0.5, 0.5)
    # alert level: the one alert's span [S, 3S + T - 1] holds the V beat; the one abnormal beat is covered
    assert (out["alerts"], out["alerts_with_abnormal_beat"], out["abnormal_beats"]) == (1, 1, 1)
    assert (out["precision"], out["recall"], out["f1"]) == (1.0, 1.0, 1.0)
    assert out["definitions"] == DEFINITIONS and out["score_component"] == "c"


def test_summary_prints_each_figure_beside_its_definition():
    s = json.loads((REPO / "docs" / "results" / "demo.json").read_text())
    buf = io.StringIO()
    _print_summary(s, buf)
    lines = buf.getvalue().splitlines()
    w = next(i for i, ln in enumerate(lines) if ln.startswith("windows: precision"))
    a = next(i for i, ln in enumerate(lines) if ln.startswith("alerts:"))
    assert f"precision {s['window_precision']:.3f}, recall {s['window_recall']:.3f}" in lines[w]
    assert lines[w + 1].strip() == f"({DEFINITIONS['window']})"
    assert f"precision {s['precision']:.3f}, recall {s['recall']:.3f}, F1 {s['f1']:.3f}" in lines[a]
    assert lines[a + 1].strip() == f"({DEFINITIONS['alert']})"
    assert a == w + 2  # side by side


@pytest.mark.parametrize("key", ["window", "alert"])
def test_each_definition_is_one_sentence(key):
    text = DEFINITIONS[key]
    assert text and "\n" not in text and text.count(". ") == 0
