"""Choose each multi-component detector's default (pre-declared) component on development data.

For every ECG semi-supervised protocol (``ecg5000-semi``, ``ecg200-semi``, ``mitdb106-semi``) the
protocol's windows are pooled again and split the way the protocol splits them, but with other
permutations (development splits 1 and 2; the protocol uses 0): train = 60 % of the normals,
validation = the next 10 %, development test = the remaining normals plus a random half of the
anomalous windows (``default_rng(100 + split)``). Model seed 10 (the protocol's are 0, 1, 2). The
protocol's test split and seeds are never used. Each component is ranked by its ROC AUC on the
development test sets, averaged over protocols and splits; the highest mean is the default.
The threshold is the protocol's rule (95th percentile of the validation scores), for the F1 shown.

The budget is reduced (``--epochs``, default 20) so that the choice runs on a laptop in minutes; it
is a ranking of components of one trained model, not a measure of the detector's accuracy.

    OMP_NUM_THREADS=2 .venv/bin/python -m monitor.experiments.default_components vrae lstm-ae \\
        --json docs/results/default_components.json

Examples
--------
>>> import numpy as np
>>> a = np.array([False] * 20 + [True] * 6)
>>> tr, va, te, y = dev_split(a, 1)
>>> len(tr), len(va), int(y.sum()), set(tr) & set(te)
(12, 2, 3, set())
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOLS = ("ecg5000-semi", "ecg200-semi", "mitdb106-semi")
SPLITS = (1, 2)
SEED = 10
FPR = 0.05


def dev_split(anomalous: np.ndarray, split: int):
    """(train, val, test, y_test) indices of development split ``split`` of a pooled set."""
    from monitor.protocols.ecg import semi_split

    a = np.asarray(anomalous, dtype=bool)
    tr, va, te = semi_split(a, seed=split)
    te_n = te[~a[te]]
    anom = np.random.default_rng(100 + split).permutation(np.flatnonzero(a))
    anom = np.sort(anom[:len(anom) // 2])
    return tr, va, np.concatenate([te_n, anom]), np.r_[np.zeros(len(te_n)), np.ones(len(anom))].astype(int)


def _pooled(protocol: str, data_dir: Any) -> tuple[np.ndarray, np.ndarray]:
    from monitor.protocols.ecg import load_protocol

    d = load_protocol(protocol, data_dir=data_dir)
    X = np.concatenate([d.X_train, d.X_val, d.X_test])
    a = np.r_[np.zeros(len(d.X_train) + len(d.X_val)), d.y_test].astype(bool)
    return X, a


def choose(detector: str, epochs: int, data_dir: Any = None, protocols=PROTOCOLS, splits=SPLITS,
           threads: int = 2) -> dict[str, Any]:
    """Per protocol and split, every component's development ROC AUC / F1; the mean; the choice."""
    from models.thresholds import infer_threshold
    from monitor.evaluation import binary_metrics
    from monitor.protocols.ecg import make_detector, prepare

    runs = []
    for p in protocols:
        X, a = _pooled(p, data_dir)
        for sp in splits:
            tr, va, te, y = dev_split(a, sp)
            from models import get_detector

            names = set(get_detector(detector)._param_names())
            params: dict[str, Any] = {k: v for k, v in {"epochs": epochs, "n_threads": threads, "device": "cpu"}.items()
                                      if k in names}
            det = make_detector(detector, SEED, params, None)
            t = time.perf_counter()
            det.fit(prepare(det, X[tr]))
            fit_s = time.perf_counter() - t
            sv, st = det.score(prepare(det, X[va])), det.score(prepare(det, X[te]))
            comps = {}
            for c in st:
                m = binary_metrics(y, np.asarray(st[c]), infer_threshold(np.asarray(sv[c]), FPR))
                comps[c] = {"roc_auc": round(float(m["roc_auc"]), 4), "f1": round(float(m["f1"]), 4)}
            runs.append({"protocol": p, "split": sp, "seed": SEED, "fit_seconds": round(fit_s, 1),
                         "n_train": int(len(tr)), "n_test": int(len(te)), "components": comps})
            print(f"{detector} {p} split {sp}: " + ", ".join(f"{c} {v['roc_auc']:.4f}" for c, v in comps.items()),
                  flush=True)
    names = list(runs[0]["components"])
    mean = {c: round(float(np.mean([r["components"][c]["roc_auc"] for r in runs])), 4) for c in names}
    return {"detector": detector, "epochs": epochs, "seed": SEED, "protocols": list(protocols),
            "splits": list(splits), "rule": "highest mean development ROC AUC over protocols and splits",
            "mean_roc_auc": mean, "chosen": max(names, key=lambda c: mean[c]), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("detectors", nargs="+")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    out = {"format": 1, "command": "python -m monitor.experiments.default_components "
           + " ".join(args.detectors) + f" --epochs {args.epochs}", "detectors": {}}
    for d in args.detectors:
        out["detectors"][d] = choose(d, args.epochs, args.data_dir, threads=args.threads)
        print(f"{d}: chosen {out['detectors'][d]['chosen']} ({out['detectors'][d]['mean_roc_auc']})", flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
