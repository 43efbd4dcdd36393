"""DAGMM: Deep Autoencoding Gaussian Mixture Model (Zong et al., ICLR 2018).

* **Compression network**: a dense autoencoder; ``z = [z_c, relative Euclidean distance,
  cosine similarity]`` where the last two compare ``x`` with its reconstruction ``x'``.
* **Estimation network**: an MLP with dropout and a softmax giving memberships ``gamma``
  over ``K`` mixture components.
* **GMM**: ``phi, mu, Sigma`` from ``gamma`` and ``z`` (per batch while training; over the
  whole training set once trained). Sample energy
  ``E(z) = -log sum_k phi_k N(z; mu_k, Sigma_k)`` computed stably with log-sum-exp and a
  Cholesky factor (log-determinant from its diagonal; Mahalanobis term by a triangular solve).
* **Objective**: ``mean ||x - x'||^2 + lambda_energy * mean E(z) + lambda_cov * P(Sigma)``,
  ``P = sum_k sum_j 1 / Sigma_kjj``; the loss keeps its autograd graph throughout.

Scoring runs in ``eval()`` mode (no dropout), so it is deterministic and batch-invariant.

Examples
--------
>>> import numpy as np, torch
>>> z = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
>>> phi = torch.tensor([1.0], dtype=torch.float64)
>>> mu = torch.zeros(1, 2, dtype=torch.float64)
>>> cov = torch.eye(2, dtype=torch.float64)[None]
>>> e = gmm_energy(z, phi, mu, cov, eps=0.0)
>>> [round(float(v), 4) for v in e]    # -log N(z; 0, I) = log(2 pi) + |z|^2 / 2
[1.8379, 2.8379]
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.base import Component, register
from models.dense_ae import TabularTorchDetector, minibatches, mlp

_EPS_NORM = 1e-12


# --------------------------------------------------------------------------- GMM maths
def gmm_params(z, gamma):
    """Mixture weights, means, covariances from memberships ``gamma`` (N, K) and ``z`` (N, d)."""
    import torch

    nk = gamma.sum(0)  # (K,)
    phi = nk / gamma.shape[0]
    mu = (gamma.T @ z) / nk[:, None]  # (K, d)
    zc = z[:, None, :] - mu[None, :, :]  # (N, K, d)
    cov = torch.einsum("nk,nki,nkj->kij", gamma, zc, zc) / nk[:, None, None]
    return phi, mu, cov


def gmm_energy(z, phi, mu, cov, eps: float = 1e-6):
    """Sample energy ``-log sum_k phi_k N(z; mu_k, cov_k + eps I)`` for every row of ``z``.

    Stable: Cholesky factor for the log-determinant and the Mahalanobis term, log-sum-exp
    over components. Returns a tensor of shape (N,).
    """
    import torch

    K, d = mu.shape
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    L = torch.linalg.cholesky(cov + eps * eye)  # (K, d, d)
    diff = (z[:, None, :] - mu[None, :, :]).permute(1, 2, 0)  # (K, d, N)
    sol = torch.linalg.solve_triangular(L, diff, upper=False)  # (K, d, N)
    maha = (sol**2).sum(1).T  # (N, K)
    logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    log_norm = -0.5 * (maha + d * math.log(2.0 * math.pi) + logdet[None, :])
    log_w = torch.log(phi.clamp_min(1e-30))[None, :]
    return -torch.logsumexp(log_w + log_norm, dim=1)


def cov_diag_penalty(cov, eps: float = 1e-6):
    """``P(Sigma) = sum_k sum_j 1 / Sigma_kjj`` (with the same ``eps`` added to the diagonal)."""
    import torch

    return (1.0 / (torch.diagonal(cov, dim1=-2, dim2=-1) + eps)).sum()


# --------------------------------------------------------------------------- network
def _build(meta: dict[str, Any]):
    import torch.nn as nn

    n, hid, lat, act = meta["n_features"], meta["hidden"], meta["latent_dim"], meta["activation"]
    m = nn.Module()
    m.encoder = mlp([n, *hid, lat], act)
    m.decoder = mlp([lat, *reversed(hid), n], act)
    m.estimator = mlp([lat + 2, *meta["est_hidden"], meta["n_gmm"]], act, dropout=meta["dropout"])
    return m


def forward(m, x):
    """(x', z, gamma) of the DAGMM module ``m`` for input ``x``."""
    import torch
    import torch.nn.functional as F

    zc = m.encoder(x)
    xr = m.decoder(zc)
    rel = (x - xr).norm(dim=1) / x.norm(dim=1).clamp_min(_EPS_NORM)
    cos = F.cosine_similarity(x, xr, dim=1, eps=1e-8)
    z = torch.cat([zc, rel[:, None], cos[:, None]], dim=1)
    gamma = torch.softmax(m.estimator(z), dim=1)
    return xr, z, gamma


def dagmm_loss(x, xr, z, gamma, lambda_energy: float, lambda_cov: float, eps: float = 1e-6):
    """(total loss, parts) for a batch; the total keeps its graph (no ``.item()`` inside)."""
    import torch

    recon = ((x - xr) ** 2).sum(1).mean()
    z64, g64 = z.double(), gamma.double()
    phi, mu, cov = gmm_params(z64, g64)
    energy = gmm_energy(z64, phi, mu, cov, eps).mean()
    pen = cov_diag_penalty(cov, eps)
    total = recon + (lambda_energy * energy + lambda_cov * pen).to(recon.dtype)
    return total, {"recon": recon, "energy": energy, "cov_penalty": pen}


@register
class DAGMM(TabularTorchDetector):
    """Deep Autoencoding Gaussian Mixture Model; score = sample energy.

    Parameters
    ----------
    hidden
        Encoder hidden widths (decoder mirrors them). Paper: KDDCUP (60, 30, 10), Thyroid
        (12, 4), Arrhythmia (10,).
    latent_dim
        Width of ``z_c`` (paper: 1, or 2 for Arrhythmia and KDDCUP-Rev).
    est_hidden
        Estimation network hidden widths (paper: (10,)).
    n_gmm
        Mixture components K (paper: 4 KDDCUP, 2 others).
    dropout
        Dropout after the estimation network's first hidden layer (paper: 0.5); off in eval.
    lambda_energy, lambda_cov
        λ1 = 0.1 and λ2 = 0.005 in the paper.
    epochs, batch_size, lr, weight_decay
        Adam settings (paper: lr 1e-4, batch 1024; 200 epochs KDDCUP, 20000 Thyroid,
        10000 Arrhythmia, 400 KDDCUP-Rev).
    eps
        Diagonal jitter for the Cholesky factorisation.
    grad_clip
        Max gradient norm (``None`` = no clipping).
    """

    name = "dagmm"
    input_kind = "tabular"
    components = (Component("energy", "sample energy under the learned GMM (-log likelihood)"),)
    _contract_params = {"hidden": [6], "latent_dim": 1, "epochs": 3, "batch_size": 32, "lr": 1e-3, "device": "cpu"}

    def __init__(self, hidden: Sequence[int] = (60, 30, 10), latent_dim: int = 1, est_hidden: Sequence[int] = (10,),
                 n_gmm: int = 4, activation: str = "tanh", dropout: float = 0.5, lambda_energy: float = 0.1,
                 lambda_cov: float = 0.005, epochs: int = 200, batch_size: int = 1024, lr: float = 1e-4,
                 weight_decay: float = 0.0, eps: float = 1e-6, grad_clip: float | None = 5.0,
                 seed: int = 0, device: str = "auto", verbose: bool = False):
        self.hidden = list(hidden)
        self.latent_dim = latent_dim
        self.est_hidden = list(est_hidden)
        self.n_gmm = n_gmm
        self.activation = activation
        self.dropout = dropout
        self.lambda_energy = lambda_energy
        self.lambda_cov = lambda_cov
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.eps = eps
        self.grad_clip = grad_clip
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        return {"n_features": int(Xt.shape[1]), "hidden": [int(h) for h in self.hidden],
                "latent_dim": int(self.latent_dim), "est_hidden": [int(h) for h in self.est_hidden],
                "n_gmm": int(self.n_gmm), "activation": self.activation, "dropout": float(self.dropout)}

    def _build_module(self, meta):
        return _build(meta)

    def _train(self, Xt, gen):
        import torch

        m = self.module_
        opt = torch.optim.Adam(m.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        hist = []
        for _ in self._epochs(self.epochs):
            tot, nb = 0.0, 0
            for idx in minibatches(len(Xt), self.batch_size, gen):
                if len(idx) < 2:
                    continue
                xb = Xt[idx]
                xr, z, gamma = forward(m, xb)
                loss, _ = dagmm_loss(xb, xr, z, gamma, self.lambda_energy, self.lambda_cov, self.eps)
                opt.zero_grad()
                loss.backward()
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(m.parameters(), self.grad_clip)
                opt.step()
                tot += float(loss.detach())
                nb += 1
            hist.append(tot / max(nb, 1))
        self.loss_history_ = np.asarray(hist, dtype=np.float64)

    def _after_fit(self, Xt):
        """GMM parameters over the whole training set, in eval mode (no dropout)."""
        import torch

        K = int(self.n_gmm)
        d = int(self.latent_dim) + 2
        sg = torch.zeros(K, dtype=torch.float64)
        sz = torch.zeros(K, d, dtype=torch.float64)
        zs, gs = [], []
        for i in range(0, len(Xt), self.score_chunk):
            _, z, g = forward(self.module_, Xt[i : i + self.score_chunk])
            z, g = z.double().cpu(), g.double().cpu()
            sg += g.sum(0)
            sz += g.T @ z
            zs.append(z)
            gs.append(g)
        mu = sz / sg[:, None]
        cov = torch.zeros(K, d, d, dtype=torch.float64)
        for z, g in zip(zs, gs):
            zc = z[:, None, :] - mu[None]
            cov += torch.einsum("nk,nki,nkj->kij", g, zc, zc)
        cov /= sg[:, None, None]
        self.phi_ = (sg / len(Xt)).numpy()
        self.mu_ = mu.numpy()
        self.cov_ = cov.numpy()

    def _score_tensor(self, Xt):
        import torch

        _, z, _ = forward(self.module_, Xt)
        phi = torch.as_tensor(np.asarray(self.phi_), dtype=torch.float64)
        mu = torch.as_tensor(np.asarray(self.mu_), dtype=torch.float64)
        cov = torch.as_tensor(np.asarray(self.cov_), dtype=torch.float64)
        return {"energy": gmm_energy(z.double().cpu(), phi, mu, cov, self.eps)}


#: Paper architectures (Zong et al. 2018, section 4.3), keyed by dataset.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "kddcup": {"hidden": [60, 30, 10], "latent_dim": 1, "est_hidden": [10], "n_gmm": 4, "epochs": 200},
    "thyroid": {"hidden": [12, 4], "latent_dim": 1, "est_hidden": [10], "n_gmm": 2, "epochs": 20000},
    "arrhythmia": {"hidden": [10], "latent_dim": 2, "est_hidden": [10], "n_gmm": 2, "epochs": 10000},
    "kddcup-rev": {"hidden": [60, 30, 10], "latent_dim": 2, "est_hidden": [10], "n_gmm": 2, "epochs": 400},
}
