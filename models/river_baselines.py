"""river's online detectors on the detector contract.

:class:`HalfSpaceTrees` wraps :class:`river.anomaly.HalfSpaceTrees`. The trees are
saved as plain arrays (feature, threshold, masses in depth-first order), so no
pickle is involved. ``score`` never learns (it is deterministic and batch-invariant);
:meth:`HalfSpaceTrees.learn` updates the trees online for streaming use.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(300, 2))
>>> det = HalfSpaceTrees(n_trees=5, height=4, window_size=100, seed=1).fit(X)
>>> s = det.score(np.array([[0.0, 0.0], [8.0, -8.0]]))["hst_score"]
>>> bool(s[1] > s[0])
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Component, Detector, IncompatibleModelError, register


def _walk(node: Any, feats: list, thr: list, lm: list, rm: list) -> None:
    from river.tree.padded import PaddedBranch

    if isinstance(node, PaddedBranch):
        feats.append(int(node.feature))
        thr.append(float(node.threshold))
        lm.append(float(node.l_mass))
        rm.append(float(node.r_mass))
        _walk(node.children[0], feats, thr, lm, rm)
        _walk(node.children[1], feats, thr, lm, rm)
    else:
        feats.append(-1)
        thr.append(0.0)
        lm.append(float(node.l_mass))
        rm.append(float(node.r_mass))


def _build(it: Any, height: int) -> Any:
    from river.tree.padded import PaddedBranch, PaddedLeaf

    f, t, lm, rm = next(it)
    if height == 0:
        if f != -1:
            raise IncompatibleModelError("half-space tree arrays are inconsistent with its height")
        return PaddedLeaf(l_mass=lm, r_mass=rm)
    left = _build(it, height - 1)
    right = _build(it, height - 1)
    return PaddedBranch(left=left, right=right, feature=int(f), threshold=float(t), l_mass=lm, r_mass=rm)


@register
class HalfSpaceTrees(Detector):
    """Half-Space Trees (Tan et al. 2011) from river, fitted on min-max scaled features.

    Parameters
    ----------
    n_trees, height, window_size, seed
        As in :class:`river.anomaly.HalfSpaceTrees`. ``window_size`` is capped at the
        number of fitting samples so that a short training set still yields masses.
    """

    name = "half-space-trees"
    input_kind = "tabular"
    components = (Component("hst_score", "1 - normalised half-space mass (river)"),)
    _contract_params = {"n_trees": 5, "height": 4, "window_size": 50, "seed": 0}

    def __init__(self, n_trees: int = 25, height: int = 10, window_size: int = 250, seed: int = 0):
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed

    def _scale(self, X: np.ndarray) -> np.ndarray:
        span = np.where(self.max_ - self.min_ > 0, self.max_ - self.min_, 1.0)
        return (X - self.min_) / span

    def _new_river(self, window: int):
        from river.anomaly import HalfSpaceTrees as RiverHST

        return RiverHST(n_trees=self.n_trees, height=self.height, window_size=window, seed=self.seed)

    def fit(self, X, y=None):
        X = self._validate(X, fitting=True)
        self.min_ = X.min(axis=0)
        self.max_ = X.max(axis=0)
        self.n_features_in_ = int(X.shape[1])
        window = int(min(self.window_size, len(X)))
        self._hst = self._new_river(window)
        self._learn_rows(self._scale(X))
        self.window_size_ = window
        return self

    def learn(self, X: np.ndarray) -> HalfSpaceTrees:
        """Update the trees online with more (normal) samples."""
        self._check_fitted()
        X = self._validate(X, fitting=False)
        self._learn_rows(self._scale(X))
        return self

    def _learn_rows(self, Xs: np.ndarray) -> None:
        hst = self._hst
        for row in Xs:
            hst.learn_one(dict(enumerate(row.tolist())))

    def _score(self, X):
        hst = self._hst
        Xs = self._scale(X)
        return {"hst_score": np.array([hst.score_one(dict(enumerate(r.tolist()))) for r in Xs])}

    # ---- persistence: trees as arrays
    def _get_state(self):
        hst = self._hst
        feats: list = []
        thr: list = []
        lm: list = []
        rm: list = []
        for tree in hst.trees:
            _walk(tree, feats, thr, lm, rm)
        arrays = {
            "min_": self.min_,
            "max_": self.max_,
            "tree_feature": np.asarray(feats, dtype=np.int64),
            "tree_threshold": np.asarray(thr, dtype=np.float64),
            "tree_l_mass": np.asarray(lm, dtype=np.float64),
            "tree_r_mass": np.asarray(rm, dtype=np.float64),
        }
        meta = {
            "n_features_in_": self.n_features_in_,
            "window_size_": self.window_size_,
            "counter": hst.counter,
            "first_window": hst._first_window,
        }
        return arrays, meta

    def _set_state(self, arrays, meta):
        self.min_ = np.asarray(arrays["min_"])
        self.max_ = np.asarray(arrays["max_"])
        self.n_features_in_ = int(meta["n_features_in_"])
        self.window_size_ = int(meta["window_size_"])
        hst = self._new_river(self.window_size_)
        rows = zip(
            arrays["tree_feature"].tolist(),
            arrays["tree_threshold"].tolist(),
            arrays["tree_l_mass"].tolist(),
            arrays["tree_r_mass"].tolist(),
        )
        it = iter(list(rows))
        hst.trees = [_build(it, self.height) for _ in range(self.n_trees)]
        hst._tree_nodes = [list(t.iter_dfs()) for t in hst.trees]
        hst.counter = int(meta["counter"])
        hst._first_window = bool(meta["first_window"])
        self._hst = hst
