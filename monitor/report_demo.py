"""``report.html`` of ``anomon demo``: summary cards (delivery, window-level and alert-level accuracy,
speed), each series' signal with its abnormal beats shaded above its score, threshold and alert spans,
a close-up of the highest-scoring moment, the score densities of normal and anomalous windows, the
window-level confusion matrix and the latency histogram; ``metrics.json`` linked.
Built with :class:`monitor.report.Report`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from monitor.report import Report, use_agg
from monitor.report_figures import (confusion_counts, confusion_figure, latency_histogram, score_densities,
                                    series_figure)

#: at most this many series get their own plot (the others are in metrics.json)
MAX_SERIES_PLOTS = 4
#: half-width (s) of the shading around an abnormal beat's R peak
BEAT_HALF_WIDTH_S = 0.1


def _beat_spans(st: Any, n: int) -> list[tuple[float, float]]:
    """Event-time spans (s) of the abnormal beats (or, without beats, of the labelled readings) of ``st``."""
    p = st.period_ms / 1000
    if st.beats:
        return [(i * p - BEAT_HALF_WIDTH_S, i * p + BEAT_HALF_WIDTH_S) for i, sym in st.beats if sym != "N" and i < n]
    lab = np.asarray(st.labels[:n]).astype(bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], lab.astype(int), [0]])))
    return [(a * p, b * p) for a, b in zip(edges[::2], edges[1::2])]


def _table(rows: list[tuple[str, Any, str]]) -> list[dict[str, Any]]:
    return [{"figure": k, "value": "-" if v is None else v, "meaning": m} for k, v, m in rows]


def write_demo_report(summary: dict[str, Any], scores: list[dict], alerts: list[dict], streams_: list, t0_ms: float,
                      out_dir: str | Path, latency_ms: Any = None) -> Path:
    """Write ``out_dir/report.html`` from the demo's summary, its score and alert records and the
    replayed series; ``latency_ms`` is the per-window latency of the daemon."""
    use_agg()
    from monitor.demo import DEFINITIONS, FS, S, T, _labels_for, alert_intervals

    s = summary
    r = Report("anomon demo: streaming anomaly detection on MIT-BIH ECG")
    r.text(f"What happened: the model {s['model']} ({s['detector']}, version {s['model_version']}) scored windows of "
           f"{T} readings every {S} ({T / FS:.2f} s every {S / FS:.2f} s at 360 Hz) of {s['series']} ECG series "
           f"replayed at {s['speed']:g}x real time through the embedded Kafka broker, as `anomon run` does on a "
           "real stream. A window is anomalous when an abnormal (non-N) beat's R peak lies in it.")
    lat = s.get("latency_ms") or {}
    r.cards([("windows scored", s["windows_scored"], f"of {s['windows_expected']} expected"),
             ("lost / duplicated", f"{s['windows_lost']} / {s['duplicates']}", f"dead-lettered {s['dlq']}"),
             ("window precision", s["window_precision"], "flagged windows that hold an abnormal beat"),
             ("window recall", s["window_recall"], "abnormal windows flagged"),
             ("window F1", s["window_f1"], f"ROC AUC {s.get('window_roc_auc')}"),
             ("alert precision", s["precision"], f"{s['alerts_with_abnormal_beat']} of {s['alerts']} alerts"),
             ("alert recall", s["recall"], f"{s['abnormal_beats_in_alerts']} of {s['abnormal_beats']} abnormal beats"),
             ("throughput", s["throughput_readings_per_s"], "readings/s"),
             ("latency p99", f"{lat['p99']} ms" if "p99" in lat else None, f"p50 {lat.get('p50', '-')} ms")])
    r.text(f"Window figures: {DEFINITIONS['window']}. Alert figures: {DEFINITIONS['alert']}.", "note")
    r.link("metrics.json", "metrics.json", "Every figure of this run is in ", " beside this report.")

    r.heading("Summary", id="summary")
    r.table(_table([
        ("windows expected / scored", f"{s['windows_expected']} / {s['windows_scored']}", "every full window of what was sent"),
        ("windows lost", s["windows_lost"], "expected but never scored"),
        ("duplicates", s["duplicates"], "windows scored more than once"),
        ("dead-lettered", s["dlq"], "records the daemon could not use"),
        ("windows labelled anomalous", s["windows_labelled_anomalous"], "hold an abnormal beat's R peak"),
        ("window precision / recall / F1", f"{s['window_precision']:.3f} / {s['window_recall']:.3f} / "
         f"{s['window_f1']:.3f}", "per window, at the threshold"),
        ("window ROC AUC / PR AUC", f"{s.get('window_roc_auc')} / {s.get('window_pr_auc')}",
         f"of the score {s['score_component']}, every threshold"),
        ("alerts", s["alerts"], "alert spans opened"),
        ("alert precision / recall / F1", f"{s['precision']:.3f} / {s['recall']:.3f} / {s['f1']:.3f}", "per alert span"),
        ("readings sent", s["readings_sent"], f"in {s['records_sent']} records ({s['form']})"),
        ("throughput", f"{s['throughput_readings_per_s']:.0f} readings/s, {s['throughput_windows_per_s']:.0f} "
         "windows/s", "from the first reading sent to the last window scored"),
        ("latency p50 / p95 / p99", " / ".join(f"{lat[k]} ms" for k in ("p50", "p95", "p99") if k in lat) or None,
         "from the Kafka timestamp of the record completing a window to its score being sent"),
        ("threshold", s["threshold_mode"], "calibrated: fixed from the bundle's held-out windows"),
    ]), cls="text")

    rows = sorted({x["id"]: x for x in scores}.values(), key=lambda x: (x["series"], x["end_ts"]))
    comp = s["score_component"]
    if rows:
        y, _ = _labels_for(rows, streams_, t0_ms)
        sc = np.array([x["scores"][comp] for x in rows], dtype=float)
        flag = np.array([x["anomalous"] for x in rows], dtype=bool)
        thr_all = np.array([x["thresholds"][comp] for x in rows], dtype=float)
        intervals = alert_intervals(alerts, rows, streams_)
        r.heading("Each series", id="series")
        by = {st.series: st for st in streams_}
        shown = [st for st in streams_ if any(x["series"] == st.series for x in rows)][:MAX_SERIES_PLOTS]
        for st in shown:
            mine = [x for x in rows if x["series"] == st.series]
            t = (np.array([x["end_ts"] for x in mine]) - t0_ms - st.offset_ms) / 1000
            n = int(min(len(st), t[-1] * 1000 / st.period_ms + 1))
            ts = np.arange(n) * st.period_ms / 1000
            spans = [((a - t0_ms - st.offset_ms) / 1000, (b - t0_ms - st.offset_ms) / 1000)
                     for ss, a, b in intervals if ss == st.series]
            fig = series_figure(f"{st.series}: {len(mine)} windows, {len(spans)} alerts", ts,
                                st.values[:n, 0], _beat_spans(st, n), t, [x["scores"][comp] for x in mine],
                                [x["thresholds"][comp] for x in mine], spans, comp, "ECG (mV)", "event time (s)")
            r.figure(fig, f"{st.series}, the whole run. Top: the ECG, abnormal beats shaded orange. Bottom: the score "
                          f"{comp} of each window (plotted at its last reading; linear axis), the threshold dashed "
                          "and the alert spans shaded red. Orange above, red below is a detection; red with no orange "
                          "is a false alarm.")
        if shown:
            st = shown[0]
            mine = [x for x in rows if x["series"] == st.series]
            k = int(np.argmax([x["scores"][comp] for x in mine]))
            centre = (mine[k]["end_ts"] - t0_ms - st.offset_ms) / 1000
            a_s, b_s = max(0.0, centre - 6.0), centre + 6.0
            sel = [x for x in mine if a_s <= (x["end_ts"] - t0_ms - st.offset_ms) / 1000 <= b_s]
            t = (np.array([x["end_ts"] for x in sel]) - t0_ms - st.offset_ms) / 1000
            i0, i1 = int(a_s * 1000 / st.period_ms), int(min(len(st), b_s * 1000 / st.period_ms))
            ts = np.arange(i0, i1) * st.period_ms / 1000
            spans = [((a - t0_ms - st.offset_ms) / 1000, (b - t0_ms - st.offset_ms) / 1000)
                     for ss, a, b in intervals if ss == st.series]
            spans = [(max(a, a_s), min(b, b_s)) for a, b in spans if b >= a_s and a <= b_s]
            beats = [(a, b) for a, b in _beat_spans(by[st.series], i1) if b >= a_s]
            fig = series_figure(f"{st.series}: 12 s around the highest score", ts, st.values[i0:i1, 0], beats, t,
                                [x["scores"][comp] for x in sel], [x["thresholds"][comp] for x in sel], spans, comp,
                                "ECG (mV)", "event time (s)")
            r.figure(fig, "Close-up of the same plots around the highest-scoring window, where the beats can be told "
                          "apart.")

        r.heading(f"Score densities ({comp})", id="densities")
        thr = float(np.median(thr_all))
        r.figure(score_densities([("normal windows", sc[y == 0]), ("windows with an abnormal beat", sc[y == 1])],
                                 thr, comp, closeup=1),
                 "How the scores of normal windows and of windows holding an abnormal beat are spread (linear axes). "
                 "Windows right of the dashed threshold are flagged (the median threshold, when it varies).")
        r.heading("Confusion matrix (windows)", id="confusion")
        r.figure(confusion_figure(confusion_counts(y, flag), f"{len(rows)} windows at the threshold"),
                 "Rows: whether a window holds an abnormal beat; columns: whether the daemon flagged it. The top "
                 "right is the false-positive rate, the bottom right the window recall.")
    else:
        r.text("No windows were scored, so there is nothing to plot.", "bad")
    r.heading("Latency", id="latency")
    lat_v = np.asarray(latency_ms if latency_ms is not None else [], dtype=float)
    if lat_v.size:
        r.figure(latency_histogram(lat_v),
                 f"Per-window latency of the daemon over {lat_v.size} windows (linear axes): from the Kafka timestamp of "
                 "the record completing a window to its score being sent. The solid line is the median, the dashed one the p99.")
    else:
        r.text("The daemon recorded no latencies.", "note")
    return r.write(out_dir)
