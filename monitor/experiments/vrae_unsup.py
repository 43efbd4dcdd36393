"""ecg5000-unsup experiments for the VRAE's latent scores (issue 3): how the choice of reference bank
changes ``latent_wasserstein``-style scores, and an outlier-trimmed refit.

How the recipe was chosen (issue 3): the largest-cluster bank on model seed 0 (k = 2..5 all gave
0.991); the hyperparameters (``kl_weight=2``, ``latent_dim=8``) on development seeds 3, 4, 5, never the
protocol's 0, 1, 2; then the bank rule was changed from "largest of 3 k-means clusters" to the trimmed
majority mode (``bank=trimmed-0.6``, the ``latent_wasserstein_major`` component) because the largest
cluster was sometimes the anomalous one (k >= 4 on development seeds, and k = 3 on protocol seed 0
with ``kl_weight=2``)::

    OMP_NUM_THREADS=1 .venv/bin/python -m monitor.experiments.vrae_unsup --seed 3 --param kl_weight=2 --out runs/exp/s3
    OMP_NUM_THREADS=1 .venv/bin/python -m monitor.experiments.vrae_unsup --seed 3 --no-banks --param latent_dim=5 --out runs/exp/s3-z5

Variants (all fit on UCR TRAIN, labels unused; ROC AUC on UCR TEST):

* ``bank=all``: median squared W2 to every training posterior;
* ``bank=major-kmeans-K`` / ``major-gmm-K``: to the posteriors of the largest of K clusters (K = 2..5)
  of the training latent means (the papers take the largest cluster as the normal class);
* ``bank=trimmed-P``: to the fraction P of training posteriors with the lowest median W2 to the current
  bank, iterated three times from the full bank;
* ``trimmed-refit-P``: a second VRAE fitted on the fraction P of training beats with the lowest
  ``latent_wasserstein_major`` score, every component re-evaluated.

Writes ``OUT/results.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def bank_variants(det, data) -> dict[str, float]:
    """ROC AUC of the median squared W2 to different banks of training posteriors."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import roc_auc_score
    from sklearn.mixture import GaussianMixture

    from models.vrae import w2_diag_gaussians

    mtr, sdtr = det._encode_np(det._standardise(data.X_train))
    mte, sdte = det._encode_np(det._standardise(data.X_test))
    W = w2_diag_gaussians(mte, sdte, mtr, sdtr)
    out = {"bank=all": roc_auc_score(data.y_test, np.median(W, 1))}
    for k in (2, 3, 4, 5):
        for name, lab in (("kmeans", KMeans(k, n_init=10, random_state=det.seed).fit_predict(mtr)),
                          ("gmm", GaussianMixture(k, random_state=det.seed, n_init=3).fit(mtr).predict(mtr))):
            m = lab == np.bincount(lab).argmax()
            out[f"bank=major-{name}-{k}"] = roc_auc_score(data.y_test, np.median(W[:, m], 1))
            out[f"bank=major-{name}-{k}:size"] = int(m.sum())
    # iterative trimming of the bank: keep the fraction ``keep`` of training posteriors with the lowest
    # median W2 to the current bank, three times (no k to choose; the median's 50 % breakdown point)
    Wtr = w2_diag_gaussians(mtr, sdtr, mtr, sdtr)
    for keep in (0.5, 0.6, 0.7):
        bank = np.arange(len(mtr))
        for _ in range(3):
            s = np.median(Wtr[:, bank], 1)
            bank = np.sort(np.argsort(s, kind="stable")[:int(round(keep * len(mtr)))])
        out[f"bank=trimmed-{keep:g}"] = roc_auc_score(data.y_test, np.median(W[:, bank], 1))
    return {k: round(float(v), 4) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=float, nargs="*", default=[0.6], help="trimmed refit: fractions kept")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="VRAE hyperparameter (repeatable)")
    p.add_argument("--no-banks", action="store_true", help="skip the bank variants")
    p.add_argument("--data-dir")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    import torch

    from monitor.commands.train import parse_params
    from monitor.protocols.ecg import evaluate_detector, load_protocol, make_detector

    torch.set_num_threads(1)
    data = load_protocol("ecg5000-unsup", data_dir=a.data_dir)
    params = {"device": "cpu", "n_threads": 1, **parse_params(a.param)}
    res: dict = {"seed": a.seed, "params": parse_params(a.param)}
    t0 = time.perf_counter()
    det = make_detector("vrae", a.seed, params, data.protocol).fit(data.X_train)
    res["fit_seconds"] = round(time.perf_counter() - t0, 1)
    comps, _, _ = evaluate_detector(det, data)
    res["components"] = {c: round(m["roc_auc"], 4) for c, m in comps.items()}
    res["epochs_run"] = det.n_epochs_
    if not a.no_banks:
        res["banks"] = bank_variants(det, data)
    s_tr = det.score(data.X_train)["latent_wasserstein_major"]
    for keep in a.keep:
        idx = np.sort(np.argsort(s_tr, kind="stable")[:int(round(keep * len(s_tr)))])
        det2 = make_detector("vrae", a.seed, params, data.protocol).fit(data.X_train[idx])
        comps2, _, _ = evaluate_detector(det2, data)
        res[f"trimmed-refit-{keep:g}"] = {c: round(m["roc_auc"], 4) for c, m in comps2.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
