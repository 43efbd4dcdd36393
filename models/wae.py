"""Wasserstein autoencoder with an MMD penalty (WAE-MMD, Tolstikhin et al. 2018).

Loss per minibatch: ``mean ||x - G(Q(x))||^2 + lambda * MMD(Q(x), z_prior)`` with
``z_prior ~ N(0, I)`` and the inverse multiquadratics kernel
``k(a, b) = C / (C + ||a - b||^2)``, summed over ``C = 2 d sigma^2 * s`` for scales
``s`` in (0.1, 0.2, 0.5, 1, 2, 5, 10) (the authors' choice), with the unbiased estimator.

Scores: ``recon_mse`` (primary) and ``latent_nll`` (``||z||^2 / 2``).

Examples
--------
>>> import torch
>>> a = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
>>> float(mmd_imq(a, a)) < 1e-6      # identical samples: (nearly) zero
True
>>> import numpy as np
>>> from models.wae import WAE
>>> X = np.random.default_rng(0).normal(size=(64, 4))
>>> WAE(hidden=(8,), latent_dim=2, epochs=2, device="cpu").fit(X).score(X[:2])["recon_mse"].shape
(2,)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.aae import _LatentAEBase
from models.base import register
from models.dense_ae import _AE, minibatches

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd_imq(zq, zp, sigma2: float = 1.0, scales=SCALES):
    """Unbiased MMD^2 estimate between samples ``zq`` and ``zp`` (n, d) with IMQ kernels."""
    import torch

    n, d = zq.shape
    if n < 2:
        return zq.sum() * 0.0
    dqq = ((zq[:, None] - zq[None]) ** 2).sum(-1)
    dpp = ((zp[:, None] - zp[None]) ** 2).sum(-1)
    dqp = ((zq[:, None] - zp[None]) ** 2).sum(-1)
    off = 1.0 - torch.eye(n, dtype=zq.dtype, device=zq.device)
    total = zq.sum() * 0.0
    for s in scales:
        C = 2.0 * d * sigma2 * s
        kqq = C / (C + dqq)
        kpp = C / (C + dpp)
        kqp = C / (C + dqp)
        total = total + ((kqq * off).sum() + (kpp * off).sum()) / (n * (n - 1)) - 2.0 * kqp.mean()
    return total


@register
class WAE(_LatentAEBase):
    """Wasserstein autoencoder (MMD, IMQ kernel).

    Parameters
    ----------
    hidden, latent_dim, activation, out_activation
        Encoder widths (decoder mirrors), latent size, activations.
    mmd_weight
        λ of the MMD penalty.
    epochs, batch_size, lr
        Adam settings.
    """

    name = "wae"
    _contract_params = {"hidden": [8], "latent_dim": 2, "epochs": 2, "device": "cpu"}

    def __init__(self, hidden: Sequence[int] = (64, 32), latent_dim: int = 8, activation: str = "leaky_relu",
                 out_activation: str | None = None, mmd_weight: float = 10.0, epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, seed: int = 0, device: str = "auto",
                 verbose: bool = False):
        self.hidden = list(hidden)
        self.latent_dim = latent_dim
        self.activation = activation
        self.out_activation = out_activation
        self.mmd_weight = mmd_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        return {"n_features": int(Xt.shape[1]), "hidden": [int(h) for h in self.hidden],
                "latent_dim": int(self.latent_dim), "activation": self.activation, "out_act": self.out_activation}

    def _build_module(self, meta):
        return _AE.build(meta["n_features"], meta["hidden"], meta["latent_dim"], meta["activation"], meta["out_act"])

    def _train(self, Xt, gen):
        import torch

        m = self.module_
        opt = torch.optim.Adam(m.parameters(), lr=self.lr)
        hist = []
        for _ in self._epochs(self.epochs):
            tot, nb = np.zeros(2), 0
            for idx in minibatches(len(Xt), self.batch_size, gen):
                xb = Xt[idx]
                z = m.encoder(xb)
                rec = ((m.decoder(z) - xb) ** 2).sum(1).mean()
                zp = torch.randn(z.shape, generator=gen).to(xb.device)
                mmd = mmd_imq(z, zp)
                loss = rec + self.mmd_weight * mmd
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += [float(rec.detach()), float(mmd.detach())]
                nb += 1
            hist.append(tot / max(nb, 1))
        self.loss_history_ = np.asarray(hist)
