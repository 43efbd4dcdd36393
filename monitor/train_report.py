"""``report.html`` beside a bundle written by ``anomon train``: what was trained on, the score densities
of the training and calibration windows (and of labelled windows) with the threshold, the worst and
a typical calibration window, and the training curve. Built with :class:`monitor.report.Report`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from monitor.report import Report, use_agg
from monitor.report_figures import confusion_counts, confusion_figure, score_densities


def write_train_report(out: str | Path, info: dict[str, Any], bundle: Any, *, Xtr: np.ndarray, Xcal: np.ndarray,
                       s_train: Any, s_cal: Any, split: Any = None, X_eval: np.ndarray | None = None,
                       s_eval: Any = None) -> Path:
    """Write ``out/report.html`` and return its path."""
    use_agg()
    import matplotlib.pyplot as plt

    r = Report(f"anomon train: {info['name']} v{info['version']} ({info['detector']})")
    w = info["window"]
    c = info["counts"]
    comp = bundle.alert_components[0]
    thr = float(bundle.thresholds[comp])
    labels = info.get("labels") or {}
    lm = (labels.get("metrics") or {}).get(comp)
    r.text(f"This folder is a model bundle that `anomon run --model-dir {Path(out).name}` serves unchanged: a "
           f"{info['detector']} detector fitted on windows of {w['length']} readings x {w['channels']} channel(s) "
           f"(stride {w['stride']}), with thresholds calibrated on windows it was not trained on. The daemon "
           f"alerts on the component {comp!r}.")
    r.cards([("series", len(info["spans"]), "trained on"),
             ("training windows", c["train_windows"], "fitted on"),
             ("calibration windows", c["calibration_windows"], "held-back tails, never fitted on"),
             (f"threshold ({comp})", thr, f"target FPR {info['fpr']:g}"),
             ("calibration FPR", info["calibration_fpr"][comp], "share of calibration windows above it"),
             ("labelled ROC AUC", lm.get("roc_auc") if lm else None,
              f"{labels.get('anomalous_windows')} anomalous windows" if lm else "no labels"),
             ("labelled F1", lm.get("f1") if lm else None, "at the threshold" if lm else "no labels"),
             ("fit", f"{info['fit_seconds']:.1f} s", f"{info['epochs_run']} epochs" if info.get("epochs_run") else
              "wall time of fit")])
    r.text(f"Normalisation {info['normalize']}; {c['labelled_windows_excluded']} windows touching labelled anomalies "
           "were left out of both training and calibration.", "note")
    r.link("train.json", "train.json", "Everything on this page, and the span of each series, is in ",
           " (anomon.json describes the bundle the daemon loads).")
    r.heading("Thresholds", id="thresholds")
    r.table([{"component": k + (" (alerts)" if k in bundle.alert_components else ""), "threshold": float(v),
              "calibration FPR": info["calibration_fpr"][k], "training FPR": info["train_fpr"][k]}
             for k, v in bundle.thresholds.items()])
    r.text(f"Target false-positive rate {info['fpr']:g}: each threshold is the (1 - fpr) quantile of the "
           "calibration scores (held-back tails, never trained on). A training FPR far below the calibration "
           "FPR means the model fits its training windows more tightly than new data.", "note")
    if lm:
        r.heading("On the labelled windows", id="labelled")
        r.text(labels["evaluated_on"], "note")
        r.table([dict({"component": k}, **v) for k, v in labels["metrics"].items()])
        y = split.eval_y.astype(bool)
        cc = confusion_counts(y, np.asarray(s_eval[comp]) > thr)
        r.figure(confusion_figure(cc, f"{comp} at threshold {thr:.4g}"),
                 "Confusion matrix of the labelled evaluation windows at the calibrated threshold: rows are the "
                 "labels (a window is anomalous when any of its readings is), columns what the model flags; the "
                 "percentages are shares of each row.")

    r.heading(f"Score densities ({comp})", id="densities")
    groups = [("training windows", s_train[comp]), ("calibration windows", s_cal[comp])]
    if s_eval is not None and split is not None:
        y = split.eval_y.astype(bool)
        groups.append(("labelled anomalous windows", np.asarray(s_eval[comp])[y]))
    r.figure(score_densities(groups, thr, comp, closeup=2),
             "How the scores of each kind of window are spread. Alerts fire right of the dashed threshold; about "
             f"{100 * info['fpr']:g}% of the calibration windows lie there by construction. A good model puts the "
             "labelled anomalies (when there are labels) well right of it. When the anomalies score far higher than "
             "the normal windows, the right panel shows the normal windows and the threshold close up.")

    r.heading("Worst and typical calibration windows", id="windows")
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
    for ax in axes[0]:
        ax.set_xlabel("reading in window")
    r.figure(fig, "The calibration window with the highest score, one with the median score and (with labels) the "
             "labelled anomalous window that scores highest, as the model sees them (after normalisation); one line "
             "per channel. The worst calibration window is a false alarm waiting to happen, or an unlabelled anomaly.")

    r.heading("Training curve", id="training-curve")
    hist = info.get("history") or []
    if hist:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot(np.arange(1, len(hist) + 1), hist)
        epochs = info.get("epochs_run") or (info.get("params") or {}).get("epochs")
        per_epoch = epochs in (None, len(hist))
        ax.set_xlabel("epoch" if per_epoch else "step (as the detector records its loss)")
        ax.set_ylabel("training loss")
        fig.tight_layout()
        r.figure(fig, f"Training loss ({len(hist)} {'epochs' if per_epoch else f'recorded steps over {epochs} epochs'}, "
                 "linear axes): it should fall and level off; "
                 "a curve still falling at the end means more epochs may help.")
    else:
        r.text(f"{info['detector']} records no training loss, so there is no curve to show.", "note")
    r.heading("Series and spans", id="spans")
    r.text("Rows are 0-based, end exclusive: each series' training rows come first, its calibration rows (the "
           "held-back tail) after them, so no calibration window overlaps a training window.", "note")
    r.table([{"series": k, "readings": v["readings"], "train rows": f"{v['train'][0]}-{v['train'][1]}",
              "calibration rows": f"{v['calibration'][0]}-{v['calibration'][1]}" if v["calibration"] else "none",
              "train windows": v["train_windows"], "calibration windows": v["calibration_windows"]}
             for k, v in list(info["spans"].items())[:200]])
    return r.write(out)


def write_protocol_train_report(out: str | Path, info: dict[str, Any], data: Any, det: Any) -> Path:
    """``out/report.html`` of a bundle trained by ``anomon train --protocol``/``--dataset``: the
    scores of the training and threshold windows with the bundle's thresholds, the worst and a typical
    threshold window, and the training curve of ``det`` (the fitted detector). The protocol's test
    split is not looked at."""
    use_agg()
    import matplotlib.pyplot as plt

    from monitor.modelstore import load_bundle
    from monitor.training import _history

    bundle = load_bundle(out)  # what `anomon run` serves
    comp = bundle.alert_components[0]
    thr = float(bundle.thresholds[comp])
    s_tr = bundle.score_windows(data.X_train)
    on = data.threshold_on
    X_thr = data.X_threshold
    s_thr = s_tr if on == "train" else bundle.score_windows(X_thr)
    r = Report(f"anomon train: {bundle.name} v{bundle.version} ({info['detector']} on {data.protocol})")
    r.text(f"This folder is a model bundle that `anomon run --model-dir {Path(out).name}` serves unchanged: a "
           f"{info['detector']} detector (seed {info['seed']}) fitted on the {len(data.X_train)} training windows "
           f"of the protocol {data.protocol} ({data.description}), windows of {bundle.length} readings x "
           f"{bundle.channels} channel(s). Its thresholds are the {100 * (1 - data.fpr):g}th percentiles of the "
           f"scores of the {on} split; the daemon alerts on {comp!r}. The test split is not used here "
           "(`anomon evaluate` reports on it).")
    r.cards([("training windows", len(data.X_train), "fitted on"),
             (f"{on} windows", len(X_thr), "set the thresholds"),
             (f"threshold ({comp})", thr, f"target FPR {data.fpr:g}"),
             (f"{on} FPR", round(float(np.mean(np.asarray(s_thr[comp]) > thr)), 4), "share above the threshold"),
             ("fit", f"{info['fit_seconds']:.1f} s", f"{info['epochs_run']} epochs" if info.get("epochs_run") else
              "wall time of fit")])
    for w in info.get("warnings") or []:
        r.text(f"Warning: {w}", "bad")
    r.link("train.json", "train.json", "The numbers behind this page are in ",
           " (anomon.json describes the bundle the daemon loads).")
    r.heading("Thresholds", id="thresholds")
    r.table([{"component": k + (" (alerts)" if k in bundle.alert_components else ""), "threshold": float(v),
              f"{on} FPR": round(float(np.mean(np.asarray(s_thr[k]) > v)), 4),
              "training FPR": round(float(np.mean(np.asarray(s_tr[k]) > v)), 4)}
             for k, v in bundle.thresholds.items()])
    r.heading(f"Score densities ({comp})", id="densities")
    groups = [("training windows", s_tr[comp])] + ([] if on == "train" else [(f"{on} windows", s_thr[comp])])
    r.figure(score_densities(groups, thr, comp, closeup=len(groups)),
             f"How the scores are spread. Alerts fire right of the dashed threshold; about {100 * data.fpr:g}% of "
             f"the {on} windows lie there by construction."
             + (" The threshold is set on the training windows themselves, so new data will exceed it more often."
                if on == "train" else ""))
    r.heading(f"Worst and typical {on} windows", id="windows")
    sc = np.asarray(s_thr[comp], dtype=float)
    order = np.argsort(sc)
    picks = [("worst", int(order[-1])), ("typical (median)", int(order[len(order) // 2]))]
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8), squeeze=False)
    for ax, (title, i) in zip(axes[0], picks):
        ax.plot(X_thr[i])
        ax.set_title(f"{title}: {sc[i]:.4g}", fontsize=9)
        ax.set_xlabel("reading in window")
    fig.tight_layout()
    r.figure(fig, f"The {on} window with the highest score and one with the median score; one line per channel.")
    r.heading("Training curve", id="training-curve")
    hist = _history(det)
    if hist:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot(np.arange(1, len(hist) + 1), hist)
        ax.set_xlabel("epoch" if info.get("epochs_run") in (None, len(hist)) else "step (as the detector records it)")
        ax.set_ylabel("training loss")
        fig.tight_layout()
        r.figure(fig, "Training loss (linear axes): it should fall and level off.")
    else:
        r.text(f"{info['detector']} records no training loss, so there is no curve to show.", "note")
    return r.write(out)
