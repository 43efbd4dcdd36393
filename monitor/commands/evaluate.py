"""``anomon evaluate``: score saved models on a protocol's test split; write metrics.json + report.html.

Examples::

    anomon evaluate runs/vrae-s0 --protocol ecg5000-semi --out reports/vrae-s0
    anomon evaluate runs/vrae-s0 runs/vrae-s1 runs/vrae-s2 --out reports/vrae     # mean ± std
    anomon evaluate --train vrae --protocol ecg5000-semi --seeds 0 1 2 --out reports/vrae-semi

With ``--train DETECTOR`` the models are trained first (one per seed; saved under
``REPORT/models/seed-N``). Without ``--protocol``/``--dataset`` the protocol recorded in each
model's ``train.json`` is used.

``REPORT/metrics.json``: ``declared_component`` is the component named before the run (the
protocol's or the detector's default, chosen on development data; ``monitor.protocols.ecg.
declared_component``) and ``headline`` its metrics; ``components`` maps every score component to
``roc_auc``, ``pr_auc``, ``f1``, ``precision``, ``recall``, ``fpr``, ``threshold`` (means over the
models) and ``protocol``, with ``std`` and per-seed ``values``; every component other than the
declared one is post-hoc (``post_hoc_best_component`` is the best of them on the test split, a
maximum over test results, never a headline); ``runs`` holds each model's own metrics.
``REPORT/report.html``: ROC and PR curves, score densities (normal vs anomalous), a PCA of the
latent space coloured by class, example reconstructions (first model).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import UserError

log = logging.getLogger("anomon.evaluate")

METRIC_KEYS = ("roc_auc", "pr_auc", "f1", "precision", "recall", "fpr", "accuracy", "threshold")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from monitor.commands.train import add_data_args, add_model_args

    p = sub.add_parser("evaluate", help="evaluate saved models on a protocol; write metrics.json and report.html",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="saved model directories (from `anomon train`)")
    add_data_args(p)
    p.add_argument("--out", required=True, help="report directory (metrics.json, report.html)")
    p.add_argument("--train", metavar="DETECTOR", help="train DETECTOR first, one model per --seeds")
    p.add_argument("--seeds", type=int, nargs="+", help="model seeds with --train (default: the protocol's, 0 1 2)")
    add_model_args(p)
    p.add_argument("--no-html", action="store_true", help="write metrics.json only")
    p.set_defaults(func=run)


def aggregate_components(runs: list[dict[str, Any]], protocol: str) -> dict[str, dict[str, Any]]:
    """Per component: mean of every metric, plus ``std`` and ``values`` over runs.

    >>> r = [{"components": {"a": {"roc_auc": 0.9, "f1": 0.8}}}, {"components": {"a": {"roc_auc": 0.8, "f1": 0.6}}}]
    >>> c = aggregate_components(r, "p")["a"]
    >>> round(c["roc_auc"], 3), round(c["std"]["f1"], 3), c["protocol"]
    (0.85, 0.1, 'p')
    """
    from monitor.evaluation import aggregate

    out: dict[str, dict[str, Any]] = {}
    for comp in runs[0]["components"]:
        agg = aggregate([{k: v for k, v in r["components"][comp].items() if k in METRIC_KEYS} for r in runs])
        d: dict[str, Any] = {k: agg[k]["mean"] for k in agg}
        d["protocol"] = protocol
        d["std"] = {k: agg[k]["std"] for k in agg}
        d["values"] = {k: agg[k]["values"] for k in agg}
        d["n_runs"] = len(runs)
        out[comp] = d
    return out


def _model_protocol(path: Path) -> dict[str, Any]:
    f = path / "train.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def run(args: argparse.Namespace) -> int:
    from monitor.commands.train import model_params, train_one
    from monitor.protocols.ecg import BARS, best_component, declared_component, evaluate_detector, load_protocol

    out = Path(args.out)
    models = [Path(m) for m in args.models]
    if not models and not args.train:
        raise UserError("give saved model directories, or --train DETECTOR to train them first")
    if models and args.train:
        raise UserError("give either model directories or --train, not both")
    protocol, dataset, limit = args.protocol, args.dataset, args.limit
    if not protocol and not dataset:
        if not models:
            raise UserError("--train needs --protocol or --dataset")
        info = _model_protocol(models[0])
        if not info:
            raise UserError(f"{models[0]}: no train.json saying its protocol; give --protocol or --dataset")
        protocol, limit = info["protocol"], limit if limit is not None else info.get("limit")
    data = load_protocol(protocol, dataset, args.data_dir, limit)
    log.info("protocol %s: %s", data.protocol, data.sizes())

    dets: list[Any] = []
    runs: list[dict[str, Any]] = []
    scores0 = None
    if args.train:
        seeds = args.seeds if args.seeds is not None else list(data.seeds)
        params = model_params(args)
        for s in seeds:
            det, info = train_one(args.train, data, s, params, out / "models" / f"seed-{s}")
            dets.append(det)
            runs.append({"model": str(out / "models" / f"seed-{s}"), "seed": s, "fit_seconds": info["fit_seconds"],
                         "epochs_run": info["epochs_run"]})
    else:
        from models import DetectorError, load_detector

        for m in models:
            try:
                det = load_detector(m)
            except DetectorError as exc:
                raise UserError(str(exc)) from None
            info = _model_protocol(m)
            if info and info.get("protocol") != data.protocol:
                log.warning("%s was trained for protocol %s, evaluating on %s", m, info.get("protocol"), data.protocol)
            dets.append(det)
            runs.append({"model": str(m), "seed": info.get("seed"), "fit_seconds": info.get("fit_seconds"),
                         "epochs_run": info.get("epochs_run")})
    for det, r in zip(dets, runs):
        t0 = time.perf_counter()
        comps, s, thr = evaluate_detector(det, data)
        r["score_seconds"] = round(time.perf_counter() - t0, 3)
        r["components"] = comps
        if scores0 is None:
            scores0 = s
        log.info("%s: %s", r["model"], ", ".join(f"{c} auc={m['roc_auc']:.4f} f1={m['f1']:.4f}" for c, m in comps.items()))

    components = aggregate_components(runs, data.protocol)
    declared = declared_component(type(dets[0]), data.protocol)
    post_hoc = best_component(components)
    metrics = {
        "protocol": data.protocol,
        "dataset": data.dataset,
        "description": data.description,
        "detector": dets[0].name,
        "params": dets[0].get_params(),
        "sizes": data.sizes(),
        "threshold_rule": f"{100 * (1 - data.fpr):g}th percentile of {data.threshold_on} scores; anomalous when score > threshold",
        "seeds": [r["seed"] for r in runs],
        "declared_component": declared,
        "headline": {"component": declared, **{k: components[declared][k] for k in METRIC_KEYS if k in components[declared]},
                     "std": components[declared]["std"]},
        "components": components,
        "post_hoc_best_component": post_hoc,
        "post_hoc_note": "the other components are post-hoc: picking the best of them on the test split would "
                         "report a maximum over test results",
        "bars": BARS.get(data.protocol),
        "runs": runs,
    }
    from monitor.report import write_metrics

    write_metrics(out, metrics)
    if not args.no_html:
        write_report(out, metrics, dets[0], data, scores0)
    print(summary_table(metrics))
    return 0


def component_label(metrics: dict[str, Any], c: str) -> str:
    """``c (declared)`` for the headline component, ``c (post-hoc)`` for the others.

    >>> component_label({"declared_component": "a"}, "a"), component_label({"declared_component": "a"}, "b")
    ('a (declared)', 'b (post-hoc)')
    """
    return f"{c} ({'declared' if c == metrics.get('declared_component') else 'post-hoc'})"


def summary_table(metrics: dict[str, Any]) -> str:
    """The terminal summary: the declared component first, the others after it, labelled post-hoc."""
    lines = [f"{metrics['detector']} on {metrics['protocol']} ({len(metrics['runs'])} model(s)); headline: "
             f"{metrics['declared_component']} (declared before the run); other components post-hoc",
             f"{'component':40s} {'roc_auc':>17s} {'pr_auc':>17s} {'f1':>17s} {'fpr':>17s}"]
    comps = metrics["components"]
    for c in sorted(comps, key=lambda c: c != metrics["declared_component"]):
        d = comps[c]
        cells = " ".join(f"{d[k]:.4f} ± {d['std'][k]:.4f}" for k in ("roc_auc", "pr_auc", "f1", "fpr"))
        lines.append(f"{component_label(metrics, c):40s} {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML report
def write_report(out: Path, metrics: dict[str, Any], det, data, scores) -> Path:
    from monitor.report import Report, use_agg

    use_agg()
    import matplotlib.pyplot as plt
    from monitor.evaluation import fmt_mean_std
    from sklearn.metrics import precision_recall_curve, roc_curve

    from monitor.protocols.ecg import PEERS

    rep = Report(f"anomon evaluate: {metrics['detector']} on {metrics['protocol']}")
    rep.text(metrics["description"], "note")
    rep.text(f"split sizes: {metrics['sizes']}; threshold: {metrics['threshold_rule']}; seeds: {metrics['seeds']}")
    rows = []
    for c, d in metrics["components"].items():
        row: dict[str, Any] = {"component": component_label(metrics, c)}
        for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "fpr"):
            row[k] = fmt_mean_std({"mean": d[k], "std": d["std"][k]})
        rows.append(row)
    rep.heading("Metrics (mean ± std over models)")
    rep.table(rows)
    if metrics.get("bars"):
        rep.text(f"bars: {metrics['bars']}", "note")
    if metrics["protocol"] in PEERS:
        rep.heading("Peers on this protocol (mean of 3 seeds)", 3)
        rep.table([{"detector": n, "roc_auc": a, "f1": f} for n, a, f in PEERS[metrics["protocol"]]])
    rep.heading("Runs", 3)
    rep.table([{"model": r["model"], "seed": r["seed"], "fit_seconds": r.get("fit_seconds"),
                "epochs_run": r.get("epochs_run"), "score_seconds": r.get("score_seconds")} for r in metrics["runs"]])

    y = data.y_test
    comps = list(scores)
    # ROC and PR curves
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in comps:
        fpr, tpr, _ = roc_curve(y, scores[c])
        p, r, _ = precision_recall_curve(y, scores[c])
        auc = metrics["runs"][0]["components"][c]["roc_auc"]
        ap = metrics["runs"][0]["components"][c]["pr_auc"]
        axes[0].plot(fpr, tpr, label=f"{c} ({auc:.4f})")
        axes[1].plot(r, p, label=f"{c} ({ap:.4f})")
    axes[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (first model)")
    axes[1].set(xlabel="recall", ylabel="precision", title="precision-recall (first model)")
    for ax in axes:
        ax.legend(fontsize=8)
    rep.heading("ROC and PR curves")
    rep.figure(fig)

    # score densities
    n = len(comps)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.5), squeeze=False)
    for ax, c in zip(axes[0], comps):
        s = np.asarray(scores[c])
        lo, hi = np.percentile(s, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
        ax.hist(np.clip(s[y == 0], lo, hi), bins=bins, density=True, alpha=0.55, label="normal")
        ax.hist(np.clip(s[y == 1], lo, hi), bins=bins, density=True, alpha=0.55, label="anomalous")
        ax.axvline(metrics["runs"][0]["components"][c]["threshold"], color="k", ls="--", lw=1, label="threshold")
        ax.set_title(c, fontsize=9)
    axes[0][0].legend(fontsize=8)
    rep.heading("Score densities, test set (first model)")
    rep.figure(fig)

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
            rep.heading("Latent space")
            rep.figure(fig)
        except Exception as exc:  # a report figure must never sink the evaluation
            log.warning("latent projection failed: %s", exc)
    if hasattr(det, "reconstruct"):
        try:
            best = metrics["declared_component"]
            s = np.asarray(scores[best])
            idx_n = np.flatnonzero(y == 0)[:3]
            idx_a = np.flatnonzero(y == 1)
            idx_a = idx_a[np.argsort(s[idx_a])][[0, len(idx_a) // 2, -1]] if len(idx_a) >= 3 else idx_a
            sel = np.concatenate([idx_n, idx_a])
            rec = np.asarray(det.reconstruct(X[sel]))
            fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), squeeze=False)
            for ax, i, r in zip(axes.ravel(), sel, rec):
                ax.plot(X[i, :, 0], label="input")
                ax.plot(r[:, 0], label="reconstruction")
                kind = "anomalous" if y[i] else "normal"
                ax.set_title(f"{kind} (class {data.classes_test[i]}), {best}={s[i]:.3g}", fontsize=8)
            axes[0][0].legend(fontsize=8)
            rep.heading("Example reconstructions (top: normal; bottom: anomalous, lowest/median/highest score)")
            rep.figure(fig)
        except Exception as exc:
            log.warning("reconstruction figure failed: %s", exc)
    rep.heading("metrics.json", 3)
    rep.json({k: v for k, v in metrics.items() if k != "runs"})
    return rep.write(out)
