"""A simple statistical baseline: robust per-feature z-scores (median and MAD).

Examples
--------
>>> import numpy as np
>>> from models.statistical import RobustZScore
>>> X = np.random.default_rng(0).normal(size=(500, 2))
>>> det = RobustZScore().fit(X)
>>> det.score(np.array([[0.0, 0.0]]))["max_abs_z"].round(1).tolist()
[0.1]
"""
from __future__ import annotations

import numpy as np

from models.base import Component, Detector, register


@register
class RobustZScore(Detector):
    """Per-feature robust z-score; windows are flattened to ``T*C`` features.

    Parameters
    ----------
    min_scale
        Floor for the MAD-based scale, so constant features do not divide by zero.
    """

    name = "robust-zscore"
    input_kind = "tabular"
    components = (
        Component("max_abs_z", "largest |z| over features"),
        Component("mean_sq_z", "mean z^2 over features"),
    )
    _contract_params = {}

    def __init__(self, min_scale: float = 1e-6):
        self.min_scale = min_scale

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        self.median_ = np.median(X, axis=0)
        mad = np.median(np.abs(X - self.median_), axis=0) * 1.4826
        self.scale_ = np.maximum(mad, self.min_scale)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        z = X - self.median_
        z /= self.scale_  # (in place: the same numbers as (X - median) / scale, one temporary fewer)
        mean_sq = (z * z).mean(axis=1)
        return {"max_abs_z": np.abs(z, out=z).max(axis=1), "mean_sq_z": mean_sq}
