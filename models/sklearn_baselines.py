"""Classical baselines: scikit-learn's IsolationForest, k-nearest-neighbour distance, and a
rank ensemble of detectors.

Nothing is pickled: the isolation forest is fitted by scikit-learn, then its trees are
exported to plain arrays (children, feature, threshold, leaf sizes) and scored by a small
numpy traversal that reproduces ``IsolationForest.score_samples`` exactly.

Examples
--------
>>> import numpy as np
>>> from models.sklearn_baselines import IsolationForestDetector
>>> X = np.random.default_rng(0).normal(size=(300, 3))
>>> det = IsolationForestDetector(n_estimators=20, seed=0).fit(X)
>>> s = det.score(np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 6.0]]))["isolation"]
>>> bool(s[1] > s[0])
True
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.base import Component, Detector, InputError, get_detector, register


def subsample_rows(X: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """``X`` itself, or ``max_rows`` of its rows drawn with ``default_rng(seed)``, in their order."""
    if len(X) <= max_rows:
        return X
    return X[np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))]


def rank_counts(sorted_ref: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, how many reference values are ``< x`` and ``<= x`` (``sorted_ref``: each
    column sorted). The empirical CDF and tail counts of kNN's rank scale and of ECOD."""
    below, upto = np.empty(X.shape), np.empty(X.shape)
    for j in range(X.shape[1]):
        below[:, j] = np.searchsorted(sorted_ref[:, j], X[:, j], side="left")
        upto[:, j] = np.searchsorted(sorted_ref[:, j], X[:, j], side="right")
    return below, upto


def neighbour_index(train: np.ndarray, n_threads: int | None = None):
    """A fitted :class:`sklearn.neighbors.NearestNeighbors` over ``train`` (Euclidean, exact).

    ``algorithm="auto"``: a KD tree or ball tree for few features, brute force (chunked by
    scikit-learn, so memory stays bounded) where trees do not pay; every choice returns the exact
    nearest neighbours. ``n_threads`` becomes ``n_jobs`` (None = one thread).
    """
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(algorithm="auto", n_jobs=n_threads).fit(train)


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al.: average path length of an unsuccessful BST search (as scikit-learn)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    m1 = n <= 1
    m2 = n == 2
    rest = ~(m1 | m2)
    out[m2] = 1.0
    out[rest] = 2.0 * (np.log(n[rest] - 1.0) + np.euler_gamma) - 2.0 * (n[rest] - 1.0) / n[rest]
    return out


