"""DAGMM numerics: energy (log-sum-exp, Cholesky), covariance penalty, graph, eval mode."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.dagmm import DAGMM, cov_diag_penalty, dagmm_loss, forward, gmm_energy, gmm_params


def _naive_energy(z, phi, mu, cov):
    """Textbook formula: -log sum_k phi_k exp(-1/2 m_k) / sqrt(|2 pi Sigma_k|)."""
    out = []
    for zi in z:
        tot = 0.0
        for k in range(len(phi)):
            d = zi - mu[k]
            m = float(d @ np.linalg.inv(cov[k]) @ d)
            tot += phi[k] * math.exp(-0.5 * m) / math.sqrt(np.linalg.det(2 * math.pi * cov[k]))
        out.append(-math.log(tot))
    return np.array(out)


def _random_gmm(seed, n=7, d=3, k=2):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    gamma = rng.dirichlet(np.ones(k), size=n)
    return z, gamma


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energy_matches_naive_formula(seed):
    z, gamma = _random_gmm(seed)
    zt, gt = torch.tensor(z), torch.tensor(gamma)
    phi, mu, cov = gmm_params(zt, gt)
    e = gmm_energy(zt, phi, mu, cov, eps=0.0).numpy()
    ref = _naive_energy(z, phi.numpy(), mu.numpy(), cov.numpy())
    np.testing.assert_allclose(e, ref, rtol=1e-9, atol=1e-9)


def test_gmm_params_are_weighted_moments():
    z, gamma = _random_gmm(3, n=20, d=2, k=3)
    phi, mu, cov = (t.numpy() for t in gmm_params(torch.tensor(z), torch.tensor(gamma)))
    np.testing.assert_allclose(phi, gamma.mean(0))
    for k in range(3):
        w = gamma[:, k]
        m = (w[:, None] * z).sum(0) / w.sum()
        np.testing.assert_allclose(mu[k], m)
        c = ((w[:, None, None] * np.einsum("ni,nj->nij", z - m, z - m)).sum(0)) / w.sum()
        np.testing.assert_allclose(cov[k], c, atol=1e-12)


def test_energy_is_finite_far_from_every_component():
    # exp(-1/2 m) underflows to 0 for every component; the naive log(0) is inf, log-sum-exp is not.
    phi = torch.tensor([0.5, 0.5], dtype=torch.float64)
    mu = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    cov = (torch.eye(2, dtype=torch.float64) * 1e-4)[None].repeat(2, 1, 1)
    z = torch.tensor([[50.0, -50.0]], dtype=torch.float64)
    e = gmm_energy(z, phi, mu, cov, eps=0.0)
    assert torch.isfinite(e).all() and float(e[0]) > 1e6
    with np.errstate(divide="ignore"):
        naive = -np.log(np.exp(-0.5 * 5e7) * 0.5 / (2 * math.pi * 1e-4))
    assert np.isinf(naive)


def test_cholesky_with_diagonal_jitter_on_singular_covariance():
    # z with a constant coordinate: its covariance is singular; eps on the diagonal keeps the
    # Cholesky factor defined, and the diagonal penalty is sum 1 / (Sigma_jj + eps).
    z = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], dtype=torch.float64)
    gamma = torch.ones(4, 1, dtype=torch.float64)
    phi, mu, cov = gmm_params(z, gamma)
    assert float(torch.linalg.det(cov[0])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(RuntimeError):
        torch.linalg.cholesky(cov)
    eps = 1e-6
    e = gmm_energy(z, phi, mu, cov, eps=eps)
    assert torch.isfinite(e).all()
    var0 = float(cov[0, 0, 0])  # 1.25
    expect = 1.0 / (var0 + eps) + 1.0 / eps
    assert float(cov_diag_penalty(cov, eps)) == pytest.approx(expect, rel=1e-12)
    # log-det from the Cholesky diagonal equals log det of the jittered matrix
    L = torch.linalg.cholesky(cov[0] + eps * torch.eye(2, dtype=torch.float64))
    assert float(2 * torch.log(torch.diagonal(L)).sum()) == pytest.approx(math.log((var0 + eps) * eps), rel=1e-9)


def test_loss_keeps_its_graph_and_trains_every_part():
    torch.manual_seed(0)
    det = DAGMM(hidden=[6], latent_dim=1, n_gmm=2, epochs=1, device="cpu")
    meta = det._initial_meta(torch.zeros(1, 5))
    m = det._build_module(meta)
    x = torch.rand(32, 5)
    xr, z, gamma = forward(m, x)
    loss, parts = dagmm_loss(x, xr, z, gamma, 0.1, 0.005)
    assert loss.requires_grad and loss.grad_fn is not None
    assert all(p.requires_grad for p in parts.values())
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert float(m.estimator[0].weight.grad.abs().sum()) > 0  # energy reaches the estimation net


def test_eval_mode_has_no_dropout():
    X = np.random.default_rng(0).random((200, 5))
    det = DAGMM(hidden=[6], latent_dim=1, n_gmm=2, dropout=0.9, epochs=3, batch_size=64, lr=1e-3,
                device="cpu").fit(X)
    assert not det.module_.training
    a = det.score(X[:50])["energy"]
    b = det.score(X[:50])["energy"]
    np.testing.assert_array_equal(a, b)
    # the same network in train mode is stochastic (dropout 0.9), so the check above has teeth
    det.module_.train()
    with torch.no_grad():
        xt = torch.as_tensor(X[:50], dtype=torch.float32)
        g1, g2 = forward(det.module_, xt)[2], forward(det.module_, xt)[2]
    det.module_.eval()
    assert not torch.equal(g1, g2)


def test_fit_learns_gmm_over_training_set():
    X = np.random.default_rng(1).random((300, 4))
    det = DAGMM(hidden=[6], latent_dim=1, n_gmm=3, epochs=2, batch_size=128, device="cpu").fit(X)
    assert det.phi_.shape == (3,) and det.mu_.shape == (3, 3) and det.cov_.shape == (3, 3, 3)
    assert det.phi_.sum() == pytest.approx(1.0)
    assert np.isfinite(det.loss_history_).all() and len(det.loss_history_) == 2
