"""VRAE and LSTM-AE: closed forms, score directions, determinism, CLI smoke (real ECG5000 subset)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import get_detector, load_detector
from models.vrae import VRAE, VRAESVM, w2_diag_gaussians

TINY = dict(hidden_size=8, latent_dim=3, context_dim=2, epochs=3, batch_size=16, n_samples=4,
            n_wasserstein=16, n_clusters=3, device="cpu", n_threads=1)


def _sines(n: int, T: int = 20, C: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, T, dtype=np.float32)
    ph = rng.uniform(0, 0.5, size=(n, 1, 1))
    X = np.sin(t[None, :, None] + ph + np.arange(C)[None, None, :]) + 0.05 * rng.normal(size=(n, T, C))
    return X.astype(np.float32)


def test_w2_closed_form_matches_numeric():
    """Closed form vs the 1-D quantile-coupling W2 summed over independent coordinates."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
    s1, s2 = rng.uniform(0.2, 2, size=(1, 3)), rng.uniform(0.2, 2, size=(1, 3))
    u = (np.arange(200_000) + 0.5) / 200_000
    q = norm.ppf(u)
    numeric = sum(np.mean(((m1[0, d] + s1[0, d] * q) - (m2[0, d] + s2[0, d] * q)) ** 2) for d in range(3))
    closed = w2_diag_gaussians(m1, s1, m2, s2)[0, 0]
    assert closed == pytest.approx(numeric, rel=1e-3)
    # all-pairs shape and zero self-distance
    D = w2_diag_gaussians(np.vstack([m1, m2]), np.vstack([s1, s2]), np.vstack([m1, m2]), np.vstack([s1, s2]))
    assert D.shape == (2, 2) and D[0, 0] == pytest.approx(0, abs=1e-12) and D[0, 1] == pytest.approx(closed)


@pytest.fixture(scope="module")
def sine_vrae():
    X = _sines(128)
    return X, VRAE(**{**TINY, "epochs": 15, "hidden_size": 16}).fit(X)


def test_scores_point_to_anomalies(sine_vrae):
    """Higher = more anomalous: a flat line / spiky window scores above the normal sines."""
    X, det = sine_vrae
    normal = _sines(16, seed=5)
    odd = normal.copy()
    odd[:, 5:9] += 3.0
    s_n, s_a = det.score(normal), det.score(odd)
    for c in ("reconstruction_probability", "reconstruction_error"):
        assert np.median(s_a[c]) > np.median(s_n[c]), c
    # reconstruction_probability is a negative log-likelihood: it grows with the error
    assert np.mean(s_a["reconstruction_probability"]) > np.mean(s_n["reconstruction_probability"])


def test_latent_knn_is_leave_one_out_on_training_windows(sine_vrae):
    """A training window is not its own neighbour: its latent_knn score is > 0, so a threshold
    on training scores (ecg5000-unsup) is meaningful."""
    X, det = sine_vrae
    s = det.score(X[:20])
    assert (s["latent_knn"] > 0).all()
    # combined = standardised NLL + weight * standardised k-NN distance
    m1, s1, m2, s2 = det.combine_stats_
    np.testing.assert_allclose(s["combined"], (s["reconstruction_probability"] - m1) / s1
                               + det.combine_weight * (s["latent_knn"] - m2) / s2, rtol=1e-9)


def test_latent_wasserstein_major_uses_the_majority_mode():
    """Contaminated training data (70 % sines, 30 % inverted sines): the reference bank of
    latent_wasserstein_major is the trimmed majority mode, so the minority kind scores higher."""
    X = np.concatenate([_sines(70), -_sines(30, seed=1)])
    det = VRAE(**{**TINY, "epochs": 10, "hidden_size": 16}).fit(X)
    assert len(det.major_mu_) == round(det.major_keep * len(X))
    s = det.score(X)["latent_wasserstein_major"]
    assert np.median(s[70:]) > np.median(s[:70])
    # closed form: the median squared W2 to the bank posteriors
    mu, sd = det._encode_np(det._standardise(X[:5]))
    np.testing.assert_allclose(s[:5], np.median(w2_diag_gaussians(mu, sd, det.major_mu_, det.major_sigma_), axis=1),
                               rtol=1e-6)
    # no trimming: the bank is every training posterior (at most major_pool of them)
    assert len(VRAE(**{**TINY, "major_keep": 1.0}).fit(X).major_mu_) == len(X)
    assert len(VRAE(**{**TINY, "major_pool": 40}).fit(X).major_mu_) == 24


def test_model_saved_without_major_bank_still_scores(tmp_path):
    """A model saved before latent_wasserstein_major existed loads; that component then uses the
    latent_wasserstein bank (and equals it)."""
    from safetensors.numpy import load_file, save_file

    X = _sines(32)
    VRAE(**TINY).fit(X).save(tmp_path / "v")
    w = tmp_path / "v" / "weights.safetensors"
    save_file({k: v for k, v in load_file(str(w)).items() if not k.startswith("major_")}, str(w))
    s = load_detector(tmp_path / "v").score(X[:4])
    np.testing.assert_allclose(s["latent_wasserstein_major"], s["latent_wasserstein"])


