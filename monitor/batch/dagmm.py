"""Jobs ``dagmm-{thyroid,arrhythmia,kddcup,kddcup-rev}`` and ``dagmm`` (your own data).

Each runs DAGMM (:mod:`models.dagmm`) on the ``dagmm-*`` protocol of
:mod:`monitor.protocols.tabular`, next to scikit-learn's IsolationForest on the very same
splits, and says plainly whether DAGMM beats it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.batch import Job, register_job

#: CPU-feasible defaults per dataset (paper architecture; fewer epochs than the paper, with a
#: larger learning rate — see the report and README for the measured effect).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "thyroid": {"hidden": [12, 4], "latent_dim": 1, "est_hidden": [10], "n_gmm": 2,
                "epochs": 1000, "lr": 1e-3, "batch_size": 256},
    "arrhythmia": {"hidden": [10], "latent_dim": 2, "est_hidden": [10], "n_gmm": 2,
                   "epochs": 2000, "lr": 1e-3, "batch_size": 1024},
    # KDDCUP: the paper's lr 1e-4 and batch 1024, but 2 epochs, chosen on development splits (seeds
    # 100-119, never the reported 0-19; monitor/experiments/dagmm_dev.py): F1 there 0.956 at 2 epochs,
    # 0.949 at 3, 0.918 at 4, 0.930 at 8, 0.909 at 16; the paper's 200 epochs gave 0.909 +- 0.029 on
    # the protocol's seeds 0-11 (the energy model drifts as the autoencoder keeps training).
    "kddcup": {"hidden": [60, 30, 10], "latent_dim": 1, "est_hidden": [10], "n_gmm": 4,
               "epochs": 2, "lr": 1e-4, "batch_size": 1024},
    "kddcup-rev": {"hidden": [60, 30, 10], "latent_dim": 2, "est_hidden": [10], "n_gmm": 2,
                   "epochs": 50, "lr": 1e-3, "batch_size": 1024},
    None: {"hidden": [32, 16], "latent_dim": 2, "est_hidden": [10], "n_gmm": 2,
           "epochs": 200, "lr": 1e-3, "batch_size": 1024},
}


def run_dagmm(out_dir: Path, cfg: dict[str, Any], progress) -> dict[str, Any]:
    from models import get_detector
    from models.torch_base import torch_threads
    from monitor.evaluation import fmt_mean_std
    from monitor.protocols import tabular as tp
    from monitor.errors import UserError
    from monitor.report import Report

    dataset = cfg.get("data") or cfg["dataset"]
    if not dataset:
        raise UserError("this job runs on your data: give --data FILE (.npz/.mat with X and y, or .csv)")
    key = dataset if dataset in tp.DATASETS else None
    params = {**DEFAULT_PARAMS[key], **(cfg.get("detector_params") or {})}
    DAGMM = get_detector("dagmm")
    save = out_dir / "models" if cfg.get("save_models") else None
    first: list[Any] = []

    def make(seed: int):
        det = DAGMM(**{**params, "seed": seed})
        if not first:
            first.append(det)
        return det
    results: dict[str, Any] = {}
    with torch_threads(cfg.get("threads")):
        results["dagmm"] = tp.evaluate_detector(
            make, dataset, cfg["seeds"], progress,
            save_dir=save / "dagmm" if save else None, desc=f"dagmm {dataset}")
        if cfg.get("baseline", True):
            IF = get_detector("isolation-forest")
            results["isolation-forest"] = tp.evaluate_detector(
                lambda s: IF(seed=s), dataset, cfg["seeds"], progress,
                save_dir=save / "isolation-forest" if save else None, desc=f"iforest {dataset}")

    d_f1 = results["dagmm"]["aggregate"]["f1"]["mean"]
    verdict = []
    if key in tp.PAPER_DAGMM_F1:
        bar = tp.PAPER_DAGMM_F1[key]
        verdict.append(f"DAGMM F1 {tp.fmt_bar(d_f1, bar)} against the paper's {bar:.4f}.")
    if "isolation-forest" in results:
        i_f1 = results["isolation-forest"]["aggregate"]["f1"]["mean"]
        if d_f1 > i_f1:
            verdict.append(f"DAGMM beats IsolationForest here (F1 {d_f1:.4f} vs {i_f1:.4f}).")
        else:
            verdict.append(f"DAGMM does NOT beat IsolationForest here (F1 {d_f1:.4f} vs {i_f1:.4f}).")
    rows = [tp.summary_row(n, r) for n, r in results.items()]

    rep = Report(f"DAGMM on {tp.protocol_name(dataset)}")
    rep.text(f"Protocol {tp.protocol_name(dataset)} (../shared/PROTOCOLS.md): min-max scaling over all rows, "
             f"train on floor(50%) of the normals shuffled by default_rng(seed), test on the rest + all anomalies, "
             f"threshold at the test anomaly ratio (score >= threshold). Seeds: {cfg['seeds']}.")
    rep.heading("Results (mean ± std over seeds)")
    rep.table(rows)
    for v in verdict:
        rep.text(v, "good" if ("beats" in v and "NOT" not in v) or "(reached)" in v else "bad")
    rep.heading("DAGMM settings")
    rep.json(params)
    hist = getattr(first[0], "loss_history_", None) if first else None
    if hist is not None and len(hist) > 1:
        from monitor.report import use_agg

        use_agg()
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(hist)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title(f"DAGMM loss, seed {cfg['seeds'][0]}")
        rep.figure(fig, "training loss (reconstruction + λ1·energy + λ2·penalty)")
    rep.heading("Per seed")
    rep.table([{"detector": n, **{k: m[k] for k in ("seed", "precision", "recall", "f1", "roc_auc", "pr_auc",
                                                     "fit_s", "score_s")}}
               for n, r in results.items() for m in r["per_seed"]])
    rep.write(out_dir)
    summary = "\n".join(
        [f"{r['detector']:18s} {r['dataset']}: F1 {r['f1']}  ROC AUC {r['roc_auc']}  ({r['runtime_s']} s)" for r in rows]
        + verdict)
    return {"protocol": tp.protocol_name(dataset), "dagmm_params": params, "results": results,
            "table": rows, "verdict": verdict, "summary": summary,
            "f1": {n: fmt_mean_std(r["aggregate"]["f1"]) for n, r in results.items()}}


for _ds in ("thyroid", "arrhythmia", "kddcup", "kddcup-rev"):
    register_job(Job(
        name=f"dagmm-{_ds}",
        description=f"DAGMM vs IsolationForest on the dagmm-{_ds} protocol (20 seeds with --seeds 20)",
        run=run_dagmm,
        defaults={"dataset": _ds, "detector_params": {}, "baseline": True},
    ))

register_job(Job(
    name="dagmm",
    description="DAGMM vs IsolationForest on your data (--data file.npz|.mat|.csv, label 1 = anomaly), dagmm protocol",
    run=run_dagmm,
    defaults={"dataset": None, "data": None, "detector_params": {}, "baseline": True},
))
