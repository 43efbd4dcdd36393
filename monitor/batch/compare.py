"""Job ``compare``: every registered tabular detector × every ``dagmm-*`` dataset, one table.

Includes the honest baselines (scikit-learn IsolationForest, river HalfSpaceTrees, robust
z-score, kNN, ECOD, LOF, PCA, Mahalanobis) beside the deep detectors (DAGMM, Deep SVDD, OC-NN,
AAE, WAE, dense AE) and rank ensembles. Cells are mean ± std over seeds; run time is fit + score
summed over seeds. Results of other jobs (``mnist-ae``, ``graph-vae-*``, ``aae`` ...) join the table with
``include_runs: [DIR, ...]`` (their ``metrics.json`` is read).

Settings: ``detectors`` ("all" or a list), ``variants`` (extra rows: ``{label: {detector: NAME,
params: {dataset or "*": {...}}}}``; default :data:`DEFAULT_VARIANTS`), ``datasets``, ``seeds``, ``seeds_by_dataset``
(e.g. ``{kddcup: 3}``), ``params`` (``{detector: {dataset or "*": {...}}}`` merged over the
built-in defaults), ``skip`` (``["knn:kddcup", ...]``).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from monitor.batch import Job, register_job

log = logging.getLogger("anomon.batch.compare")

#: Built-in per-detector settings for the tabular protocols ("*" = any dataset).
DEFAULT_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "dagmm": {},  # filled from monitor.batch.dagmm.DEFAULT_PARAMS
    "deep-svdd": {"*": {"hidden": [32, 16], "rep_dim": 8, "epochs": 100, "pretrain_epochs": 50, "batch_size": 64},
                  "kddcup": {"hidden": [64, 32], "epochs": 3, "pretrain_epochs": 2, "batch_size": 1024},
                  "kddcup-rev": {"hidden": [64, 32], "epochs": 10, "pretrain_epochs": 5, "batch_size": 1024}},
    "ocnn": {"*": {"hidden": 32, "ae_hidden": [32], "ae_latent": 8, "epochs": 100, "pretrain_epochs": 50,
                   "batch_size": 64},
             "kddcup": {"ae_hidden": [64], "epochs": 3, "pretrain_epochs": 2, "batch_size": 1024},
             "kddcup-rev": {"ae_hidden": [64], "epochs": 10, "pretrain_epochs": 5, "batch_size": 1024}},
    "aae": {"*": {"hidden": [32, 16], "latent_dim": 4, "epochs": 100, "batch_size": 64},
            "kddcup": {"hidden": [64, 32], "epochs": 3, "batch_size": 1024},
            "kddcup-rev": {"hidden": [64, 32], "epochs": 10, "batch_size": 1024}},
    "wae": {"*": {"hidden": [32, 16], "latent_dim": 4, "epochs": 100, "batch_size": 64},
            "kddcup": {"hidden": [64, 32], "epochs": 3, "batch_size": 1024},
            "kddcup-rev": {"hidden": [64, 32], "epochs": 10, "batch_size": 1024}},
    "dense-ae": {"*": {"hidden": [32, 16], "latent_dim": 4, "epochs": 100, "batch_size": 64},
                 "kddcup": {"hidden": [64, 32], "epochs": 3, "batch_size": 1024},
                 "kddcup-rev": {"hidden": [64, 32], "epochs": 10, "batch_size": 1024}},
    "knn": {"*": {"k": 5}, "kddcup": {"max_train": 5000}, "kddcup-rev": {"max_train": 10000}},
    "lof": {"kddcup": {"max_train": 5000}, "kddcup-rev": {"max_train": 10000}},
    "isolation-forest": {},
    "half-space-trees": {},
    "robust-zscore": {},
    "ensemble": {"*": {"members": [["isolation-forest", {"n_estimators": 500}], ["knn", {"k": 10}]]},
                 "kddcup": {"members": [["isolation-forest", {"n_estimators": 500}],
                                        ["knn", {"k": 10, "max_train": 20000, "deduplicate": True}]]},
                 "kddcup-rev": {"members": [["isolation-forest", {"n_estimators": 500}],
                                            ["knn", {"k": 10, "max_train": 20000, "deduplicate": True}]]}},
}

#: Extra rows: a registered detector under other settings (label -> detector, params by dataset).
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "isolation-forest log": {"detector": "isolation-forest", "params": {"*": {"transform": "log"}}},
    "knn k=1 dedup": {"detector": "knn", "params": {"*": {"k": 1, "deduplicate": True, "max_train": 20000}}},
    # kNN on features mapped through their training ECDF (rank scale), alone and rank-averaged with
    # ECOD; chosen on development seeds 100-149 of arrhythmia (monitor/experiments/tabular_dev.py)
    "knn ecdf": {"detector": "knn", "params": {"*": {"k": 10, "scale": "ecdf"},
                                               "kddcup": {"max_train": 20000, "deduplicate": True},
                                               "kddcup-rev": {"max_train": 20000, "deduplicate": True}}},
    "ensemble knn-ecdf+ecod": {"detector": "ensemble", "params": {
        "*": {"members": [["knn", {"k": 10, "scale": "ecdf"}], ["ecod", {}]]},
        "kddcup": {"members": [["knn", {"k": 10, "scale": "ecdf", "max_train": 20000, "deduplicate": True}],
                               ["ecod", {}]]},
        "kddcup-rev": {"members": [["knn", {"k": 10, "scale": "ecdf", "max_train": 20000, "deduplicate": True}],
                                   ["ecod", {}]]}}},
}


def _params_for(det: str, dataset: str, user: dict[str, Any], variants: dict[str, Any]) -> dict[str, Any]:
    from monitor.batch.dagmm import DEFAULT_PARAMS as DAGMM_PARAMS

    key = dataset if dataset in ("thyroid", "arrhythmia", "kddcup", "kddcup-rev") else None
    if det in variants:
        table = variants[det].get("params") or {}
        det = variants[det]["detector"]
    else:
        table = DEFAULT_PARAMS.get(det, {})
    base = dict(DAGMM_PARAMS[key]) if det == "dagmm" else {}
    u = user.get(det, {})
    return {**base, **table.get("*", {}), **table.get(dataset, {}), **u.get("*", {}), **u.get(dataset, {})}


def _cell(res: dict[str, Any] | None, metric: str) -> str:
    if res is None:
        return "—"
    if "error" in res:
        return "error"
    a = res["aggregate"][metric]
    return f"{a['mean']:.3f} ± {a['std']:.3f}"


def _external_rows(dirs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        p = Path(d) / "metrics.json"
        if not p.is_file():
            rows.append({"job": str(d), "result": f"no metrics.json in {d}"})
            continue
        m = json.loads(p.read_text())
        for key in ("table", "tabular_table", "mnist_table", "ranking", "rows"):
            for r in m.get(key) or []:
                if isinstance(r, dict):
                    rows.append({"job": m.get("job", str(d)), **{k: v for k, v in r.items() if not isinstance(v, (dict, list))}})
        if not any(m.get(k) for k in ("table", "tabular_table", "mnist_table", "ranking", "rows")):
            flat = {k: v for k, v in m.items() if isinstance(v, (int, float, str)) and k not in ("finished", "summary")}
            rows.append({"job": m.get("job", str(d)), **flat})
    return rows


def run_compare(out_dir: Path, cfg: dict[str, Any], progress) -> dict[str, Any]:
    from models import available_detectors
    from models.torch_base import torch_threads
    from monitor.protocols import tabular as tp
    from monitor.report import Report

    registry = {n: c for n, c in available_detectors().items() if c.input_kind == "tabular"}
    variants = DEFAULT_VARIANTS if cfg.get("variants") is None else dict(cfg["variants"] or {})
    dets = list(registry) if cfg["detectors"] in ("all", None) else list(cfg["detectors"])
    dets += [v for v in variants if v not in dets]
    bad_var = [v for v, spec in variants.items() if spec.get("detector") not in registry]
    if bad_var:
        from monitor.errors import ConfigError

        raise ConfigError(f"compare: variant(s) {bad_var} name no registered tabular detector")
    registry = {**registry, **{v: registry[spec["detector"]] for v, spec in variants.items()}}
    unknown = [d for d in dets if d not in registry]
    if unknown:
        from monitor.errors import ConfigError

        raise ConfigError(f"compare: unknown tabular detector(s) {unknown}; known: {sorted(registry)}")
    datasets = [cfg["data"]] if cfg.get("data") else list(cfg["datasets"])
    skip = set(cfg.get("skip") or [])
    results: dict[str, dict[str, Any]] = {d: {} for d in dets}
    t_all = time.perf_counter()
    with torch_threads(cfg.get("threads")):
        for ds in datasets:
            n_seeds = (cfg.get("seeds_by_dataset") or {}).get(ds)
            seeds = cfg["seeds"][: int(n_seeds)] if n_seeds else cfg["seeds"]
            for det in progress(dets, desc=f"compare {Path(str(ds)).stem}", leave=False):
                if f"{det}:{ds}" in skip or det in skip:
                    continue
                params = _params_for(det, ds, cfg.get("params") or {}, variants)
                cls = registry[det]
                accepts_seed = "seed" in cls._param_names()
                try:
                    res = tp.evaluate_detector(
                        lambda s, c=cls, p=params: c(**({**p, "seed": s} if accepts_seed else p)), ds, seeds,
                        progress=None, desc=f"{det} {ds}")
                    res["params"] = params
                except Exception as exc:  # one failing detector must not sink the table
                    log.warning("compare: %s on %s failed: %s", det, ds, exc)
                    res = {"error": f"{type(exc).__name__}: {exc}", "params": params}
                results[det][str(ds)] = res
                if "aggregate" in res:
                    log.info("compare %s %s: F1 %.4f AUC %.4f (%.1f s)", det, ds, res["aggregate"]["f1"]["mean"],
                             res["aggregate"]["roc_auc"]["mean"], res["runtime_s"])

    ds_names = [str(d) for d in datasets]
    best: dict[str, tuple[str, float]] = {}
    for ds in ds_names:
        cand = [(d, results[d][ds]["aggregate"]["f1"]["mean"]) for d in dets
                if ds in results[d] and "aggregate" in results[d][ds]]
        if cand:
            best[ds] = max(cand, key=lambda t: t[1])
    tables: dict[str, list[dict[str, Any]]] = {}
    for metric in ("f1", "roc_auc", "pr_auc", "precision", "recall"):
        rows = []
        for d in dets:
            row: dict[str, Any] = {"detector": d}
            for ds in ds_names:
                row[Path(ds).stem] = _cell(results[d].get(ds), metric)
            rows.append(row)
        tables[metric] = rows
    rt_rows = []
    for d in dets:
        row = {"detector": d}
        for ds in ds_names:
            r = results[d].get(ds)
            row[Path(ds).stem] = "—" if r is None else ("error" if "error" in r else
                                                        f"{r['runtime_s']:.1f} s / {len(r['seeds'])} seeds")
        rt_rows.append(row)
    bars = []
    for ds in ds_names:
        if ds in best:
            det, f1 = best[ds]
            line = f"{ds}: best F1 {f1:.4f} by {det}"
            if ds in tp.BAR_F1:
                line += f"; bar {tp.BAR_F1[ds]:.2f} {'reached' if f1 >= tp.BAR_F1[ds] else 'NOT reached'}"
            if ds in tp.PEER_F1:
                line += f"; peer {tp.PEER_F1[ds][0]} {tp.PEER_F1[ds][1]:.3f}"
            bars.append(line)

    for ds in ds_names:
        rd, ri = results.get("dagmm", {}).get(ds), results.get("isolation-forest", {}).get(ds)
        if rd and ri and "aggregate" in rd and "aggregate" in ri:
            fd, fi = rd["aggregate"]["f1"]["mean"], ri["aggregate"]["f1"]["mean"]
            bars.append(f"{ds}: DAGMM {'beats' if fd > fi else 'does NOT beat'} IsolationForest (F1 {fd:.4f} vs {fi:.4f})")
    rep = Report("anomon batch compare: tabular detectors on the dagmm protocols")
    rep.text("Protocol dagmm-* (../shared/PROTOCOLS.md): min-max scaling, train on floor(50%) of the normals "
             "(default_rng(seed)), test on the rest + all anomalies, threshold at the test anomaly ratio. "
             f"Seeds {cfg['seeds']}" + (f", per dataset {cfg.get('seeds_by_dataset')}" if cfg.get("seeds_by_dataset") else "")
             + ". Cells: mean ± std over seeds. The best row per dataset is picked on these same seeds "
             "(no held-out selection), so treat it as optimistic.")
    for line in bars:
        rep.text(line, "good" if "NOT" not in line else "bad")
    for metric, title in (("f1", "F1"), ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC (average precision)"),
                          ("precision", "Precision"), ("recall", "Recall")):
        rep.heading(title)
        rep.table(tables[metric])
    rep.heading("Run time (fit + score, summed over seeds)")
    rep.table(rt_rows)
    errors = [{"detector": d, "dataset": ds, "error": r["error"]} for d in dets for ds, r in results[d].items()
              if "error" in r]
    if errors:
        rep.heading("Errors")
        rep.table(errors)
    ext = _external_rows(cfg.get("include_runs") or [])
    if ext:
        rep.heading("Other jobs (from include_runs)")
        cols = list(dict.fromkeys(k for r in ext for k in r))
        rep.table(ext, cols)
    rep.heading("Settings per detector and dataset")
    rep.json({d: {ds: r.get("params") for ds, r in results[d].items()} for d in dets})
    rep.write(out_dir)
    summary = "\n".join(
        [" | ".join(["detector", *[Path(ds).stem for ds in ds_names]])]
        + [" | ".join([r["detector"], *[r[Path(ds).stem] for ds in ds_names]]) for r in tables["f1"]]
        + bars)
    slim = {d: {ds: ({k: v for k, v in r.items() if k != "per_seed"} if "aggregate" in r else r)
                for ds, r in results[d].items()} for d in dets}
    return {"datasets": ds_names, "detectors": dets, "results": slim, "tables": tables, "runtime_table": rt_rows,
            "best": {ds: {"detector": b[0], "f1": b[1]} for ds, b in best.items()}, "bars": bars,
            "external": ext, "summary": summary, "total_s": time.perf_counter() - t_all}


register_job(Job(
    name="compare",
    description="every registered tabular detector × dagmm-{thyroid,arrhythmia,kddcup,kddcup-rev}, one HTML table",
    run=run_compare,
    defaults={"detectors": "all", "datasets": ["thyroid", "arrhythmia", "kddcup", "kddcup-rev"],
              "seeds_by_dataset": {}, "params": {}, "variants": None, "skip": [], "include_runs": [], "data": None,
              "save_models": False},
))
