"""``report.html`` beside a bundle written by ``anomon train``: what was trained on, the score densities
of the training and calibration windows (and of labelled windows) with the threshold, the worst and
a typical calibration window, and the training curve. Built with :class:`monitor.report.Report`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from monitor.report import Report, use_agg


def _density(ax: Any, values: np.ndarray, label: str) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v):
        ax.hist(v, bins=min(60, max(10, len(v) // 5)), density=True, histtype="step", linewidth=1.5, label=label)


def write_train_report(out: str | Path, info: dict[str, Any], bundle: Any, *, Xtr: np.ndarray, Xcal: np.ndarray,
                       s_train: Any, s_cal: Any, split: Any = None, X_eval: np.ndarray | None = None,
                       s_eval: Any = None) -> Path:
    """Write ``out/report.html`` and return its path."""
    use_agg()
    import matplotlib.pyplot as plt

    r = Report(f"anomon train: {info['name']} v{info['version']} ({info['detector']})")
    w = info["window"]
    c = info["counts"]
    r.text(f"Window {w['length']} x {w['channels']} channel(s), stride {w['stride']}; normalisation "
           f"{info['normalize']}; {c['train_windows']} training and {c['calibration_windows']} calibration windows "
           f"from {len(info['spans'])} series; {c['labelled_windows_excluded']} windows touching labelled anomalies "
           f"left out of both; fit {info['fit_seconds']:.1f} s.")
    comp = bundle.alert_components[0]
    thr = bundle.thresholds[comp]
    r.heading("Thresholds")
    r.table([{"component": k, "threshold": float(v), "calibration FPR": info["calibration_fpr"][k],
              "training FPR": info["train_fpr"][k], "alerts": "yes" if k in bundle.alert_components else ""}
             for k, v in bundle.thresholds.items()])
    r.text(f"Target false-positive rate {info['fpr']:g}: each threshold is the (1 - fpr) quantile of the "
           "calibration scores (held-back tails, never trained on).", "note")
    if info.get("labels") and info["labels"].get("metrics"):
        r.heading("On the labelled windows")
        r.text(info["labels"]["evaluated_on"], "note")
        r.table([dict({"component": k}, **v) for k, v in info["labels"]["metrics"].items()])

    r.heading(f"Score densities ({comp})")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _density(ax, s_train[comp], "training windows")
    _density(ax, s_cal[comp], "calibration windows")
    if s_eval is not None and split is not None:
        y = split.eval_y.astype(bool)
        _density(ax, s_eval[comp][y], "labelled anomalous windows")
    ax.axvline(thr, color="k", linestyle="--", label=f"threshold {thr:.4g}")
    ax.set_xlabel(f"{comp} (higher = more anomalous)")
    ax.legend(fontsize=8)
    r.figure(fig, "Densities of the scores; alerts fire above the dashed line.")

    r.heading("Worst and typical calibration windows")
    sc = np.asarray(s_cal[comp], dtype=float)
    order = np.argsort(sc)
    picks = [("worst", int(order[-1])), ("typical (median)", int(order[len(order) // 2]))]
    if s_eval is not None and X_eval is not None and np.any(split.eval_y):
        ia = np.flatnonzero(split.eval_y)
        picks.append(("worst labelled anomaly", int(ia[np.argmax(np.asarray(s_eval[comp])[ia])])))
    fig, axes = plt.subplots(1, len(picks), figsize=(3.6 * len(picks), 2.8), squeeze=False)
    for ax, (title, i) in zip(axes[0], picks):
        if title.startswith("worst labelled"):
            X, val, sid = X_eval, float(np.asarray(s_eval[comp])[i]), split.eval_series[i]
        else:
            X, val, sid = Xcal, float(sc[i]), split.calibration_series[i] if split is not None else ""
        ax.plot(X[i])
        ax.set_title(f"{title}\n{sid}: {val:.4g}", fontsize=9)
    r.figure(fig, "Windows as the model sees them (after normalisation).")

    r.heading("Training curve")
    hist = info.get("history") or []
    if hist:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot(np.arange(1, len(hist) + 1), hist)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        r.figure(fig, f"{len(hist)} epochs.")
    else:
        r.text(f"{info['detector']} is not trained by epochs (no curve).", "note")
    r.heading("Series and spans")
    r.table([{"series": k, "readings": v["readings"], "train rows": f"{v['train'][0]}-{v['train'][1]}",
              "calibration rows": f"{v['calibration'][0]}-{v['calibration'][1]}" if v["calibration"] else "none",
              "train windows": v["train_windows"], "calibration windows": v["calibration_windows"]}
             for k, v in list(info["spans"].items())[:200]])
    return r.write(out)
