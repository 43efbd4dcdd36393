"""Peer detectors for ``anomon bench streams``, on anomon's detector contract (not registered).

Each peer is a :class:`models.base.Detector` subclass so that :func:`monitor.evaluate_stream.evaluate_stream`
runs it exactly as it runs anomon's own detectors: same windows, same training span, same
threshold rule, same metrics. None is registered (``anomon detectors`` does not list them).

* :class:`PyODIForest`, :class:`PyODKNN`: PyOD's ``IForest`` and ``KNN`` (``decision_function``,
  higher = more anomalous) on flattened windows. PyOD is the optional ``bench`` extra.
* :class:`PCAControlChart`: the T² + Q (SPE) control chart of PCA-based process monitoring
  (Jackson & Mudholkar 1979; the SKAB leaderboard's "T-squared+Q"): components keeping
  ``var_explained`` of the training variance; each statistic divided by its training
  ``1 - alpha`` quantile; the score is the larger ratio (a point is out of control when either is).
* :class:`StumpyDiscord`: STUMPY's matrix profile as a discord score: the z-normalised distance
  of each subsequence to its nearest neighbour in the training span (an AB-join,
  ``stumpy.stump(T_A=query, m, T_B=train, ignore_trivial=False)``), averaged over channels.
  Consecutive stride-1 windows are turned back into the series they cover, so one batch is one
  ``stump`` call.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> pc = PCAControlChart().fit(rng.normal(size=(500, 4)))
>>> s = pc.score(np.array([[0.0, 0, 0, 0], [8.0, 8, -8, 8]]))["t2q"]
>>> bool(s[1] > 3 * s[0])
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Component, Detector, InputError


class PyODIForest(Detector):
    """PyOD ``IForest`` on flattened windows."""

    name = "pyod-iforest"
    components = (Component("pyod_if", "PyOD IForest decision_function"),)

    def __init__(self, n_estimators: int = 100, max_samples: Any = "auto", seed: int = 0):
        self.n_estimators, self.max_samples, self.seed = n_estimators, max_samples, seed

    def fit(self, X, y=None):
        from pyod.models.iforest import IForest

        X = self._validate(X, fitting=True)
        self.model_ = IForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                              random_state=self.seed, n_jobs=1).fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def _score(self, X):
        return {"pyod_if": self.model_.decision_function(X)}


class PyODKNN(Detector):
    """PyOD ``KNN`` (largest of the k distances) on flattened windows, fitted on at most ``max_train`` rows."""

    name = "pyod-knn"
    components = (Component("pyod_knn", "PyOD KNN decision_function"),)

    def __init__(self, k: int = 5, max_train: int = 5000, seed: int = 0):
        self.k, self.max_train, self.seed = k, max_train, seed

    def fit(self, X, y=None):
        from pyod.models.knn import KNN

        X = self._validate(X, fitting=True)
        if len(X) > self.max_train:
            X = X[np.sort(np.random.default_rng(self.seed).choice(len(X), self.max_train, replace=False))]
        self.model_ = KNN(n_neighbors=min(self.k, len(X) - 1), n_jobs=1).fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def _score(self, X):
        return {"pyod_knn": self.model_.decision_function(X)}


class PCAControlChart(Detector):
    """T² + Q control chart on PCA of the (normalised) training rows; see the module docstring."""

    name = "pca-t2q"
    components = (Component("t2q", "max(T²/T²_lim, Q/Q_lim)"),)

    def __init__(self, var_explained: float = 0.9, alpha: float = 0.01):
        self.var_explained, self.alpha = var_explained, alpha

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        _, s, vt = np.linalg.svd(Xc, full_matrices=False)
        lam = s ** 2 / max(len(X) - 1, 1)
        share = np.cumsum(lam) / max(lam.sum(), 1e-300)
        k = int(np.searchsorted(share, self.var_explained) + 1)
        k = min(k, max(len(lam) - 1, 1))
        self.components_ = vt[:k]
        self.lambdas_ = np.maximum(lam[:k], 1e-12 * max(lam.max(), 1e-300))
        t2, q = self._stats(X)
        self.t2_lim_ = max(float(np.quantile(t2, 1 - self.alpha)), 1e-12)
        self.q_lim_ = max(float(np.quantile(q, 1 - self.alpha)), 1e-12)
        self.n_features_in_ = X.shape[1]
        return self

    def _stats(self, X):
        Xc = X - self.mean_
        t = Xc @ self.components_.T
        t2 = (t ** 2 / self.lambdas_).sum(axis=1)
        q = ((Xc - t @ self.components_) ** 2).sum(axis=1)
        return t2, q

    def _score(self, X):
        t2, q = self._stats(X)
        return {"t2q": np.maximum(t2 / self.t2_lim_, q / self.q_lim_)}


def _series_of(W: np.ndarray) -> np.ndarray | None:
    """The series (n + T - 1, C) that consecutive stride-1 windows W (n, T, C) cover, else None."""
    if len(W) > 1 and not np.array_equal(W[1:, :-1], W[:-1, 1:]):
        return None
    return np.concatenate([W[0], W[1:, -1]], axis=0)


class StumpyDiscord(Detector):
    """STUMPY matrix-profile discords against the training span (AB-join); see the module docstring."""

    name = "stumpy-discord"
    input_kind = "window"
    components = (Component("mp_distance", "z-normalised distance to the nearest training subsequence"),)

    def __init__(self):
        pass

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        ser = _series_of(X)
        if ser is None:
            raise InputError("stumpy-discord: the training windows must be consecutive at stride 1")
        self.train_ = ser.astype(np.float64)
        self.window_length_ = X.shape[1]
        self.n_features_in_ = X.shape[2]
        return self

    def _score(self, X):
        import stumpy

        m = X.shape[1]
        out = np.zeros(len(X))
        # a batch: runs of consecutive windows (the windower emits them in order)
        breaks = [0] + [i for i in range(1, len(X)) if not np.array_equal(X[i, :-1], X[i - 1, 1:])] + [len(X)]
        for a, b in zip(breaks[:-1], breaks[1:]):
            ser = _series_of(X[a:b]).astype(np.float64)
            if len(ser) < m + 1:  # stump needs at least two subsequences; pad by repeating the window
                ser = np.concatenate([ser, ser[-1:]], axis=0)
            acc = np.zeros(b - a)
            for c in range(ser.shape[1]):
                mp = stumpy.stump(ser[:, c], m, T_B=self.train_[:, c], ignore_trivial=False)[:, 0].astype(np.float64)
                mp[~np.isfinite(mp)] = 0.0  # a constant subsequence against constant training: no distance
                acc += mp[:b - a]
            out[a:b] = acc / ser.shape[1]
        return {"mp_distance": out}