def test_ensemble_is_the_mean_of_independent_members(tmp_path):
    """n_members: member 0 is the single model of the same seed, the others differ; every component is
    the members' mean; save/load keeps the scores bit for bit; the size of the ensemble is checked."""
    X = _sines(40)
    single = VRAE(**TINY).fit(X)
    ens = VRAE(**TINY, n_members=3).fit(X)
    members = ens.members
    assert len(members) == 3 and [m.seed for m in members] == [0, 1000, 2000]
    assert single.members == [single] and ens.member_epochs_ == [m.n_epochs_ for m in members]
    s1, se, parts = single.score(X[:6]), ens.score(X[:6]), [m.score(X[:6]) for m in members]
    for c in se:
        np.testing.assert_array_equal(parts[0][c], s1[c], err_msg=c)
        np.testing.assert_allclose(se[c], np.mean([p[c] for p in parts], axis=0), err_msg=c)
    assert not np.array_equal(parts[0]["reconstruction_error"], parts[1]["reconstruction_error"])
    ens.save(tmp_path / "e")
    back = load_detector(tmp_path / "e")
    s2 = back.score(X[:6])
    for c in se:
        np.testing.assert_array_equal(s2[c], se[c], err_msg=c)
    assert back.transform(X[:2]).shape == (2, 3 * TINY["latent_dim"])
    assert back.reconstruct(X[:2]).shape == (2, 20, 1)
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    cfg["params"]["n_members"] = 2
    (tmp_path / "e" / "config.json").write_text(json.dumps(cfg))
    from models.base import IncompatibleModelError

    with pytest.raises(IncompatibleModelError, match="3 members"):
        load_detector(tmp_path / "e")
    with pytest.raises(Exception, match="n_members"):
        VRAE(**TINY, n_members=0).fit(X)


def test_training_improves_validation_elbo(sine_vrae):
    _, det = sine_vrae
    h = det.history_
    assert h[-1]["val_loss"] < h[0]["val_loss"]
    assert det.n_epochs_ == len(h) and det.fit_seconds_ >= 0


def test_fit_is_deterministic_on_cpu():
    X = _sines(48, T=16, C=2)
    a = VRAE(**TINY, noise_std=0.1, sparsity=0.01).fit(X).score(X[:5])
    b = VRAE(**TINY, noise_std=0.1, sparsity=0.01).fit(X).score(X[:5])
    for c in a:
        np.testing.assert_array_equal(a[c], b[c], err_msg=c)
    c2 = VRAE(**{**TINY, "seed": 1}).fit(X).score(X[:5])
    assert not np.array_equal(a["reconstruction_error"], c2["reconstruction_error"])


def test_any_window_shape_and_window_length_check():
    for T, C in ((7, 1), (33, 3)):
        X = _sines(24, T=T, C=C)
        det = get_detector("vrae")(**TINY).fit(X)
        assert det.score(X).n == 24
        assert det.transform(X).shape == (24, 3)
        assert det.reconstruct(X[:2]).shape == (2, T, C)
    with pytest.raises(Exception, match="steps"):
        det.score(_sines(2, T=8, C=3))


def test_without_attention_and_lstm_ae(tmp_path):
    X = _sines(32)
    det = VRAE(**{**TINY, "attention": False}).fit(X)
    det.save(tmp_path / "v")
    np.testing.assert_allclose(load_detector(tmp_path / "v").score(X)["latent_cluster"], det.score(X)["latent_cluster"])
    ae = get_detector("lstm-ae")(hidden_size=8, latent_dim=3, epochs=2, device="cpu").fit(X)
    s = ae.score(X)
    assert set(s) == {"reconstruction_error", "reconstruction_mse"}
    assert ae.reconstruct(X[:2]).shape == X[:2].shape


def test_vrae_svm_supervised_variant():
    X = np.concatenate([_sines(40), -_sines(40, seed=1)])
    y = np.r_[np.zeros(40), np.ones(40)]
    m = VRAESVM(VRAE(**TINY)).fit(X, y)
    d = m.decision_function(X)
    assert d[y == 1].mean() > d[y == 0].mean()


@pytest.mark.gpu
def test_vrae_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    X = _sines(64)
    det = VRAE(**{**TINY, "device": "cuda"}).fit(X)
    s = det.score(X)
    assert np.isfinite(s["reconstruction_probability"]).all()
    s2 = det.score(X[:7])
    np.testing.assert_allclose(s2["reconstruction_error"], s["reconstruction_error"][:7], rtol=1e-3, atol=1e-5)
