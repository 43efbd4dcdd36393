"""Job ``compare``: every registered tabular detector × every ``dagmm-*`` dataset, one table.

Includes the honest baselines (scikit-learn IsolationForest, river HalfSpaceTrees, robust
z-score, kNN, ECOD, LOF, PCA, Mahalanobis) beside the deep detectors (DAGMM, Deep SVDD, OC-NN,
AAE, WAE, dense AE) and rank ensembles. Cells are mean ± std over seeds; run time is fit + score
summed over seeds. Results of other jobs (``mnist-ae``, ``graph-vae-*``, ``aae`` ...) join the table with
``include_runs: [DIR, ...]`` (their ``metrics.json`` is read).

Settings: ``detectors`` ("all" or a list), ``variants`` (extra rows: ``{label: {detector: NAME,
params: {dataset or "*": {...}}}}``; default :data:`DEFAULT_VARIANTS`), ``datasets``, ``seeds``, ``seeds_by_dataset``
(e.g. ``{kddcup: 3}``), ``params`` (``{detector: {dataset or "*": {...}}}`` merged over the
built-in defaults), ``skip`` (``["knn:kddcup", ...]``), ``input_kind`` (``rows``, the default, or
``images``: only detectors that read that kind run; the others are listed as skipped with the
reason).

``metrics.json`` and ``report.html`` are rewritten after every seed and every detector
(``"complete": false`` until the end); ``anomon batch compare --resume`` continues a stopped
run in the same ``--out`` and reuses the seeds it finished. ``threads`` goes to the torch
detectors and, as ``n_threads``, to those that take it (knn, lof, isolation-forest, ensemble);
the report notes the ones that ignore it. ``time_budget`` (``--time-budget 10m``) scales epochs and
``max_train`` to the budget and lists what it chose (:mod:`monitor.batch.budget`).
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


def _assemble(per_seed: list[dict[str, Any]], ds: str, params: dict[str, Any],
              budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cell from its per-seed metrics (as :func:`monitor.protocols.tabular.evaluate_detector`);
    ``budget``: what the time budget chose for it."""
    from monitor.evaluation import aggregate
    from monitor.protocols import tabular as tp

    agg = aggregate([{k: v for k, v in m.items() if k not in ("seed", "tp", "fp", "fn", "tn")} for m in per_seed])
    out = {"protocol": tp.protocol_name(ds), "dataset": ds, "seeds": [int(m["seed"]) for m in per_seed],
           "component": "default", "aggregate": agg, "per_seed": per_seed,
           "runtime_s": float(sum(m["fit_s"] + m["score_s"] for m in per_seed)), "params": params}
    if budget is not None:
        out["budget"] = budget
    return out


def _budget_params(budget, det, ds, cls, params, cfg, variants, seeds, old) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, choice) of one cell under the time budget; a resumed cell keeps its earlier choice."""
    from monitor.protocols import tabular as tp

    if old.get("budget") and old.get("params") is not None:
        budget.left_runs -= len(seeds)
        budget.choices.setdefault(det, {})[str(ds)] = old["budget"]
        return dict(old["params"]), old["budget"]
    base = variants[det]["detector"] if det in variants else det
    u = (cfg.get("params") or {}).get(base, {})
    user = {**u.get("*", {}), **u.get(str(ds), {})}
    seed = int(seeds[0])
    accepts_seed = "seed" in cls._param_names()

    def pilot(p: dict[str, Any]) -> tuple[float, int]:
        X, y = tp.load_protocol_data(ds, seed)
        tr, te = tp.dagmm_split(y, seed)
        d = cls(**({**p, "seed": seed} if accepts_seed else p))
        t0 = time.perf_counter()
        d.fit(X[tr])
        d.score(X[te])
        return time.perf_counter() - t0, int(len(tr))

    params = budget.plan(det, str(ds), cls, params, user, len(seeds), pilot)
    log.info(budget.note(det, str(ds)))
    return params, budget.choices[det][str(ds)]


def _kind_filter(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The registered detectors that read the data's kind, and the others with the reason they are skipped."""
    from models import available_detectors
    from models.base import data_kind_of

    kind = cfg.get("input_kind") or "rows"
    fit, skipped = {}, []
    for n, c in available_detectors().items():
        k = data_kind_of(c)
        if c.input_kind == "tabular" and k == kind:
            fit[n] = c
        else:
            hint = " (set input_kind: images when the rows are flattened images)" if k == "images" else ""
            skipped.append({"detector": n, "reason": f"reads {k}; this data is {kind}{hint}"})
    return fit, skipped


