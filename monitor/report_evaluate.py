"""``report.html`` of ``anomon evaluate``: the declared component's metrics as summary cards, every
component's metrics (the others labelled post-hoc), peers, the ROC and PR curves, the score densities
of normal and anomalous test windows with the threshold, the confusion matrix at the threshold,
the score of every test window, the latent space and example reconstructions (first model);
``metrics.json`` linked. Built with :class:`monitor.report.Report`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from monitor.report import Report, use_agg
from monitor.report_figures import confusion_counts, confusion_figure, score_densities

log = logging.getLogger("anomon.evaluate")


def component_label(metrics: dict[str, Any], c: str) -> str:
    """``c (declared)`` for the headline component, ``c (post-hoc)`` for the others.

    >>> component_label({"declared_component": "a"}, "a"), component_label({"declared_component": "a"}, "b")
    ('a (declared)', 'b (post-hoc)')
    """
    return f"{c} ({'declared' if c == metrics.get('declared_component') else 'post-hoc'})"


def _pm(d: dict[str, Any], k: str) -> str:
    """``mean ± std`` over the models, or the value alone for one model.

    >>> _pm({"f1": 0.5, "std": {"f1": 0.1}, "n_runs": 2}, "f1"), _pm({"f1": 0.5, "std": {"f1": 0.0}, "n_runs": 1}, "f1")
    ('0.5000 ± 0.1000', '0.5000')
    """
    n = d.get("n_runs", 1)
    return f"{d[k]:.4f}" + (f" ± {d['std'][k]:.4f}" if n and n > 1 else "")


def write_evaluate_report(out: Path, metrics: dict[str, Any], det: Any, data: Any, scores: Any) -> Path:
    """Write ``out/report.html`` (``metrics.json`` is written beside it by the caller)."""
    use_agg()
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    from monitor.protocols.ecg import PEERS

    rep = Report(f"anomon evaluate: {metrics['detector']} on {metrics['protocol']}")
    decl = metrics["declared_component"]
    h = metrics["components"][decl]
    n_models = len(metrics["runs"])
    rep.text(f"{metrics['description']} {n_models} model(s) of {metrics['detector']} (seeds {metrics['seeds']}) "
             f"scored on the protocol's test split. The headline component, {decl}, was declared before the run "
             "(chosen on development data); the other components are shown beside it as post-hoc.")
    sizes = metrics["sizes"]
    test_n = sum(v for k, v in sizes.items() if k.startswith("test")) if isinstance(sizes, dict) else None
    rep.cards([("ROC AUC", _pm(h, "roc_auc"), f"{decl}, mean over {n_models} model(s)"),
               ("PR AUC", _pm(h, "pr_auc"), "average precision"),
               ("F1", _pm(h, "f1"), "at the threshold"),
               ("precision", _pm(h, "precision"), "flagged windows that are anomalous"),
               ("recall", _pm(h, "recall"), "anomalous windows flagged"),
               ("false-positive rate", _pm(h, "fpr"), "normal windows flagged"),
               ("test windows", test_n, ", ".join(f"{k} {v}" for k, v in sizes.items()) if isinstance(sizes, dict)
                else str(sizes))])
    rep.text(f"Threshold: {metrics['threshold_rule']}.", "note")
    for w in metrics.get("warnings") or []:
        rep.text(f"Warning: {w}", "bad")
    rep.link("metrics.json", "metrics.json", "Every figure on this page is in ", ", written by the same run.")

    rep.heading("Metrics" + (f" (mean ± std over {n_models} models)" if n_models > 1 else " (one model)"), id="metrics")
    rows = []
    for c in sorted(metrics["components"], key=lambda c: c != decl):
        d = metrics["components"][c]
        row: dict[str, Any] = {"component": component_label(metrics, c)}
        for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "fpr"):
            row[k] = _pm(d, k)
        rows.append(row)
    rep.table(rows)
    rep.text(metrics.get("post_hoc_note", ""), "note")
    if metrics.get("bars"):
        names = {"roc_auc": "ROC AUC", "f1": "F1", "pr_auc": "PR AUC"}
        rep.text("The protocol's bars: " + ", ".join(f"{names.get(k, k)} ≥ {v:g}" for k, v in metrics["bars"].items())
                 + " (for the declared component).", "note")
    if metrics["protocol"] in PEERS:
        rep.heading("Peers on this protocol (mean of 3 seeds, as measured in issue 3; not rerun by this report)", 3,
                    id="peers")
        rep.table([{"detector": n, "roc_auc": a, "f1": f} for n, a, f in PEERS[metrics["protocol"]]])
    rep.heading("Runs", 3, id="runs")
    rep.table([{"model": r["model"], "seed": r["seed"], "fit_seconds": r.get("fit_seconds"),
                "epochs_run": r.get("epochs_run"), "score_seconds": r.get("score_seconds")} for r in metrics["runs"]])

    y = np.asarray(data.y_test)
    comps = sorted(scores, key=lambda c: c != decl)
    first = metrics["runs"][0]["components"]
    thr = float(first[decl]["threshold"])
    s_decl = np.asarray(scores[decl], dtype=float)

    rep.heading(f"Score densities, test set ({decl})", id="densities")
    rep.figure(score_densities([("normal", s_decl[y == 0]), ("anomalous", s_decl[y == 1])], thr, decl, closeup=1),
               "How the scores of normal and anomalous test windows are spread (first model). Windows right of "
               "the dashed threshold are flagged; the less the two histograms overlap, the better the component "
               "separates them.")
    if len(comps) > 1:
        n = len(comps)
        cols = min(n, 4)
        rws = (n + cols - 1) // cols
        fig, axes = plt.subplots(rws, cols, figsize=(3.0 * cols, 2.5 * rws), squeeze=False)
        for ax, c in zip(axes.ravel(), comps):
            s = np.asarray(scores[c], dtype=float)
            lo, hi = np.percentile(s, [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            ax.hist(np.clip(s[y == 0], lo, hi), bins=bins, density=True, alpha=0.55, label="normal")
            ax.hist(np.clip(s[y == 1], lo, hi), bins=bins, density=True, alpha=0.55, label="anomalous")
            ax.axvline(first[c]["threshold"], color="k", ls="--", lw=1, label="threshold")
            ax.set_title(component_label(metrics, c), fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        rep.figure(fig, "The same for every component (linear axes; scores beyond the 0.5-99.5 percentiles in the "
                        "end bins). Post-hoc: choosing among them on this test split would overstate accuracy.")

    rep.heading(f"Confusion matrix ({decl})", id="confusion")
    cc = confusion_counts(y, s_decl > thr)
    rep.figure(confusion_figure(cc, f"{decl} > {thr:.4g}, test set, first model"),
               "Rows are the labels, columns what the threshold flags; the percentages are shares of each row "
               "(the top right is the false-positive rate, the bottom right the recall).")

    rep.heading(f"Score of every test window ({decl})", id="scores")
    fig, ax = plt.subplots(figsize=(12, 3.2))
    idx = np.arange(len(s_decl))
    ax.scatter(idx[y == 0], s_decl[y == 0], s=4, alpha=0.6, label="normal")
    ax.scatter(idx[y == 1], s_decl[y == 1], s=4, alpha=0.6, c="tab:orange", label="anomalous (labelled)")
    ax.axhline(thr, color="k", ls="--", lw=1, label="threshold")
    ax.set(xlabel="test window (in the protocol's order)", ylabel=f"{decl} score")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    rep.figure(fig, "Each dot is one test window (linear axes): orange ones are labelled anomalous; everything "
                    "above the dashed line is flagged.")

    rep.heading("ROC and PR curves", id="curves")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in comps:
        fpr, tpr, _ = roc_curve(y, scores[c])
        p, r, _ = precision_recall_curve(y, scores[c])
        lw = 2.2 if c == decl else 0.9
        axes[0].plot(fpr, tpr, lw=lw, label=f"{component_label(metrics, c)} ({first[c]['roc_auc']:.4f})")
        axes[1].plot(r, p, lw=lw, label=f"{component_label(metrics, c)} ({first[c]['pr_auc']:.4f})")
    axes[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (first model)")
    axes[1].set(xlabel="recall", ylabel="precision", title="precision-recall (first model)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    rep.figure(fig, "Every threshold at once: the ROC curve trades false positives for detections, the "
                    "precision-recall curve shows how clean the alerts are at each recall. The declared component "
                    "is drawn thick; the numbers in the legend are the areas.")

    X = data.X_test
    Xp = X.reshape(len(X), -1) if det.input_kind == "tabular" else X
    if hasattr(det, "transform"):
        try:
            Z = np.asarray(det.transform(Xp))
            from sklearn.decomposition import PCA

            P = PCA(n_components=2).fit_transform(Z) if Z.shape[1] > 2 else Z
            fig, ax = plt.subplots(figsize=(6.5, 5))
            classes = np.asarray(data.classes_test)
            for k in sorted(set(classes.tolist()), key=str):
                m = classes == k
                ax.scatter(P[m, 0], P[m, 1], s=5, alpha=0.6, label=f"class {k} ({'anomalous' if y[m][0] else 'normal'})")
            ax.set(xlabel="PC 1", ylabel="PC 2", title="latent means, PCA (test set)")
            ax.legend(fontsize=8, markerscale=3)
            rep.heading("Latent space", id="latent")
            rep.figure(fig, "The model's latent means of the test windows, projected on their first two principal "
                            "components and coloured by class: anomalous classes apart from the normal one are what "
                            "the latent components score.")
        except Exception as exc:  # a report figure must never sink the evaluation
            log.warning("latent projection failed: %s", exc)
    if hasattr(det, "reconstruct"):
        try:
            idx_n = np.flatnonzero(y == 0)[:3]
            idx_a = np.flatnonzero(y == 1)
            idx_a = idx_a[np.argsort(s_decl[idx_a])][[0, len(idx_a) // 2, -1]] if len(idx_a) >= 3 else idx_a
            sel = np.concatenate([idx_n, idx_a])
            rec = np.asarray(det.reconstruct(X[sel]))
            fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), squeeze=False)
            for ax, i, r in zip(axes.ravel(), sel, rec):
                ax.plot(X[i, :, 0], label="input")
                ax.plot(r[:, 0], label="reconstruction")
                kind = "anomalous" if y[i] else "normal"
                ax.set_title(f"{kind} (class {data.classes_test[i]}), {decl}={s_decl[i]:.3g}", fontsize=8)
            axes[0][0].legend(fontsize=8)
            fig.tight_layout()
            rep.heading("Example reconstructions (top: normal; bottom: anomalous, lowest/median/highest score)",
                        id="reconstructions")
            rep.figure(fig, "What the model rebuilds from each window: a normal beat should be rebuilt closely, an "
                            "anomalous one less so.")
        except Exception as exc:
            log.warning("reconstruction figure failed: %s", exc)
    return rep.write(out)
