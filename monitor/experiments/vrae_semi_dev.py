"""ecg5000-semi *development* experiments for the VRAE (issue 3): choose the recipe without the
protocol's test labels.

The development split (never the protocol's): pool ECG5000 TRAIN + TEST as the protocol does, but
split the normal beats with ``default_rng(SPLIT)`` for ``SPLIT`` in {1, 2} (the protocol uses 0) into
the same 60 / 10 / 30 % train / validation / test; the development test set holds the remaining
normals plus a random *half* of the anomalous beats (``default_rng(100 + SPLIT).permutation`` of the
anomalous indices, first half), so half of the anomalous beats are never looked at for a given split.
Model seeds 10, 11, 12 (the protocol's are 0, 1, 2). The threshold rule is the protocol's: the 95th
percentile of the development validation scores.

One run fits one VRAE and writes ``OUT.json`` (metrics of every component) and ``OUT.npz`` (scores and
latent posteriors of train / val / test windows, the held-out indices, labels) so that score-side
variants (k of the k-NN, ensembles of components) are evaluated afterwards without refitting
(:mod:`monitor.experiments.vrae_semi_analyse`). Imports only ``models`` and ``streams.datasets``
(runs where the Kafka client is not installed)::

    OMP_NUM_THREADS=1 .venv/bin/python -m monitor.experiments.vrae_semi_dev --split 1 --seed 10 \\
        --param epochs=150 --out runs/dev/base-s1-10
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FPR = 0.05


def dev_split(y: np.ndarray, split: int):
    """(train, val, test, y_test) indices of the development split ``split`` (see module doc)."""
    from monitor.protocols.ecg import semi_split

    a = y != 1
    tr, va, te = semi_split(a, seed=split)  # the protocol's split rule, another permutation of the normals
    te_n = te[~a[te]]
    anom = np.random.default_rng(100 + split).permutation(np.flatnonzero(a))
    anom = np.sort(anom[:len(anom) // 2])
    test = np.concatenate([te_n, anom])
    return tr, va, test, np.r_[np.zeros(len(te_n)), np.ones(len(anom))].astype(int)


def metrics(y: np.ndarray, s_test: np.ndarray, s_val: np.ndarray) -> dict[str, float]:
    """The protocol's metrics: threshold at the (1 - FPR) quantile of ``s_val``, anomalous when above it."""
    from models.thresholds import infer_threshold
    from monitor.evaluation import binary_metrics

    return binary_metrics(y, s_test, infer_threshold(s_val, FPR))


def parse_params(items):
    out = {}
    for it in items or []:
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", type=int, default=1, help="development split rng (the protocol's is 0)")
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--param", action="append", metavar="KEY=VALUE")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="output prefix: OUT.json, OUT.npz")
    a = p.parse_args(argv)
    if a.split == 0:
        raise SystemExit("split 0 is the protocol's split, not a development split")

    import torch

    from models import get_detector
    from streams.datasets import load_ecg5000

    torch.set_num_threads(1)
    X, y = load_ecg5000(a.data_dir).pooled()
    X = np.asarray(X, dtype=np.float32)[:, :, None]
    tr, va, te, yte = dev_split(np.asarray(y), a.split)
    params = {"device": a.device, "n_threads": 1, "seed": a.seed, **parse_params(a.param)}
    t0 = time.perf_counter()
    det = get_detector("vrae")(**params).fit(X[tr])
    fit_s = time.perf_counter() - t0
    S = {k: det.score(X[idx]) for k, idx in (("train", tr), ("val", va), ("test", te))}
    n_val = min(int(round(det.validation_fraction * len(tr))), len(tr) - 2) if det.validation_fraction else 0
    holdout = np.sort(np.random.default_rng(det.seed).permutation(len(tr))[:n_val])
    res = {"split": a.split, "seed": a.seed, "params": parse_params(a.param), "fit_seconds": round(fit_s, 1),
           "epochs_run": det.n_epochs_, "best_val_loss": det.best_val_loss_,
           "components": {c: metrics(yte, S["test"][c], S["val"][c]) for c in S["test"]}}
    first = det.members[0]  # an ensemble (n_members > 1) saves the posteriors of its first member
    arrays = {"y_test": yte, "holdout": holdout, "latent_scale": np.asarray(first.latent_scale_)}
    for part, idx in (("train", tr), ("val", va), ("test", te)):
        for c, v in S[part].items():
            arrays[f"{part}/{c}"] = v
        mu, sd = first._encode_np(first._standardise(X[idx]))
        arrays[f"{part}/mu"], arrays[f"{part}/sd"] = mu, sd
    # unsupervised criterion: negative ELBO (beta = 1) of the normal-only development validation windows
    gv = torch.Generator().manual_seed(first.seed + 2)
    with torch.no_grad():
        xv = torch.from_numpy(first._standardise(X[va])).to(first._device())
        res["val_neg_elbo"] = float(first._batch_loss(first.module_, xv, xv, 1.0, gv)[1])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("split", "seed", "params", "fit_seconds", "epochs_run")}),
          {c: (round(m["roc_auc"], 4), round(m["f1"], 4)) for c, m in res["components"].items()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
