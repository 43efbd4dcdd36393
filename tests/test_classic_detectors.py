"""ECOD, Mahalanobis, PCA, LOF (models.classic), kNN on the ECDF scale, and the ensemble of both
chosen for the dagmm protocols. The generic contract (save/load, batch invariance...) is in
tests/test_contract.py; these check what each computes."""
from __future__ import annotations

import numpy as np
import pytest

from models import get_detector, load_detector
from models.base import InputError
from models.classic import ECODDetector, LOFDetector, MahalanobisDetector, PCADetector
from models.sklearn_baselines import KNNDetector, RankEnsemble


def _data(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 1] = np.exp(X[:, 1])  # a skewed feature
    return X


def test_ecod_matches_a_direct_computation():
    X, Q = _data(), _data(15, seed=1)
    s = ECODDetector().fit(X).score(Q)["ecod"]
    n = len(X)
    left = np.array([[(X[:, j] <= q[j]).sum() for j in range(X.shape[1])] for q in Q])
    right = np.array([[(X[:, j] >= q[j]).sum() for j in range(X.shape[1])] for q in Q])
    nl, nr = -np.log((left + 1) / (n + 1)), -np.log((right + 1) / (n + 1))
    mu, sd = X.mean(0), X.std(0)
    skew = ((X - mu) ** 3).mean(0) / sd**3
    auto = np.where(skew < 0, nl, nr)
    np.testing.assert_allclose(s, np.maximum.reduce([nl.sum(1), nr.sum(1), auto.sum(1)]))


def test_ecod_ranks_tail_values_higher_and_handles_constant_columns():
    X = _data()
    X[:, 3] = 0.0
    det = ECODDetector().fit(X)
    s = det.score(np.array([[0.0, 1.0, 0.0, 0.0], [5.0, 30.0, -5.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))["ecod"]
    assert s[1] > s[0] and s[2] > s[0]
    assert np.isfinite(s).all()


def test_knn_ecdf_scale_ignores_monotone_feature_transforms():
    X, Q = _data(), _data(20, seed=2)
    a = KNNDetector(k=5, scale="ecdf").fit(X).score(Q)["knn_distance"]

    def warp(Z):
        return np.c_[3.0 * Z[:, 0] + 7.0, np.log(Z[:, 1]), np.exp(Z[:, 2]), Z[:, 3] ** 3]

    b = KNNDetector(k=5, scale="ecdf").fit(warp(X)).score(warp(Q))["knn_distance"]
    np.testing.assert_allclose(a, b, atol=1e-12)
    raw = KNNDetector(k=5).fit(X).score(Q)["knn_distance"]
    assert not np.allclose(raw, KNNDetector(k=5).fit(warp(X)).score(warp(Q))["knn_distance"])


def test_knn_ecdf_scale_is_the_mid_rank_ecdf():
    X = np.array([[0.0], [1.0], [1.0], [2.0]])
    det = KNNDetector(k=1, scale="ecdf").fit(X)
    # mid-ranks: 0 -> 1/8, 1 -> 4/8, 2 -> 7/8; 1.5 -> 6/8; -1 -> 0; 9 -> 1
    z = det._transform(np.array([[0.0], [1.0], [1.5], [-1.0], [9.0]]))[:, 0]
    np.testing.assert_allclose(z, [0.125, 0.5, 0.75, 0.0, 1.0])
    with pytest.raises(InputError, match="scale"):
        KNNDetector(scale="zscore").fit(X)


def test_mahalanobis_matches_scikit_learn_ledoit_wolf():
    from sklearn.covariance import LedoitWolf

    X, Q = _data(), _data(10, seed=3)
    s = MahalanobisDetector().fit(X).score(Q)["mahalanobis"]
    np.testing.assert_allclose(s**2, LedoitWolf().fit(X).mahalanobis(Q), rtol=1e-8)


def test_pca_residual_is_zero_in_the_subspace_and_grows_off_it():
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(2, 6))
    X = rng.normal(size=(200, 2)) @ basis + 0.01 * rng.normal(size=(200, 6))
    det = PCADetector(n_components=2).fit(X)
    assert det.n_components_ == 2
    on = rng.normal(size=(5, 2)) @ basis + X.mean(0)
    off = on + 3.0 * np.linalg.svd(basis)[2][-1]
    s_on, s_off = det.score(on)["pca_residual"], det.score(off)["pca_residual"]
    assert s_on.max() < 1e-3 and (s_off > 8.0).all()
    assert PCADetector(n_components=0.99).fit(X).n_components_ == 2
    with pytest.raises(InputError, match="n_components"):
        PCADetector(n_components=1.5).fit(X)


def test_lof_matches_scikit_learn_novelty_lof():
    from sklearn.neighbors import LocalOutlierFactor

    X, Q = _data(), _data(25, seed=5)
    s = LOFDetector(k=7).fit(X).score(Q)["lof"]
    ref = -LocalOutlierFactor(n_neighbors=7, novelty=True).fit(X).score_samples(Q)
    np.testing.assert_allclose(s, ref, rtol=1e-7)


def test_lof_subsamples_beyond_max_train():
    X = _data(300)
    det = LOFDetector(k=5, max_train=100, seed=1).fit(X)
    assert det.train_.shape == (100, 4)


def test_chosen_ensemble_round_trips_and_ranks_an_outlier_first(tmp_path):
    members = [["knn", {"k": 10, "scale": "ecdf"}], ["ecod", {}]]
    X = _data(150)
    Q = np.r_[_data(10, seed=6), [[6.0, 80.0, -6.0, 6.0]]]
    det = RankEnsemble(members=members, seed=3).fit(X)
    s = det.score(Q)["ensemble"]
    assert s.argmax() == len(Q) - 1
    det.save(tmp_path / "m")
    np.testing.assert_allclose(load_detector(tmp_path / "m").score(Q)["ensemble"], s, rtol=1e-12)


def test_compare_defaults_name_registered_detectors():
    from monitor.batch.compare import DEFAULT_PARAMS, DEFAULT_VARIANTS, _params_for

    spec = DEFAULT_VARIANTS["ensemble knn-ecdf+ecod"]
    assert spec["detector"] == "ensemble"
    for ds in ("thyroid", "arrhythmia", "kddcup", "kddcup-rev"):
        p = _params_for("ensemble knn-ecdf+ecod", ds, {}, DEFAULT_VARIANTS)
        for name, params in p["members"]:
            cls = get_detector(name)
            assert set(params) <= set(cls._param_names())
    assert "lof" in DEFAULT_PARAMS


def test_dev_script_refuses_the_reported_seeds():
    from monitor.experiments import tabular_dev

    assert tabular_dev.parse_seeds("100-103,7") == [100, 101, 102, 103, 7]
    with pytest.raises(SystemExit, match="0-19"):
        tabular_dev.main(["--seeds", "0-4"])
