"""Development runs of a one-class detector on MNIST, one digit at a time.

``--split valid`` (the default, for choosing settings) trains on digit d of MNIST *train* only
and scores the *validation* images (d normal, every other digit anomalous): the protocol's test
images are never seen. ``--split test`` is the ``mnist-one-class`` protocol itself (train on d of
train + valid, score the 10,000 test images), for a run whose settings are already fixed.

``--head-grid`` (OC-NN only) fits the autoencoder once per digit and then only the OC-NN head
for each setting of the grid (``{"rbf_bandwidth": [0.3, 0.4], "hidden": [128, 512]}``), so that
head settings can be compared at the cost of one pretraining; the chosen setting is then run in
full (``--split test``) like any other.

Digits run one per process so that a many-core (or GPU) machine can run them side by side;
``--merge`` averages the per-digit JSON files.

Examples
--------
::

    python -m monitor.experiments.oneclass_dev --detector ocnn --params '{"g": "rbf"}' \\
        --digits 0 1 --out runs/dev/ocnn-rbf
    python -m monitor.experiments.oneclass_dev --merge runs/dev/ocnn-rbf
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def digit_data(digit: int, split: str):
    from monitor.batch.oneclass import mnist_one_class_data
    from streams.datasets import load_mnist

    if split == "test":
        return mnist_one_class_data(digit)
    (Xtr, ytr), (Xva, yva), _ = load_mnist(copy=False)
    return Xtr[ytr == digit], Xva, (yva != digit).astype(np.int8)


def run_digit(detector: str, params: dict, digit: int, split: str, seed: int) -> dict:
    from models import get_detector
    from monitor.evaluation import pr_auc, roc_auc

    X, Xe, ye = digit_data(digit, split)
    det = get_detector(detector)(**{**params, "seed": seed})
    t0 = time.perf_counter()
    det.fit(X)
    t1 = time.perf_counter()
    s = det.score(Xe)[det.components[0].name]
    return {"detector": detector, "params": params, "split": split, "seed": seed, "digit": digit,
            "roc_auc": roc_auc(ye, s), "pr_auc": pr_auc(ye, s), "fit_s": t1 - t0,
            "score_s": time.perf_counter() - t1}


def run_head_grid(params: dict, grid: dict, digit: int, split: str, seed: int) -> list[dict]:
    """OC-NN: one pretraining, then one head fit per grid setting (development use only)."""
    import itertools

    from models.ocnn import OCNN
    from monitor.evaluation import pr_auc, roc_auc

    X, Xe, ye = digit_data(digit, split)
    t0 = time.perf_counter()
    base = OCNN(**{**params, "seed": seed}).fit(X)
    pre_s = time.perf_counter() - t0
    rows = []
    for values in itertools.product(*grid.values()):
        hp = {**params, **dict(zip(grid, values))}
        det = OCNN(**{**hp, "seed": seed})
        t1 = time.perf_counter()
        Xt, gen = det._prepare_fit(X)
        det.module_meta_ = det._initial_meta(Xt)
        det.module_ = det._build_module(det.module_meta_).to(Xt.device)
        if hasattr(base.module_, "encoder"):
            det.module_.encoder.load_state_dict(base.module_.encoder.state_dict())
            det.module_.decoder.load_state_dict(base.module_.decoder.state_dict())
            for p in det.module_.decoder.parameters():
                p.requires_grad_(False)
        det.module_.train()
        det._fit_head(det._fit_prep(Xt), gen)
        det.module_.eval()
        s = det.score(Xe)["ocnn"]
        rows.append({"detector": "ocnn", "params": hp, "head": dict(zip(grid, values)), "split": split, "seed": seed,
                     "digit": digit, "roc_auc": roc_auc(ye, s), "pr_auc": pr_auc(ye, s),
                     "fit_s": pre_s + time.perf_counter() - t1})
    return rows


def merge(folder: Path) -> dict:
    rows = sorted((json.loads(p.read_text()) for p in Path(folder).glob("digit-*.json")), key=lambda r: r["digit"])
    aucs = [r["roc_auc"] for r in rows]
    out = {"folder": str(folder), "digits": [r["digit"] for r in rows], "per_digit": [round(a, 4) for a in aucs],
           "mean_roc_auc": float(np.mean(aucs)) if aucs else None,
           "fit_s": float(sum(r["fit_s"] for r in rows))}
    if rows:
        out.update(detector=rows[0]["detector"], params=rows[0]["params"], split=rows[0]["split"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="ocnn")
    ap.add_argument("--params", default="{}", help="JSON hyperparameters")
    ap.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--split", choices=("valid", "test"), default="valid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="folder for digit-D.json")
    ap.add_argument("--merge", nargs="+", metavar="FOLDER", help="print the mean over the digit files of each folder")
    ap.add_argument("--head-grid", metavar="JSON", help="OC-NN: one pretraining, then a head per setting; "
                    "results go to OUT/<setting>/digit-D.json")
    a = ap.parse_args(argv)
    if a.merge:
        for f in a.merge:
            print(json.dumps(merge(Path(f))))
        return 0
    params = json.loads(a.params)
    if a.head_grid:
        if a.detector != "ocnn" or not a.out:
            ap.error("--head-grid needs --detector ocnn and --out")
        for d in a.digits:
            for r in run_head_grid(params, json.loads(a.head_grid), d, a.split, a.seed):
                print(json.dumps(r), flush=True)
                sub = Path(a.out) / "_".join(f"{k}-{v}" for k, v in r["head"].items())
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"digit-{d}.json").write_text(json.dumps(r))
        return 0
    for d in a.digits:
        r = run_digit(a.detector, params, d, a.split, a.seed)
        print(json.dumps(r), flush=True)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            (Path(a.out) / f"digit-{d}.json").write_text(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
