"""Summarise ecg5000-semi development runs (:mod:`monitor.experiments.vrae_semi_dev`) per recipe, with
score-side variants computed from the saved scores and posteriors (no refit):

* every component as the detector scores it;
* ``knn-K``: mean W2 distance (whitened) to the K nearest training posteriors;
* ``comb-W``: robust z-score of ``reconstruction_probability`` + W x robust z-score of ``latent_knn``
  (median / IQR on the windows held out of the gradient steps, as the detector's ``combined``);
* ``comb3``: the same with ``reconstruction_error`` as a third term.

Metrics on the development test set (remaining normals + half the anomalies); the threshold is the
95th percentile of the development validation scores. Besides F1 (whose level depends on the
anomaly ratio, half the protocol's here) it shows recall at that threshold::

    .venv/bin/python -m monitor.experiments.vrae_semi_analyse runs/dev/*.npz

``--ensemble`` instead treats the runs of one recipe and split (different model seeds, the same data) as
the members of a deep ensemble (``VRAE(n_members=...)``) and reports, per recipe and split, every
component as the members' mean, which is exactly what the ensemble scores::

    .venv/bin/python -m monitor.experiments.vrae_semi_analyse --ensemble runs/dev/*.npz
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from monitor.experiments.vrae_semi_dev import metrics


def _w2(mu1, sd1, mu2, sd2):
    def sqd(a, b):
        return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    return sqd(mu1, mu2) + sqd(sd1, sd2)


def knn(d, part: str, k: int) -> np.ndarray:
    s = d["latent_scale"]
    W = _w2(d[f"{part}/mu"] / s, d[f"{part}/sd"] / s, d["train/mu"] / s, d["train/sd"] / s)
    W = np.where(W <= 1e-10, np.inf, W)
    return np.sqrt(np.partition(W, k - 1, axis=1)[:, :k]).mean(1)


def robust(v_hold: np.ndarray):
    q25, q50, q75 = np.percentile(v_hold, [25, 50, 75])
    return q50, max(q75 - q25, 1e-12)


def variants(d) -> dict[str, dict[str, np.ndarray]]:
    """Per variant: {'val': scores, 'test': scores}."""
    comps = sorted({k.split("/", 1)[1] for k in d.files if k.startswith("test/") and k not in ("test/mu", "test/sd")})
    out = {c: {p: d[f"{p}/{c}"] for p in ("val", "test")} for c in comps}
    hold = d["holdout"]
    for k in (3, 5, 10):
        out[f"knn-{k}"] = {p: knn(d, p, k) for p in ("val", "test", "train")}
    for kname, kv in (("knn", None), ("knn5", "knn-5")):
        for nll_name in ("reconstruction_probability",):
            tr_knn = d["train/latent_knn"] if kv is None else out[kv]["train"]
            m1, s1 = robust(d[f"train/{nll_name}"][hold])
            m2, s2 = robust(tr_knn[hold])
            for w in (0.5, 1, 2, 3):
                key = f"comb-{w:g}" if kv is None else f"comb5-{w:g}"
                out[key] = {p: (d[f"{p}/{nll_name}"] - m1) / s1
                            + w * ((d[f"{p}/latent_knn"] if kv is None else out[kv][p]) - m2) / s2
                            for p in ("val", "test")}
    m3, s3 = robust(d["train/reconstruction_error"][hold])
    for key in ("comb-1", "comb-2"):
        out[key.replace("comb", "comb3")] = {p: out[key][p] + (d[f"{p}/reconstruction_error"] - m3) / s3
                                             for p in ("val", "test")}
    return out


def ensemble_report(files) -> int:
    """Per recipe and split: each component averaged over the runs (members), and its metrics."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for f in sorted(files):
        m = re.match(r"(.*)-s(\d+)-\d+$", Path(f).stem)
        if m:
            groups[(m.group(1), m.group(2))].append(np.load(f))
    per_recipe: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (recipe, split), ds in sorted(groups.items()):
        comps = sorted(k.split("/", 1)[1] for k in ds[0].files if k.startswith("test/") and k not in ("test/mu", "test/sd"))
        for c in comps:
            mt = metrics(ds[0]["y_test"], np.mean([d[f"test/{c}"] for d in ds], axis=0),
                         np.mean([d[f"val/{c}"] for d in ds], axis=0))
            per_recipe[f"{recipe} x{len(ds)}"][c].append((split, mt))
    for recipe, comps in per_recipe.items():
        print(f"== {recipe} members (ensemble per split)")
        for c, ms in comps.items():
            auc = [m["roc_auc"] for _, m in ms]
            print(f"  {c:28s} auc {np.mean(auc):.4f}  per split " + ", ".join(
                f"s{s}: {m['roc_auc']:.4f} / f1 {m['f1']:.4f}" for s, m in ms))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--only", nargs="*", help="variants to show (default: all)")
    p.add_argument("--ensemble", action="store_true",
                   help="average the components of the runs of one recipe and split (a deep ensemble)")
    a = p.parse_args(argv)
    if a.ensemble:
        return ensemble_report(a.files)
    res: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in sorted(a.files):
        recipe = re.sub(r"-s\d+-\d+$", "", Path(f).stem)
        d = np.load(f)
        for v, s in variants(d).items():
            res[recipe][v].append(metrics(d["y_test"], s["test"], s["val"]))
    for recipe, vs in res.items():
        print(f"== {recipe} (n={len(next(iter(vs.values())))})")
        for v, ms in vs.items():
            if a.only and v not in a.only:
                continue
            auc = np.array([m["roc_auc"] for m in ms])
            f1 = np.array([m["f1"] for m in ms])
            rec = np.array([m["recall"] for m in ms])
            fpr = np.array([m["fpr"] for m in ms])
            print(f"  {v:28s} auc {auc.mean():.4f}±{auc.std():.4f}  f1 {f1.mean():.4f}  recall {rec.mean():.4f}"
                  f"  fpr {fpr.mean():.3f}  min-auc {auc.min():.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
