"""Classical tabular detectors in plain numpy: ECOD, Mahalanobis distance with Ledoit-Wolf
shrinkage, PCA reconstruction error, and the local outlier factor.

All are semi-supervised: fitted on (mostly) normal rows, they score new rows against the
training rows only, so scoring is deterministic and batch-invariant. Their state is plain
arrays (saved as safetensors, never pickled).

* ``ecod`` (Li et al. 2022): per feature, the empirical left and right tail probabilities of a
  value under the training distribution; the score sums ``-log`` of them over the features
  (left tails, right tails, and each feature's tail on the side of its skewness) and keeps the
  largest of the three sums.
* ``mahalanobis``: distance to the training mean under the Ledoit-Wolf shrunk covariance
  (well conditioned when features outnumber rows).
* ``pca``: squared distance to the principal subspace that keeps ``n_components`` of the
  variance (a float in (0, 1)) or that many components (an int).
* ``lof``: local outlier factor of a new row among the training rows (novelty mode).

Examples
--------
>>> import numpy as np
>>> from models.classic import ECODDetector
>>> X = np.random.default_rng(0).normal(size=(300, 3))
>>> det = ECODDetector().fit(X)
>>> s = det.score(np.array([[0.0, 0.0, 0.0], [4.0, -4.0, 4.0]]))["ecod"]
>>> bool(s[1] > s[0])
True
"""
from __future__ import annotations

import numpy as np

from models.base import Component, Detector, InputError, register
from models.sklearn_baselines import neighbour_index, rank_counts, subsample_rows


@register
class ECODDetector(Detector):
    """Empirical-CDF outlier detection (ECOD, Li et al. 2022), fitted on the training rows.

    Tail probabilities use the training rows only, ``(count + 1) / (n + 1)`` so that a value
    beyond every training value gets ``1 / (n + 1)`` rather than 0.
    """

    name = "ecod"
    input_kind = "tabular"
    components = (Component("ecod", "largest sum over features of -log empirical tail probability"),)

    def __init__(self):
        pass

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        self.sorted_ = np.sort(X, axis=0)
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            skew = np.where(sd > 0, ((X - mu) ** 3).mean(axis=0) / np.where(sd > 0, sd, 1.0) ** 3, 0.0)
        self.skew_sign_ = np.sign(skew)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        n = self.sorted_.shape[0]
        out = np.empty(len(X))
        for a in range(0, len(X), 8192):
            xb = X[a : a + 8192]
            below, upto = rank_counts(self.sorted_, xb)  # training values < x, <= x
            nl = -np.log((upto + 1.0) / (n + 1.0))  # left tail: values <= x
            nr = -np.log((n - below + 1.0) / (n + 1.0))  # right tail: values >= x
            auto = np.where(self.skew_sign_ < 0, nl, nr)
            out[a : a + 8192] = np.maximum.reduce([nl.sum(1), nr.sum(1), auto.sum(1)])
        return {"ecod": out}


@register
class MahalanobisDetector(Detector):
    """Mahalanobis distance to the training mean, covariance shrunk by Ledoit-Wolf."""

    name = "mahalanobis"
    input_kind = "tabular"
    components = (Component("mahalanobis", "Mahalanobis distance to the training mean (Ledoit-Wolf covariance)"),)

    def __init__(self):
        pass

    def fit(self, X, y=None):
        from sklearn.covariance import LedoitWolf

        X = self._validate(X, fitting=True)
        lw = LedoitWolf().fit(X)
        self.location_ = np.asarray(lw.location_, dtype=np.float64)
        self.precision_ = np.asarray(lw.precision_, dtype=np.float64)
        self.shrinkage_ = float(lw.shrinkage_)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        Z = X - self.location_
        return {"mahalanobis": np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", Z, self.precision_, Z), 0.0))}


@register
class PCADetector(Detector):
    """Squared reconstruction error from the leading principal components of the training rows.

    Parameters
    ----------
    n_components
        A float in (0, 1): keep the fewest components that explain that share of the variance;
        an int >= 1: keep that many (at most min(n, d) - 1, so that a residual remains).
    """

    name = "pca"
    input_kind = "tabular"
    components = (Component("pca_residual", "squared distance to the training principal subspace"),)

    def __init__(self, n_components: float = 0.9):
        self.n_components = n_components

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        nc = self.n_components
        if isinstance(nc, bool) or not ((isinstance(nc, float) and 0 < nc < 1) or (isinstance(nc, int) and nc >= 1)):
            raise InputError(f"pca: n_components must be a float in (0, 1) or an int >= 1, got {nc!r}")
        mean = X.mean(axis=0)
        _, sv, vt = np.linalg.svd(X - mean, full_matrices=False)
        var = sv**2
        top = max(1, min(X.shape) - 1)
        if isinstance(nc, float):
            total = var.sum()
            k = 1 if total <= 0 else int(np.searchsorted(np.cumsum(var) / total, nc) + 1)
        else:
            k = nc
        k = int(min(max(k, 1), top, len(sv)))
        self.mean_ = mean
        self.basis_ = np.ascontiguousarray(vt[:k])
        self.n_components_ = k
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        Z = X - self.mean_
        proj = Z @ self.basis_.T
        return {"pca_residual": np.maximum((Z**2).sum(1) - (proj**2).sum(1), 0.0)}


@register
class LOFDetector(Detector):
    """Local outlier factor of new rows among the training rows (novelty LOF, Breunig et al. 2000).

    A training row's k-distance and local reachability density leave the row itself out.
    Training rows beyond ``max_train`` are subsampled (seeded) to bound memory and time.
    The k nearest neighbours come from scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors` (tree or chunked brute force, exact; no row of
    distances is sorted in full); ``n_threads`` queries in parallel without changing a score.
    """

    name = "lof"
    input_kind = "tabular"
    components = (Component("lof", "local outlier factor among the training rows"),)
    _contract_params = {"k": 5}

    def __init__(self, k: int = 20, max_train: int = 10000, seed: int = 0, n_threads: int | None = None):
        self.k = k
        self.max_train = max_train
        self.seed = seed
        self.n_threads = n_threads

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        if not int(self.k) >= 1:
            raise InputError(f"lof: k must be >= 1, got {self.k!r}")
        if len(X) < 2:
            raise InputError("lof: needs at least 2 training rows")
        X = np.ascontiguousarray(subsample_rows(X, self.max_train, self.seed))
        k = min(int(self.k), len(X) - 1)
        self._index = neighbour_index(X, self.n_threads)
        dk, idx = self._index.kneighbors(None, n_neighbors=k)  # None: each row's own entry left out
        kdist = dk[:, -1]
        reach = np.maximum(dk, kdist[idx])
        self.train_ = X
        self.kdist_ = kdist
        self.lrd_ = 1.0 / (reach.mean(axis=1) + 1e-10)
        self.k_ = k
        self.n_features_in_ = int(X.shape[1])
        return self

    def _set_state(self, arrays, meta):
        super()._set_state(arrays, meta)
        self._index = None  # rebuilt from train_ on first use

    def _score(self, X):
        if getattr(self, "_index", None) is None:
            self._index = neighbour_index(self.train_, self.n_threads)
        out = np.empty(len(X))
        for a in range(0, len(X), 65536):
            dk, idx = self._index.kneighbors(X[a : a + 65536], n_neighbors=int(self.k_))
            lrd = 1.0 / (np.maximum(dk, self.kdist_[idx]).mean(axis=1) + 1e-10)
            out[a : a + 65536] = self.lrd_[idx].mean(axis=1) / lrd
        return {"lof": out}