def run_compare(out_dir: Path, cfg: dict[str, Any], progress) -> dict[str, Any]:
    from models.torch_base import torch_threads
    from monitor.errors import ConfigError
    from monitor.protocols import tabular as tp

    registry, skipped = _kind_filter(cfg)
    skipped_names = {s["detector"] for s in skipped}
    variants = DEFAULT_VARIANTS if cfg.get("variants") is None else dict(cfg["variants"] or {})
    explicit = cfg["detectors"] not in ("all", None)
    dets = list(registry) if not explicit else [d for d in cfg["detectors"] if d not in skipped_names]
    variants = {v: spec for v, spec in variants.items() if spec.get("detector") not in skipped_names}
    dets += [v for v in variants if v not in dets]
    bad_var = [v for v, spec in variants.items() if spec.get("detector") not in registry]
    if bad_var:
        raise ConfigError(f"compare: variant(s) {bad_var} name no registered tabular detector")
    registry = {**registry, **{v: registry[spec["detector"]] for v, spec in variants.items()}}
    unknown = [d for d in dets if d not in registry]
    if unknown:
        raise ConfigError(f"compare: unknown tabular detector(s) {unknown}; known: {sorted(registry)}")
    if not explicit:  # list only what a user could have expected to run
        skipped = [s for s in skipped if s["reason"].startswith("reads images")] + \
                  [s for s in skipped if not s["reason"].startswith("reads images")]
    else:
        skipped = [s for s in skipped if s["detector"] in cfg["detectors"]]
    for s in skipped:
        log.info("compare: skipping %s: %s", s["detector"], s["reason"])
    datasets = [cfg["data"]] if cfg.get("data") else list(cfg["datasets"])
    skip = set(cfg.get("skip") or [])
    threads = cfg.get("threads")
    threaded = sorted(d for d in dets if "n_threads" in registry[d]._param_names())
    previous = (cfg.get("_previous") or {}).get("results") or {}
    checkpoint = cfg.get("_checkpoint") or (lambda partial: None)
    results: dict[str, dict[str, Any]] = {d: {} for d in dets}
    t_all = time.perf_counter()
    plan = [(ds, det) for ds in datasets for det in dets if f"{det}:{ds}" not in skip and det not in skip]

    def seeds_for(ds):
        n_seeds = (cfg.get("seeds_by_dataset") or {}).get(ds)
        return cfg["seeds"][: int(n_seeds)] if n_seeds else cfg["seeds"]

    budget = None
    if cfg.get("time_budget"):
        from monitor.batch.budget import TimeBudget, parse_duration, scalable

        budget = TimeBudget(parse_duration(cfg["time_budget"]), sum(len(seeds_for(ds)) for ds, _ in plan))
        # what cannot be scaled runs first, so the scaled cells share what it leaves
        plan.sort(key=lambda c: scalable(registry[c[1]]))

    def outputs(final: bool) -> dict[str, Any]:
        done = sum(1 for ds, det in plan if str(ds) in results[det])
        return _outputs(out_dir, cfg, datasets, dets, results, skipped, threaded, t_all,
                        None if final else f"{done} of {len(plan)} detector × dataset cells",
                        budget.report() if budget else None)

    with torch_threads(threads):
        for ds, det in plan:
            seeds = seeds_for(ds)
            params = _params_for(det, ds, cfg.get("params") or {}, variants)
            cls = registry[det]
            if threads and "n_threads" in cls._param_names():
                params.setdefault("n_threads", int(threads))
            accepts_seed = "seed" in cls._param_names()
            old = previous.get(det, {}).get(str(ds)) or {}
            choice = None
            if budget is not None:
                try:
                    params, choice = _budget_params(budget, det, ds, cls, params, cfg, variants, seeds, old)
                except Exception as exc:  # a failing pilot fails its cell only
                    log.warning("compare: %s on %s failed in the time-budget pilot: %s", det, ds, exc)
                    results[det][str(ds)] = {"error": f"{type(exc).__name__}: {exc}", "params": params}
                    checkpoint(outputs(final=False))
                    continue
            same = json.dumps(old.get("params"), sort_keys=True, default=str) == json.dumps(params, sort_keys=True, default=str)
            done = {int(m["seed"]): m for m in old.get("per_seed") or []} if same else {}
            per_seed: list[dict[str, Any]] = []
            bar = progress(seeds, desc=f"{det} {Path(str(ds)).stem}", leave=False)
            for s in bar:
                if int(s) in done:
                    per_seed.append(done[int(s)])
                    continue
                try:
                    r = tp.evaluate_detector(
                        lambda sd, c=cls, p=params: c(**({**p, "seed": sd} if accepts_seed else p)), ds, [s])
                except Exception as exc:  # one failing detector must not sink the table
                    log.warning("compare: %s on %s failed: %s", det, ds, exc)
                    results[det][str(ds)] = {"error": f"{type(exc).__name__}: {exc}", "params": params}
                    break
                per_seed.append(r["per_seed"][0])
                results[det][str(ds)] = _assemble(per_seed, str(ds), params, choice)
                if len(per_seed) < len(seeds):
                    results[det][str(ds)]["incomplete"] = True
                checkpoint(outputs(final=False))  # after every seed
            if hasattr(bar, "close"):
                bar.close()
            res = results[det].get(str(ds))
            if per_seed and (res is None or "error" not in res):
                res = results[det][str(ds)] = _assemble(per_seed, str(ds), params, choice)
            if res and "aggregate" in res:
                log.info("compare %s %s: F1 %.4f AUC %.4f (%.1f s)", det, ds, res["aggregate"]["f1"]["mean"],
                         res["aggregate"]["roc_auc"]["mean"], res["runtime_s"])
            checkpoint(outputs(final=False))  # after every detector
    return outputs(final=True)