@register
class IsolationForestDetector(Detector):
    """scikit-learn's IsolationForest; score = ``-score_samples`` (higher = more anomalous).

    Parameters
    ----------
    n_estimators, max_samples, max_features
        As in :class:`sklearn.ensemble.IsolationForest`.
    transform
        ``None``, or ``"log"``: fit and score on ``log(x - min_train + log_offset)`` per feature
        (values below the training minimum are clipped to it). Random split points are drawn
        uniformly between a node's min and max, so a log scale spends more splits near the
        bulk of small values — it helps on skewed features such as Thyroid's.
    seed
        ``random_state``.
    n_threads
        ``n_jobs`` of the fit (None = one thread; the trees, and so the scores, do not change).
    """

    name = "isolation-forest"
    input_kind = "tabular"
    components = (Component("isolation", "IsolationForest anomaly score (-score_samples, in (-1, 0])"),)
    _contract_params = {"n_estimators": 10}

    def __init__(self, n_estimators: int = 100, max_samples: Any = "auto", max_features: float = 1.0,
                 transform: str | None = None, log_offset: float = 1e-3, seed: int = 0,
                 n_threads: int | None = None):
        self.n_threads = n_threads
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.transform = transform
        self.log_offset = log_offset
        self.seed = seed

    def _transform(self, X):
        if self.transform == "log":
            return np.log(np.maximum(X - self.xmin_, 0.0) + self.log_offset)
        return X

    def fit(self, X, y=None):
        from sklearn.ensemble import IsolationForest

        X = self._validate(X, fitting=True)
        if self.transform not in (None, "none", "log"):
            raise InputError(f"isolation-forest: transform must be None or 'log', got {self.transform!r}")
        if self.transform == "log":
            if not self.log_offset > 0:
                raise InputError("isolation-forest: log_offset must be > 0")
            self.xmin_ = X.min(axis=0)
            X = self._transform(X)
        f = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                            max_features=self.max_features, random_state=self.seed,
                            n_jobs=self.n_threads).fit(X)
        left, right, feat, thr, nsamp, offsets, featmap = [], [], [], [], [], [], []
        off = 0
        for est, feats in zip(f.estimators_, f.estimators_features_):
            t = est.tree_
            leaf = t.children_left == -1
            left.append(np.where(leaf, -1, t.children_left + off))
            right.append(np.where(leaf, -1, t.children_right + off))
            feat.append(np.where(leaf, 0, np.asarray(feats)[np.maximum(t.feature, 0)]))
            thr.append(t.threshold.astype(np.float64))
            nsamp.append(t.n_node_samples.astype(np.float64))
            offsets.append(off)
            off += t.node_count
        self.left_ = np.concatenate(left).astype(np.int64)
        self.right_ = np.concatenate(right).astype(np.int64)
        self.feature_ = np.concatenate(feat).astype(np.int64)
        self.threshold_ = np.concatenate(thr)
        # depth of each node, and the leaf correction c(n_leaf), precomputed per node
        depth = np.zeros(off, dtype=np.float64)
        for o in offsets:
            stack = [o]
            while stack:
                i = stack.pop()
                if self.left_[i] >= 0:
                    depth[self.left_[i]] = depth[self.right_[i]] = depth[i] + 1
                    stack += [self.left_[i], self.right_[i]]
        self.leaf_value_ = depth + _average_path_length(np.concatenate(nsamp))
        self.roots_ = np.asarray(offsets, dtype=np.int64)
        self.max_samples_ = int(f.max_samples_)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        X = self._transform(X)
        out = np.empty(len(X))
        for a in range(0, len(X), 4096):
            xb = X[a : a + 4096]
            node = np.broadcast_to(self.roots_, (len(xb), len(self.roots_))).copy()
            rows = np.arange(len(xb))[:, None]
            while True:
                inner = self.left_[node] >= 0
                if not inner.any():
                    break
                go_left = xb[rows, self.feature_[node]] <= self.threshold_[node]
                nxt = np.where(go_left, self.left_[node], self.right_[node])
                node = np.where(inner, nxt, node)
            depth = self.leaf_value_[node].mean(axis=1)
            out[a : a + 4096] = 2.0 ** (-depth / _average_path_length(np.array([self.max_samples_]))[0])
        return {"isolation": out}


@register
class KNNDetector(Detector):
    """Distance to the k nearest training rows (mean of the k distances, or the k-th).

    ``deduplicate`` collapses identical training rows first (for ``k=1`` this changes
    nothing but speed; for larger k it measures distance to k *distinct* points), and
    identical query rows are scored once. Training rows beyond ``max_train`` are
    subsampled (seeded) to bound memory and time. Neighbours come from scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors` (a KD / ball tree for few features, chunked brute
    force otherwise; exact either way), built once per fitted or loaded model; ``n_threads``
    queries in parallel (``n_jobs``) without changing a score.

    ``scale="ecdf"`` measures distances after mapping every feature through its empirical
    CDF over the training rows (mid-rank: ``(#{train < x} + #{train <= x}) / 2n``, in [0, 1]),
    so that each feature counts by how unusual a value is among the normals rather than by its
    raw spread (a copula / rank transform; the rows for the CDF are the training rows, subsampled
    to ``max_train`` as above).
    """

    name = "knn"
    input_kind = "tabular"
    components = (Component("knn_distance", "distance to the k nearest normal training rows"),)
    _contract_params = {"k": 3}

    def __init__(self, k: int = 5, method: str = "mean", max_train: int = 20000, deduplicate: bool = False,
                 scale: str | None = None, seed: int = 0, n_threads: int | None = None):
        self.k = k
        self.method = method
        self.max_train = max_train
        self.deduplicate = deduplicate
        self.scale = scale
        self.seed = seed
        self.n_threads = n_threads

    def _transform(self, X):
        if self.scale != "ecdf":
            return X
        below, upto = rank_counts(self.ecdf_sorted_, X)
        return (below + upto) / (2.0 * len(self.ecdf_sorted_))

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        if self.method not in ("mean", "kth"):
            raise InputError(f"knn: method must be 'mean' or 'kth', got {self.method!r}")
        if self.scale not in (None, "none", "ecdf"):
            raise InputError(f"knn: scale must be None or 'ecdf', got {self.scale!r}")
        self.__dict__.pop("ecdf_sorted_", None)  # a refit without the rank scale keeps no stale copy
        if self.scale == "ecdf":
            self.ecdf_sorted_ = np.sort(subsample_rows(X, self.max_train, self.seed), axis=0)
            X = self._transform(X)
        if self.deduplicate:
            X = np.unique(X, axis=0)
        X = subsample_rows(X, self.max_train, self.seed)
        self.train_ = np.ascontiguousarray(X, dtype=np.float64)
        self.n_features_in_ = int(X.shape[1])
        self._index = neighbour_index(self.train_, self.n_threads)
        return self

    def _set_state(self, arrays, meta):
        super()._set_state(arrays, meta)
        self._index = None  # rebuilt from train_ on first use

    def _score(self, X):
        X = self._transform(X)
        inverse = None
        if self.deduplicate and len(X) > 1:
            X, inverse = np.unique(X, axis=0, return_inverse=True)
        if getattr(self, "_index", None) is None:
            self._index = neighbour_index(self.train_, self.n_threads)
        k = min(int(self.k), len(self.train_))
        out = np.empty(len(X))
        for a in range(0, len(X), 65536):  # bounds the (rows, k) result arrays
            d, _ = self._index.kneighbors(X[a : a + 65536], n_neighbors=k)
            out[a : a + 65536] = d.mean(axis=1) if self.method == "mean" else d[:, -1]
        return {"knn_distance": out if inverse is None else out[inverse.reshape(-1)]}


