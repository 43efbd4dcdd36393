"""The figures the HTML reports share (``anomon train``, ``anomon evaluate``, ``anomon demo``).

Each function returns a matplotlib figure (Agg; :func:`monitor.report.use_agg` first) that
:meth:`monitor.report.Report.figure` embeds. Axes are linear; scores are plotted so that higher
means more anomalous, with the threshold as a dashed line.

Examples
--------
>>> from monitor.report import use_agg
>>> use_agg()
>>> import numpy as np
>>> fig = score_densities([("normal", np.arange(100.0)), ("anomalous", np.arange(50.0, 150.0))], 90.0, "score")
>>> len(fig.axes)
1
>>> confusion_counts([0, 1, 1, 0], [False, True, False, True])
{'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_counts(y: Any, flagged: Any) -> dict[str, int]:
    """True/false positives and negatives of ``flagged`` (bool) against labels ``y`` (0/1)."""
    y = np.asarray(y).astype(bool)
    f = np.asarray(flagged).astype(bool)
    return {"tp": int((f & y).sum()), "fp": int((f & ~y).sum()), "fn": int((~f & y).sum()), "tn": int((~f & ~y).sum())}


def _density_panel(ax: Any, groups: Sequence[tuple[str, Any]], vals: list[np.ndarray], threshold: float | None,
                   lo: float, hi: float, xlabel: str) -> None:
    bins = np.linspace(lo, hi, 60)
    for (label, _), v in zip(groups, vals):
        if v.size:
            ax.hist(np.clip(v, lo, hi), bins=bins, density=True, alpha=0.5, label=f"{label} ({v.size})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"{xlabel}; outside [{lo:.3g}, {hi:.3g}] in the end bins", fontsize=8)
    ax.set_ylabel("density")


def score_densities(groups: Sequence[tuple[str, Any]], threshold: float | None, xlabel: str,
                    closeup: int = 0) -> Any:
    """Histograms (density, shared bins, linear axes) of each ``(label, scores)`` group and the threshold.

    The bins span the 0.5-99.5 percentiles of all scores (and the threshold); scores outside are
    counted in the first / last bin, as the x label says. When the first ``closeup`` groups (the
    normal ones) occupy under a fifth of that range, a second panel shows them and the threshold
    close up.
    """
    import matplotlib.pyplot as plt

    vals = [np.asarray(v, dtype=float) for _, v in groups]
    vals = [v[np.isfinite(v)] for v in vals]
    has_thr = threshold is not None and np.isfinite(threshold)

    def span(vs: list[np.ndarray]) -> tuple[float, float]:
        allv = np.concatenate([v for v in vs if v.size] or [np.zeros(1)])
        lo, hi = (float(x) for x in np.percentile(allv, [0.5, 99.5]))
        if has_thr:
            lo, hi = min(lo, threshold), max(hi, threshold)
        return lo, (hi if hi > lo else lo + 1.0)

    lo, hi = span(vals)
    near = span(vals[:closeup]) if closeup else (lo, hi)
    near = (near[0], near[0] + 1.25 * (near[1] - near[0]))
    two = closeup and (near[1] - near[0]) < 0.2 * (hi - lo)
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(12 if two else 8, 3.4), squeeze=False)
    label = f"{xlabel} (higher = more anomalous)"
    _density_panel(axes[0][0], groups, vals, threshold, lo, hi, label)
    axes[0][0].set_title("all scores", fontsize=9)
    if two:
        _density_panel(axes[0][1], groups, vals, threshold, near[0], near[1], label)
        axes[0][1].set_title("close-up of the normal windows and the threshold", fontsize=9)
    axes[0][-1].legend(fontsize=8, loc="upper right", framealpha=0.85)
    fig.tight_layout()
    return fig


def confusion_figure(c: dict[str, int], title: str = "") -> Any:
    """A 2x2 confusion matrix (rows: labelled; columns: flagged) with counts and row shares."""
    import matplotlib.pyplot as plt

    m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(m[i, j])}\n({100 * share[i, j]:.1f}%)", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=10)
    ax.set_xticks([0, 1], ["not flagged", "flagged"])
    ax.set_yticks([0, 1], ["normal", "anomalous"])
    ax.set_xlabel("anomon")
    ax.set_ylabel("label")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def latency_histogram(latency_ms: Any, goal_ms: float | None = None) -> Any:
    """Histogram of per-window latencies (ms, linear axes) with the p50 / p99 marked."""
    import matplotlib.pyplot as plt

    v = np.asarray(latency_ms, dtype=float)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    hi = float(np.percentile(v, 99.9)) if v.size else 1.0
    ax.hist(np.clip(v, 0, hi), bins=60, range=(0, hi if hi > 0 else 1.0), color="#4c72b0")
    for q, ls in ((50, "-"), (99, "--")):
        if v.size:
            p = float(np.percentile(v, q))
            ax.axvline(p, color="k", ls=ls, lw=1, label=f"p{q} {p:.1f} ms")
    if goal_ms is not None:
        ax.axvline(goal_ms, color="r", ls=":", lw=1.2, label=f"goal {goal_ms:g} ms")
    ax.set_xlabel("latency per window (ms; above the 99.9th percentile counted in the last bin)")
    ax.set_ylabel("windows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def merge_spans(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching ``(start, end)`` spans merged, sorted (so shading does not stack).

    >>> merge_spans([(5, 6), (0, 2), (1, 3), (3, 4)])
    [(0, 4), (5, 6)]
    """
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def series_figure(title: str, t_signal: Any, signal: Any, anomaly_spans: Sequence[tuple[float, float]],
                  t_score: Any, scores: Any, threshold: Any, alert_spans: Sequence[tuple[float, float]],
                  score_label: str, signal_label: str = "value", time_label: str = "time (s)") -> Any:
    """One series: the signal with labelled anomalies shaded (top), the score with its threshold
    line and the alert spans shaded (bottom; overlapping spans merged); shared, linear time axis."""
    import matplotlib.pyplot as plt

    fig, (a0, a1) = plt.subplots(2, 1, figsize=(12, 4.6), sharex=True)
    a0.plot(t_signal, signal, lw=0.5, c="k")
    for i, (s, e) in enumerate(merge_spans(anomaly_spans)):
        a0.axvspan(s, e, color="orange", alpha=0.35, lw=0, label="labelled anomaly" if i == 0 else None)
    a0.set_ylabel(signal_label)
    a0.set_title(title, fontsize=10)
    a1.plot(t_score, scores, lw=0.8, c="#4c72b0", label=score_label)
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), np.shape(t_score))
    a1.plot(t_score, thr, "k--", lw=0.9, label="threshold")
    for i, (s, e) in enumerate(merge_spans(alert_spans)):
        a1.axvspan(s, e, color="red", alpha=0.18, lw=0, label="alert" if i == 0 else None)
    a1.set_ylabel("score")
    a1.set_xlabel(time_label)
    for ax in (a0, a1):
        h, _ = ax.get_legend_handles_labels()
        if h:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.3)
    fig.tight_layout()
    return fig
