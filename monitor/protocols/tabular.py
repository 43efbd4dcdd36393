"""The ``dagmm-*`` protocols of ``../shared/PROTOCOLS.md`` (Zong et al. 2018's set-up).

Datasets: ``thyroid``, ``arrhythmia``, ``kddcup`` (``normal.`` traffic is the anomaly),
``kddcup-rev`` (normal traffic is normal; attacks sampled per seed to attacks:normal = 1:4),
or the user's own file (``.npz``/``.mat`` with ``X`` and ``y``, or ``.csv`` with a label
column; label 1 = anomaly).

Steps, for seed ``s``:

1. min-max scale every feature to [0, 1] over the whole (pooled) data; constant columns → 0;
2. ``default_rng(s).permutation(normal indices)``; the first ``floor(50%)`` are the training set;
3. test = the other normals + every anomaly;
4. threshold = ``percentile(test_scores, 100 * (1 - r))``, r = the test set's anomaly ratio;
   a row is anomalous when its score is **at or above** it;
5. precision, recall, F1, ROC AUC, PR AUC; mean ± std over seeds.

Examples
--------
>>> import numpy as np
>>> X = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
>>> minmax_scale(X).tolist()
[[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]
>>> y = np.array([0] * 7 + [1] * 3)
>>> tr, te = dagmm_split(y, seed=0)
>>> len(tr), len(te), int(y[te].sum())
(3, 7, 3)
>>> m = dagmm_metrics(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]))
>>> m["f1"], m["threshold"] <= 0.9
(1.0, True)
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import UserError

log = logging.getLogger("anomon.protocols.tabular")

DATASETS = ("thyroid", "arrhythmia", "kddcup", "kddcup-rev")

#: F1 published by Zong et al. (2018), Table 2.
PAPER_DAGMM_F1 = {"thyroid": 0.4782, "arrhythmia": 0.4983, "kddcup": 0.9369, "kddcup-rev": 0.9380}
#: Peers measured on this protocol (issue 5), F1, mean of 5 seeds.
PEER_F1 = {
    "thyroid": ("scikit-learn IsolationForest", 0.787),
    "arrhythmia": ("scikit-learn IsolationForest", 0.606),
    "kddcup": ("scikit-learn IsolationForest", 0.959),
}
#: Bars for anomon's best detector (issue 5).
BAR_F1 = {"thyroid": 0.80, "arrhythmia": 0.62, "kddcup": 0.97}


# --------------------------------------------------------------------------- data
def minmax_scale(X: np.ndarray) -> np.ndarray:
    """Scale each column to [0, 1] over all rows; constant columns become 0."""
    X = np.asarray(X, dtype=np.float64)
    lo = X.min(axis=0)
    span = X.max(axis=0) - lo
    const = span <= 0
    span = np.where(const, 1.0, span)
    out = (X - lo) / span
    out[:, const] = 0.0
    return out


def _datasets():
    from streams import datasets

    return datasets


@functools.lru_cache(maxsize=4)
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled (X, y) with y = 1 for the protocol's anomalies (kddcup: ``normal.`` = 1)."""
    if name in ("thyroid", "arrhythmia"):
        X, y = _datasets().load_odds(name)
    elif name in ("kddcup", "kddcup-rev"):
        X, y, _names = _datasets().load_kddcup()
    else:
        raise UserError(f"unknown tabular dataset {name!r}; known: {', '.join(DATASETS)} or a file path")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int8).reshape(-1)
    if name == "kddcup-rev":
        y = (1 - y).astype(np.int8)  # normal traffic = 0, attacks = 1
    return X, y


def load_tabular_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the user's data: ``.npz``/``.mat`` with ``X`` and ``y``, or ``.csv`` (label column
    ``label``/``y``/``anomaly``/``target``, else the last column). Label 1 = anomaly."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: data file not found (give .npz/.mat with X and y, or .csv with a label column)")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as d:
            if "X" not in d or "y" not in d:
                raise UserError(f"{p}: an .npz needs arrays 'X' (n, d) and 'y' (n,), found {list(d.keys())}")
            X, y = d["X"], d["y"]
    elif suffix == ".mat":
        from scipy.io import loadmat

        d = loadmat(p)
        if "X" not in d or "y" not in d:
            raise UserError(f"{p}: a .mat needs variables 'X' and 'y'")
        X, y = d["X"], d["y"]
    elif suffix in (".csv", ".tsv", ".txt"):
        import pandas as pd

        df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
        label = next((c for c in df.columns if str(c).lower() in ("label", "y", "anomaly", "target")), df.columns[-1])
        y = df[label].to_numpy()
        X = df.drop(columns=[label]).select_dtypes("number").to_numpy()
    else:
        raise UserError(f"{p}: unsupported data format {suffix!r} (use .npz, .mat or .csv)")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or len(X) != len(y):
        raise UserError(f"{p}: X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not np.isfinite(X).all():
        raise UserError(f"{p}: X holds NaN or inf")
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise UserError(f"{p}: labels must be 0 (normal) and 1 (anomaly), found {sorted(labels)[:5]}")
    if not (y == 1).any() or not (y == 0).any():
        raise UserError(f"{p}: the protocol needs both normal (0) and anomalous (1) rows")
    return X, y.astype(np.int8)


def kddcup_rev_sample(y_rev: np.ndarray, seed: int) -> np.ndarray:
    """Row indices of KDDCUP-Rev for ``seed``: every normal row (0) plus ``floor(n_normal / 4)``
    attacks (1) drawn without replacement by ``default_rng(seed)``, in original order."""
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y_rev == 0)
    attacks = np.flatnonzero(y_rev == 1)
    k = len(normal) // 4
    chosen = rng.choice(attacks, size=k, replace=False)
    return np.sort(np.concatenate([normal, chosen]))


