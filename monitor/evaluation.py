"""Evaluation metrics shared by every protocol.

All scores follow "higher = more anomalous"; labels are 1 for anomalous, 0 for normal.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 0, 1, 1])
>>> s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
>>> m = binary_metrics(y, s, threshold=0.5)
>>> m["roc_auc"], m["f1"], m["precision"], m["recall"]
(1.0, 1.0, 1.0, 1.0)
>>> aggregate([{"f1": 0.5}, {"f1": 0.7}])["f1"]
{'mean': 0.6, 'std': 0.1, 'n': 2, 'values': [0.5, 0.7]}
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def _check(y: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or inf")
    return y, s


def roc_auc(y: Any, scores: Any) -> float:
    from sklearn.metrics import roc_auc_score

    y, s = _check(y, scores)
    return float(roc_auc_score(y, s))


def pr_auc(y: Any, scores: Any) -> float:
    """Average precision (the usual PR-AUC estimate)."""
    from sklearn.metrics import average_precision_score

    y, s = _check(y, scores)
    return float(average_precision_score(y, s))


def at_threshold(y: Any, scores: Any, threshold: float, inclusive: bool = False) -> dict[str, float]:
    """Confusion counts and precision/recall/F1/accuracy/FPR when ``score > threshold``
    (``>=`` when ``inclusive``)."""
    y, s = _check(y, scores)
    pred = s >= threshold if inclusive else s > threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def binary_metrics(y: Any, scores: Any, threshold: float, inclusive: bool = False) -> dict[str, float]:
    """ROC AUC, PR AUC and the metrics at ``threshold``."""
    out = {"roc_auc": roc_auc(y, scores), "pr_auc": pr_auc(y, scores)}
    out.update(at_threshold(y, scores, threshold, inclusive=inclusive))
    return out


def pr_closest_to_corner(y: Any, scores: Any) -> float:
    """Threshold at the point of the PR curve closest to (precision 1, recall 1), Euclidean.

    Use with ``inclusive=True`` (a sample is anomalous when its score is at or above it).
    """
    from sklearn.metrics import precision_recall_curve

    y, s = _check(y, scores)
    p, r, t = precision_recall_curve(y, s)
    d = np.hypot(1 - p[:-1], 1 - r[:-1])
    return float(t[int(np.argmin(d))])


def aggregate(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± std (population std, ddof=0) of every numeric key over runs."""
    runs = list(runs)
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float)) and not isinstance(runs[0][k], bool)]
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        vals = [float(r[k]) for r in runs if k in r]
        out[k] = {
            "mean": round(float(np.mean(vals)), 12),
            "std": round(float(np.std(vals)), 12),
            "n": len(vals),
            "values": vals,
        }
    return out


def fmt_mean_std(d: Mapping[str, Any], digits: int = 4) -> str:
    """``'0.9876 ± 0.0012'`` from an :func:`aggregate` entry."""
    m, s = d["mean"], d["std"]
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"
