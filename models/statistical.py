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
from models.normalize import robust_location_scale


@register
class RobustZScore(Detector):
    """Per-feature robust z-score; windows are flattened to ``T*C`` features.

    Parameters
    ----------
    min_scale
        Absolute floor for the MAD-based scale. ``None`` (default): the floor is relative to each
        feature's own training range, ``rel_floor * max(range, |median|)``
        (:func:`models.normalize.scale_floor`), so the unit of the data does not matter.
    rel_floor
        The relative floor's fraction (used when ``min_scale`` is ``None``).
    constant_z
        |z| of a feature that was constant (at level 0) in training when it moves: a fixed, finite
        size instead of ``step / 1e-6`` (which reached 1e6 on telemetry channels that toggle).
    """

    name = "robust-zscore"
    input_kind = "tabular"
    components = (
        Component("max_abs_z", "largest |z| over features"),
        Component("mean_sq_z", "mean z^2 over features"),
    )
    can_explain = True  # contributions: z^2 per feature (a window's steps x channels when flattened)
    _contract_params = {}

    def __init__(self, min_scale: float | None = None, rel_floor: float = 0.01, constant_z: float = 6.0):
        self.min_scale = min_scale
        self.rel_floor = rel_floor
        self.constant_z = constant_z

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        if self.min_scale is None:
            self.median_, self.scale_, self.constant_ = robust_location_scale(X, self.rel_floor)
        else:  # an absolute floor, as before (models saved with min_scale=1e-6 keep their numbers)
            self.median_ = np.median(X, axis=0)
            mad = np.median(np.abs(X - self.median_), axis=0) * 1.4826
            self.scale_ = np.maximum(mad, self.min_scale)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _z(self, X):
        z = X - self.median_
        z /= self.scale_  # (in place: the same numbers as (X - median) / scale, one temporary fewer)
        const = getattr(self, "constant_", None)  # (absent in models saved before it existed)
        if const is not None and const.any():
            z[:, const] = np.sign(z[:, const]) * self.constant_z
        return z

    def _contributions(self, X):
        """z^2 per feature: the terms of ``mean_sq_z`` (|z| ranks the features the same)."""
        z = self._z(X)
        return z * z

    def _score(self, X):
        z = self._z(X)
        mean_sq = (z * z).mean(axis=1)
        return {"max_abs_z": np.abs(z, out=z).max(axis=1), "mean_sq_z": mean_sq}