def load_protocol_data(dataset: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scaled (X, y) for ``dataset`` (a name in :data:`DATASETS` or a file path) and ``seed``
    (the seed matters only for kddcup-rev's sampling)."""
    if dataset == "kddcup-rev":
        X, y = _raw(dataset)
        idx = kddcup_rev_sample(y, seed)
        return minmax_scale(X[idx]), y[idx]
    return _scaled(dataset)


@functools.lru_cache(maxsize=4)
def _scaled(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset in DATASETS:
        X, y = _raw(dataset)
    else:
        X, y = load_tabular_file(dataset)
    return minmax_scale(X), y


def dagmm_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): train = first floor(50%) of the normals shuffled by
    ``default_rng(seed)``; test = the other normals followed by every anomaly."""
    y = np.asarray(y).reshape(-1)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    n_train = len(normal) // 2
    return normal[:n_train], np.concatenate([normal[n_train:], np.flatnonzero(y == 1)])


def dagmm_threshold(test_scores: np.ndarray, y_test: np.ndarray) -> float:
    """``percentile(test_scores, 100 * (1 - r))`` with r the anomaly ratio of the test set."""
    r = float(np.mean(np.asarray(y_test) == 1))
    return float(np.percentile(np.asarray(test_scores, dtype=np.float64), 100.0 * (1.0 - r)))


def dagmm_metrics(y_test: np.ndarray, test_scores: np.ndarray) -> dict[str, float]:
    """Metrics at the protocol threshold (score >= threshold is anomalous)."""
    from monitor.evaluation import binary_metrics

    thr = dagmm_threshold(test_scores, y_test)
    return binary_metrics(y_test, test_scores, thr, inclusive=True)


def protocol_name(dataset: str) -> str:
    return f"dagmm-{dataset}" if dataset in DATASETS else "dagmm-protocol on user data"


# --------------------------------------------------------------------------- running
def evaluate_detector(
    make_detector: Callable[[int], Any],
    dataset: str,
    seeds: Sequence[int],
    progress: Callable[..., Any] | None = None,
    component: str | None = None,
    save_dir: str | Path | None = None,
    desc: str | None = None,
) -> dict[str, Any]:
    """Run the protocol for ``make_detector(seed) -> Detector`` over ``seeds``.

    Scores with ``component`` (default: the detector's default component, as the daemon and reports use). Saves each fitted
    model under ``save_dir/seed-S`` when given. Returns per-seed metrics, their aggregate
    (mean ± std) and timings.
    """
    from monitor.evaluation import aggregate

    it = progress(list(seeds), desc=desc or dataset, leave=False) if progress else seeds
    per_seed: list[dict[str, Any]] = []
    for s in it:
        X, y = load_protocol_data(dataset, s)
        tr, te = dagmm_split(y, s)
        det = make_detector(int(s))
        t0 = time.perf_counter()
        det.fit(X[tr])
        t1 = time.perf_counter()
        sc = det.score(X[te])
        t2 = time.perf_counter()
        comp = component or det.default_component_name()
        m = dagmm_metrics(y[te], sc[comp])
        m.update(seed=int(s), fit_s=t1 - t0, score_s=t2 - t1, n_train=int(len(tr)), n_test=int(len(te)),
                 n_test_anomalies=int(y[te].sum()))
        per_seed.append(m)
        if save_dir is not None:
            det.save(Path(save_dir) / f"seed-{s}")
        log.debug("%s seed %s: f1 %.4f auc %.4f", dataset, s, m["f1"], m["roc_auc"])
    agg = aggregate([{k: v for k, v in m.items() if k not in ("seed", "tp", "fp", "fn", "tn")} for m in per_seed])
    return {
        "protocol": protocol_name(dataset),
        "dataset": dataset,
        "seeds": [int(s) for s in seeds],
        "component": component or (comp if per_seed else "default"),
        "aggregate": agg,
        "per_seed": per_seed,
        "runtime_s": float(sum(m["fit_s"] + m["score_s"] for m in per_seed)),
    }


def summary_row(name: str, res: dict[str, Any], keys: Sequence[str] = ("precision", "recall", "f1", "roc_auc", "pr_auc")) -> dict[str, Any]:
    """One table row ``{detector, dataset, metric: 'm ± s', ..., runtime_s}`` for a report."""
    from monitor.evaluation import fmt_mean_std

    row: dict[str, Any] = {"detector": name, "dataset": res["dataset"], "seeds": len(res["seeds"])}
    for k in keys:
        row[k] = fmt_mean_std(res["aggregate"][k])
    row["runtime_s"] = round(res["runtime_s"], 1)
    return row


def fmt_bar(value: float, bar: float) -> str:
    ok = value >= bar if not math.isnan(value) else False
    return f"{value:.4f} {'≥' if ok else '<'} {bar:.3f} ({'reached' if ok else 'NOT reached'})"
