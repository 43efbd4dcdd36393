"""Thresholds: the alert decision, kept apart from scoring.

A threshold is fitted on scores of normal data at a target false-positive rate
and then classifies scores (higher = more anomalous, ``score > threshold``).

Examples
--------
>>> import numpy as np
>>> from models.thresholds import QuantileThreshold
>>> t = QuantileThreshold(fpr=0.05).fit(np.arange(100.0))
>>> round(t.threshold_, 2)
94.05
>>> t.classify(np.array([10.0, 99.0])).tolist()
[False, True]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import InputError, NotFittedError


def infer_threshold(normal_scores: np.ndarray, fpr: float) -> float:
    """Score above which a fraction ``fpr`` of the normal scores lie (linear-interpolated quantile)."""
    s = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise InputError("infer_threshold: no scores given")
    if not np.isfinite(s).all():
        raise InputError("infer_threshold: scores hold NaN or inf")
    if not 0.0 < fpr < 1.0:
        raise InputError(f"infer_threshold: fpr must be in (0, 1), got {fpr}")
    return float(np.quantile(s, 1.0 - fpr))


class QuantileThreshold:
    """Threshold at the ``1 - fpr`` quantile of normal scores.

    Parameters
    ----------
    fpr
        Target false-positive rate on normal data (0.05 = the 95th percentile).
    """

    kind = "quantile"

    def __init__(self, fpr: float = 0.05):
        self.fpr = fpr

    def fit(self, normal_scores: np.ndarray) -> QuantileThreshold:
        self.threshold_ = infer_threshold(normal_scores, self.fpr)
        return self

    def _check(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("threshold is not fitted: call fit(scores_of_normal_data) first")

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """Boolean array: True where the score is above the threshold."""
        self._check()
        return np.asarray(scores, dtype=np.float64) > self.threshold_

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {"kind": self.kind, "fpr": self.fpr, "threshold": self.threshold_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileThreshold:
        t = cls(fpr=float(d["fpr"]))
        t.threshold_ = float(d["threshold"])
        return t
