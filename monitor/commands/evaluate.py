"""``anomon evaluate``: score saved models on a protocol's test split; write metrics.json + report.html.

Examples::

    anomon evaluate runs/vrae-s0 --protocol ecg5000-semi --out reports/vrae-s0
    anomon evaluate runs/vrae-s0 runs/vrae-s1 runs/vrae-s2 --out reports/vrae     # mean ± std
    anomon evaluate --train vrae --protocol ecg5000-semi --seeds 0 1 2 --out reports/vrae-semi
    anomon evaluate runs/vrae-mitdb106 --wfdb ~/physionet/incartdb --record I01 --out reports/i01

ECG records (``--dataset mitdb-NNN``, ``--wfdb DIR``): beat windows are cut at the model's rate (its
``train.json``; 360 Hz for MIT-BIH); a record sampled at another rate is resampled to it first, with a
warning in the log, in ``metrics.json`` (``warnings``, ``sampling``) and in the report.

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
``REPORT/report.html`` (:mod:`monitor.report_evaluate`): summary cards of the declared component,
score densities (normal vs anomalous) with the threshold, the confusion matrix, every test window's
score, ROC and PR curves, a PCA of the latent space coloured by class, example reconstructions
(first model); metrics.json linked.
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
from monitor.report_evaluate import component_label  # noqa: F401 - the terminal summary labels components alike

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


def _models_rate(models: list[Path]) -> float | None:
    """The rate (Hz) the models' beat windows were cut at (``train.json`` ``fs``); None when none says."""
    rates = sorted({float(i["fs"]) for i in map(_model_protocol, models) if i.get("fs")})
    if len(rates) > 1:
        raise UserError(f"the models were trained at different rates ({', '.join(f'{r:g}' for r in rates)} Hz); "
                        "evaluate them apart, or give --fs HZ")
    return rates[0] if rates else None


def run(args: argparse.Namespace) -> int:
    from monitor.commands.train import load_data, model_params, train_one
    from monitor.protocols.ecg import (BARS, best_component, dataset_protocol, declared_component, evaluate_detector,
                                       is_record_protocol)

    out = Path(args.out)
    models = [Path(m) for m in args.models]
    if not models and not args.train:
        raise UserError("give saved model directories, or --train DETECTOR to train them first")
    if models and args.train:
        raise UserError("give either model directories or --train, not both")
    protocol, dataset, limit = args.protocol, args.dataset, args.limit
    wfdb, record = getattr(args, "wfdb", None), None
    if not protocol and not dataset and not (wfdb and (getattr(args, "record", None) or not models)):
        if not models:
            raise UserError("--train needs --protocol, --dataset or --wfdb DIR")
        info = _model_protocol(models[0])
        if not info:
            raise UserError(f"{models[0]}: no train.json saying its protocol; give --protocol or --dataset")
        protocol, limit = info["protocol"], limit if limit is not None else info.get("limit")
        if wfdb is None and info.get("wfdb"):
            wfdb, record = info["wfdb"], info.get("record")  # the model's own record, by its real name
        if wfdb is not None and not is_record_protocol(protocol):
            raise UserError(f"--wfdb: {models[0]} was trained on {protocol}, not on ECG records; give --record NAME "
                            "or --dataset mitdb-NNN")
    fs = getattr(args, "fs", None)
    if fs is None and (wfdb or is_record_protocol(protocol or dataset_protocol(dataset or ""))):
        fs = _models_rate(models)  # ECG records are cut at the models' rate
    data = load_data(args, protocol, dataset, limit, fs=fs, wfdb=wfdb, record=record)
    log.info("protocol %s: %s", data.protocol, data.sizes())

    dets: list[Any] = []
    runs: list[dict[str, Any]] = []
    scores0 = None
    if args.train:
        seeds = args.seeds if args.seeds is not None else list(data.seeds)
        params = model_params(args, args.train)
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
        "warnings": list(data.info.get("warnings", [])),
    }
    if "fs" in data.info:  # ECG records: the rate the windows were cut at, and the record's own
        metrics["sampling"] = {k: data.info[k] for k in ("fs", "record_fs", "window_s", "window", "decimate", "resampled")
                               if k in data.info}
    from monitor.report import write_metrics

    write_metrics(out, metrics)
    if not args.no_html:
        from monitor.report_evaluate import write_evaluate_report

        write_evaluate_report(out, metrics, dets[0], data, scores0)
    print(summary_table(metrics))
    return 0


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
