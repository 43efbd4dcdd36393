"""``anomon bench vrae``: VRAE vs a plain LSTM autoencoder of the same size, on ecg5000-semi.

Measures, for each detector (same hidden size and latent dimension, same training options):

* **training time to the bar**: seconds of training (evaluation time excluded) until the best
  component first reaches ROC AUC >= 0.995 and F1 >= 0.985 on ecg5000-semi (model evaluated
  every ``--eval-every`` epochs, threshold = 95th percentile of the validation scores); ``null``
  when never reached, with the best values seen;
* the full training time and the final metrics;
* **scoring throughput**: windows/s scoring the 2958 test windows in batches of 256 on CPU with
  ``--threads`` torch threads (2 by default), median over ``--repeats``;
* the VRAE / LSTM-AE throughput ratio.

Example::

    anomon bench vrae --json bench-results/vrae.json
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("anomon.bench.vrae")

BAR = {"roc_auc": 0.995, "f1": 0.985}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vrae", help="VRAE vs plain LSTM-AE: training time to the bar, scoring throughput",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.add_argument("--data-dir", help="data directory (default: ANOMON_DATA, else ../shared/data)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--batch-size", type=int, default=256, help="scoring batch size (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="throughput repeats (median reported)")
    p.add_argument("--eval-every", type=int, default=5, help="evaluate every N epochs for time-to-bar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use at most N windows per split (smoke test)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="hyperparameter for both detectors")
    p.add_argument("--epochs", type=int, help="epochs for both detectors")
    p.add_argument("--skip-train", action="store_true", help="throughput only (a few training epochs)")
    p.set_defaults(func=run)


def _shared_params(vrae_params: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Parameters the LSTM-AE shares with the VRAE (size and optimisation)."""
    from models.lstm_ae import LSTMAutoencoder

    names = set(LSTMAutoencoder._param_names())
    return {k: v for k, v in {**vrae_params, **user}.items() if k in names}


def bench_detector(name: str, data, params: dict[str, Any], seed: int, threads: int, batch_size: int,
                   repeats: int, eval_every: int) -> dict[str, Any]:
    import torch

    from monitor.protocols.ecg import evaluate_scores, make_detector
    from models.thresholds import infer_threshold

    det = make_detector(name, seed, {**params, "device": "cpu", "n_threads": threads})
    curve: list[dict[str, Any]] = []
    state = {"eval_s": 0.0, "t0": 0.0, "reached": None}

    def on_epoch(epoch: int, net, Xs_train: np.ndarray) -> None:
        if epoch % eval_every:
            return
        t = time.perf_counter()
        train_s = t - state["t0"] - state["eval_s"]
        was_training = net.training
        net.eval()
        det.module_ = net
        det._after_fit(Xs_train)
        sv, st = det.score(data.X_val), det.score(data.X_test)
        thr = {c: infer_threshold(sv[c], data.fpr) for c in sv}
        m = evaluate_scores(data.y_test, st, thr, data.protocol)
        best = max(m, key=lambda c: (m[c]["roc_auc"] >= BAR["roc_auc"] and m[c]["f1"] >= BAR["f1"], m[c]["roc_auc"]))
        rec = {"epoch": epoch, "train_seconds": round(train_s, 2), "component": best,
               "roc_auc": round(m[best]["roc_auc"], 5), "f1": round(m[best]["f1"], 5)}
        curve.append(rec)
        if state["reached"] is None and rec["roc_auc"] >= BAR["roc_auc"] and rec["f1"] >= BAR["f1"]:
            state["reached"] = rec
        log.info("%s epoch %d: %s", name, epoch, rec)
        if was_training:
            net.train()
        state["eval_s"] += time.perf_counter() - t

    det._epoch_callback = on_epoch
    state["t0"] = time.perf_counter()
    det.fit(data.X_train)
    total = time.perf_counter() - state["t0"]
    del det._epoch_callback
    from monitor.protocols.ecg import evaluate_detector

    final, _, _ = evaluate_detector(det, data)
    X = data.X_test
    rates = []
    with torch.no_grad():
        det.score(X[:batch_size])  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(0, len(X), batch_size):
                det.score(X[i:i + batch_size])
            rates.append(len(X) / (time.perf_counter() - t))
    n_params = int(sum(p.numel() for p in det.module_.parameters()))
    return {
        "detector": name,
        "params": det.get_params(),
        "n_parameters": n_params,
        "epochs_run": det.n_epochs_,
        "fit_seconds_total": round(total, 2),
        "fit_seconds_excluding_eval": round(total - state["eval_s"], 2),
        "time_to_bar_seconds": state["reached"]["train_seconds"] if state["reached"] else None,
        "time_to_bar_epoch": state["reached"]["epoch"] if state["reached"] else None,
        "bar_reached": state["reached"] is not None,
        "best_seen": max(curve, key=lambda r: (r["roc_auc"], r["f1"])) if curve else None,
        "curve": curve,
        "final": {c: {k: round(v[k], 5) for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "fpr")}
                  for c, v in final.items()},
        "throughput_windows_per_s": {"median": round(statistics.median(rates), 1),
                                     "values": [round(r, 1) for r in rates]},
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from monitor.commands.train import parse_params
    from monitor.protocols.ecg import DEFAULT_PARAMS, load_protocol

    torch.set_num_threads(args.threads)
    data = load_protocol("ecg5000-semi", data_dir=args.data_dir, limit=args.limit)
    user = parse_params(args.param)
    if args.epochs is not None:
        user["epochs"] = args.epochs
    if args.skip_train:
        user.setdefault("epochs", 2)
    vrae_params = {**DEFAULT_PARAMS.get("vrae", {}), **user}
    ae_params = _shared_params(DEFAULT_PARAMS.get("vrae", {}), user)
    results = {}
    for name, params in (("vrae", vrae_params), ("lstm-ae", ae_params)):
        log.info("bench %s %s", name, params)
        results[name] = bench_detector(name, data, params, args.seed, args.threads, args.batch_size, args.repeats,
                                       args.eval_every)
    v, a = results["vrae"], results["lstm-ae"]
    out = {
        "benchmark": "vrae-vs-lstm-ae",
        "protocol": data.protocol,
        "bar": BAR,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "n_scored_windows": int(len(data.X_test)),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine()},
        "results": results,
        "throughput_ratio_vrae_over_lstm_ae": round(v["throughput_windows_per_s"]["median"]
                                                    / a["throughput_windows_per_s"]["median"], 4),
        "fit_time_ratio_vrae_over_lstm_ae": round(v["fit_seconds_excluding_eval"] / max(a["fit_seconds_excluding_eval"], 1e-9), 3),
    }
    text = json.dumps(out, indent=2)
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(text)
    summary = {k: out[k] for k in ("throughput_ratio_vrae_over_lstm_ae", "fit_time_ratio_vrae_over_lstm_ae")}
    for name, r in results.items():
        summary[name] = {k: r[k] for k in ("time_to_bar_seconds", "bar_reached", "fit_seconds_excluding_eval",
                                           "throughput_windows_per_s", "best_seen")}
    print(json.dumps(summary, indent=2))
    return 0