@register
class RankEnsemble(Detector):
    """Average of member detectors' scores, each mapped through its own training-score
    distribution (standardised by the training median and IQR), so members on different
    scales weigh alike. Members are given as ``[[name, params], ...]`` of registered
    tabular detectors; the default component of each is used (its first unless it declares one). ``n_threads`` is passed on to the
    members that take it (and do not set their own).
    """

    name = "ensemble"
    input_kind = "tabular"
    components = (Component("ensemble", "mean of robustly standardised member scores"),)
    _contract_params = {"members": [["isolation-forest", {"n_estimators": 10}], ["knn", {"k": 3}]]}

    def __init__(self, members: Sequence[Any] = (("isolation-forest", {"n_estimators": 500}), ("knn", {"k": 10})),
                 weights: Sequence[float] | None = None, seed: int = 0, n_threads: int | None = None):
        self.members = [[str(m[0]), dict(m[1])] for m in members]
        self.weights = None if weights is None else [float(w) for w in weights]
        self.seed = seed
        self.n_threads = n_threads

    def _make(self, i: int, name: str, params: dict) -> Detector:
        cls = get_detector(name)
        p = dict(params)
        if "seed" in cls._param_names() and "seed" not in p:
            p["seed"] = self.seed + i
        if self.n_threads is not None and "n_threads" in cls._param_names() and "n_threads" not in p:
            p["n_threads"] = self.n_threads
        return cls(**p)

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        dets, center, scale = [], [], []
        for i, (name, params) in enumerate(self.members):
            det = self._make(i, name, params).fit(X)
            s = det.score(X)[det.default_component_name()]
            q25, q50, q75 = np.percentile(s, [25, 50, 75])
            dets.append(det)
            center.append(q50)
            scale.append(max(q75 - q25, 1e-12))
        self.members_ = dets
        self.center_ = np.asarray(center)
        self.scale_ = np.asarray(scale)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _score(self, X):
        w = np.ones(len(self.members_)) if self.weights is None else np.asarray(self.weights)
        tot = np.zeros(len(X))
        for i, det in enumerate(self.members_):
            s = det.score(X)[det.default_component_name()]
            tot += w[i] * (s - self.center_[i]) / self.scale_[i]
        return {"ensemble": tot / w.sum()}

    def _get_state(self):
        arrays = {"center_": self.center_, "scale_": self.scale_}
        meta: dict[str, Any] = {"n_features_in_": self.n_features_in_, "member_state_": []}
        for i, det in enumerate(self.members_):
            a, m = det._get_state()
            for k, v in a.items():
                arrays[f"m{i}.{k}"] = np.asarray(v)
            meta["member_state_"].append(m)
        return arrays, meta

    def _set_state(self, arrays, meta):
        self.center_ = np.asarray(arrays["center_"])
        self.scale_ = np.asarray(arrays["scale_"])
        self.n_features_in_ = int(meta["n_features_in_"])
        dets = []
        for i, ((name, params), m) in enumerate(zip(self.members, meta["member_state_"])):
            det = self._make(i, name, params)
            pre = f"m{i}."
            det._set_state({k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}, m)
            dets.append(det)
        self.members_ = dets