def _outputs(out_dir, cfg, datasets, dets, results, skipped, threaded, t_all, progress_note,
             budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report (written now) and the metrics dict of the cells done so far."""
    from monitor.protocols import tabular as tp
    from monitor.report import Report

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
    threads = cfg.get("threads")
    thread_note = (f"threads {threads}: torch detectors and {', '.join(threaded) or 'none'} (n_threads) use them; "
                   "the others run on one thread and ignore it") if threads else ""
    rep = Report("anomon batch compare: tabular detectors on the dagmm protocols"
                 + (f" (in progress: {progress_note})" if progress_note else ""))
    rep.text("Protocol dagmm-* (../shared/PROTOCOLS.md): min-max scaling, train on floor(50%) of the normals "
             "(default_rng(seed)), test on the rest + all anomalies, threshold at the test anomaly ratio. "
             f"Seeds {cfg['seeds']}" + (f", per dataset {cfg.get('seeds_by_dataset')}" if cfg.get("seeds_by_dataset") else "")
             + ". Cells: mean ± std over seeds. The best row per dataset is picked on these same seeds "
             "(no held-out selection), so treat it as optimistic.")
    if progress_note:
        rep.text(f"Run in progress or stopped: {progress_note} done; `--resume` continues it.", "bad")
    if thread_note:
        rep.text(thread_note)
    budget_rows = _budget_rows(budget)
    budget_note = (f"time budget {budget['seconds']:g} s, {budget['spent_s']:g} s spent: epochs and training "
                   "samples scaled to the data (table below)") if budget else ""
    if budget_note:
        rep.text(budget_note)
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
    if budget_rows:
        rep.heading("Time budget: what was chosen")
        rep.text("Each cell's share is what was left divided over the seed runs still to run; a pilot (one epoch, "
                 "or a small max_train) timed on the data gives the largest setting that fits, never above the "
                 "default. The pilots count against the budget.", "note")
        rep.table(budget_rows)
    if skipped:
        rep.heading("Skipped detectors (they do not read this kind of data)")
        rep.table(skipped)
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
        + bars + [f"skipped {s['detector']}: {s['reason']}" for s in skipped] + ([thread_note] if thread_note else [])
        + ([budget_note] + [f"  {r['detector']} on {r['dataset']}: {r['chosen']} ({r['reason']})" for r in budget_rows
                            if r["chosen"] != "—"] if budget_note else []))
    return {"datasets": ds_names, "detectors": dets, "results": results, "tables": tables, "runtime_table": rt_rows,
            "best": {ds: {"detector": b[0], "f1": b[1]} for ds, b in best.items()}, "bars": bars,
            "skipped": skipped, "threads_note": thread_note or None, "time_budget": budget,
            "external": ext, "summary": summary, "total_s": time.perf_counter() - t_all}


def _budget_rows(budget: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The report's rows of the time budget's choices."""
    rows = []
    for det, by_ds in ((budget or {}).get("choices") or {}).items():
        for ds, c in by_ds.items():
            knobs = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in c.items() if isinstance(v, list))
            rows.append({"detector": det, "dataset": Path(str(ds)).stem, "chosen": knobs or "—",
                         "share per seed (s)": c.get("share_s"), "pilot": f"{c['pilot']}: {c['pilot_s']:.2f} s"
                         if "pilot" in c else "—", "reason": c.get("reason", "")})
    return rows


register_job(Job(
    name="compare",
    description="every registered tabular detector × dagmm-{thyroid,arrhythmia,kddcup,kddcup-rev}, one HTML table",
    run=run_compare,
    defaults={"detectors": "all", "datasets": ["thyroid", "arrhythmia", "kddcup", "kddcup-rev"],
              "seeds_by_dataset": {}, "params": {}, "variants": None, "skip": [], "include_runs": [], "data": None,
              "save_models": False, "input_kind": "rows", "time_budget": None},
    resumable=True,
))
