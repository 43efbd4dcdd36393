"""knn and lof on scikit-learn's neighbour trees give the brute-force result exactly."""
import numpy as np
import pytest

from models import load_detector
from models.classic import LOFDetector
from models.sklearn_baselines import KNNDetector, RankEnsemble


def _brute_knn(T, Q, k, method="mean"):
    d = np.sqrt(((Q[:, None, :] - T[None, :, :]) ** 2).sum(-1))
    d = np.sort(d, axis=1)[:, :k]
    return d.mean(1) if method == "mean" else d[:, -1]


def _brute_lof(T, Q, k):
    """Novelty LOF (Breunig et al.) from full distance matrices: the definition, nothing clever."""
    dtt = np.sqrt(((T[:, None, :] - T[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dtt, np.inf)
    nn = np.argsort(dtt, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(dtt, nn, 1)
    kdist = dk[:, -1]
    lrd_t = 1.0 / (np.maximum(dk, kdist[nn]).mean(1) + 1e-10)
    dq = np.sqrt(((Q[:, None, :] - T[None, :, :]) ** 2).sum(-1))
    qn = np.argsort(dq, axis=1, kind="stable")[:, :k]
    lrd_q = 1.0 / (np.maximum(np.take_along_axis(dq, qn, 1), kdist[qn]).mean(1) + 1e-10)
    return lrd_t[qn].mean(1) / lrd_q


@pytest.mark.parametrize("d", [3, 40])  # a tree (few features) and brute force (many)
@pytest.mark.parametrize("method", ["mean", "kth"])
def test_knn_equals_brute_force(d, method):
    rng = np.random.default_rng(d)
    T, Q = rng.normal(size=(400, d)), rng.normal(size=(150, d)) * 1.5
    det = KNNDetector(k=7, method=method).fit(T)
    np.testing.assert_allclose(det.score(Q)["knn_distance"], _brute_knn(T, Q, 7, method), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d", [2, 30])
def test_lof_equals_brute_force_and_sklearn(d):
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(10 + d)
    T, Q = rng.normal(size=(300, d)), rng.normal(size=(120, d)) * 1.3
    s = LOFDetector(k=10).fit(T).score(Q)["lof"]
    np.testing.assert_allclose(s, _brute_lof(T, Q, 10), rtol=1e-9)
    ref = -LocalOutlierFactor(n_neighbors=10, novelty=True).fit(T).score_samples(Q)
    np.testing.assert_allclose(s, ref, rtol=1e-6)


def test_lof_duplicate_training_rows_leave_self_out():
    rng = np.random.default_rng(3)
    T = np.repeat(rng.normal(size=(60, 3)), 2, axis=0)  # every row twice
    det = LOFDetector(k=3).fit(T)
    assert np.all(det.kdist_ > 0)  # the k=3 neighbours of a row are its twin and two others, never itself
    assert np.isfinite(det.score(rng.normal(size=(20, 3)))["lof"]).all()


def test_threads_and_reload_change_nothing(tmp_path):
    rng = np.random.default_rng(5)
    T, Q = rng.normal(size=(500, 4)), rng.normal(size=(200, 4))
    for det, comp in ((KNNDetector(k=5), "knn_distance"), (LOFDetector(k=8), "lof"),
                      (RankEnsemble(members=[["knn", {"k": 3}], ["lof", {"k": 5}]]), "ensemble")):
        a = det.fit(T).score(Q)[comp]
        b = type(det)(**{**det.get_params(), "n_threads": 2}).fit(T).score(Q)[comp]
        np.testing.assert_array_equal(a, b)
        c = load_detector(det.save(tmp_path / det.name)).score(Q)[comp]
        np.testing.assert_array_equal(a, c)
    ens = RankEnsemble(members=[["knn", {"k": 3}]], n_threads=2).fit(T)
    assert ens.members_[0].n_threads == 2
