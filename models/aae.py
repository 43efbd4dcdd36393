"""Adversarial autoencoder (Makhzani et al. 2016) for anomaly detection.

A deterministic encoder ``q(z|x)`` and a decoder are trained to reconstruct; a discriminator
on ``z`` tells samples of the prior ``N(0, I)`` from encoded training rows (Jensen-Shannon /
GAN loss), and the encoder is trained to fool it, so the aggregated posterior matches the
prior. Each minibatch: reconstruction step, discriminator step, generator (encoder) step.

Scores: ``recon_mse`` (reconstruction error, the primary score) and ``latent_nll``
(``||z||^2 / 2``, negative log prior density up to a constant).

Examples
--------
>>> import numpy as np
>>> from models.aae import AAE
>>> X = np.random.default_rng(0).normal(size=(64, 4))
>>> det = AAE(hidden=(8,), latent_dim=2, epochs=2, device="cpu").fit(X)
>>> sorted(det.score(X[:2]))
['latent_nll', 'recon_mse']
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import Component, register
from models.dense_ae import TabularTorchDetector, _AE, minibatches, mlp


def _build(meta):
    m = _AE.build(meta["n_features"], meta["hidden"], meta["latent_dim"], meta["activation"], meta.get("out_act"))
    if "disc_hidden" in meta:
        m.disc = mlp([meta["latent_dim"], *meta["disc_hidden"], 1], "leaky_relu")
    return m


class _LatentAEBase(TabularTorchDetector):
    input_kind = "tabular"
    components = (
        Component("recon_mse", "mean squared reconstruction error"),
        Component("latent_nll", "||z||^2 / 2 under the N(0, I) prior"),
    )
    #: contributions: squared reconstruction error per feature (what ``recon_mse`` averages; ``latent_nll``
    #: is not attributed to features)
    can_explain = True

    def _score_tensor(self, Xt):
        m = self.module_
        z = m.encoder(Xt)
        return {"recon_mse": ((m.decoder(z) - Xt) ** 2).mean(1), "latent_nll": 0.5 * (z**2).sum(1)}


@register
class AAE(_LatentAEBase):
    """Adversarial autoencoder.

    Parameters
    ----------
    hidden, latent_dim, activation, out_activation
        Encoder widths (decoder mirrors), latent size, hidden activation, output activation
        (``None`` or ``"sigmoid"`` for data in [0, 1]).
    disc_hidden
        Discriminator widths.
    adv_weight
        Weight of the generator (encoder-fools-discriminator) loss.
    epochs, batch_size, lr, disc_lr
        Adam settings.
    """

    name = "aae"
    _contract_params = {"hidden": [8], "latent_dim": 2, "epochs": 2, "device": "cpu"}

    def __init__(self, hidden: Sequence[int] = (64, 32), latent_dim: int = 8, activation: str = "leaky_relu",
                 out_activation: str | None = None, disc_hidden: Sequence[int] = (64, 64), adv_weight: float = 1.0,
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, disc_lr: float = 1e-4,
                 seed: int = 0, device: str = "auto", verbose: bool = False):
        self.hidden = list(hidden)
        self.latent_dim = latent_dim
        self.activation = activation
        self.out_activation = out_activation
        self.disc_hidden = list(disc_hidden)
        self.adv_weight = adv_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.disc_lr = disc_lr
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        return {"n_features": int(Xt.shape[1]), "hidden": [int(h) for h in self.hidden],
                "latent_dim": int(self.latent_dim), "activation": self.activation, "out_act": self.out_activation,
                "disc_hidden": [int(h) for h in self.disc_hidden]}

    def _build_module(self, meta):
        return _build(meta)

    def _train(self, Xt, gen):
        import torch
        import torch.nn.functional as F

        m = self.module_
        ae_params = [*m.encoder.parameters(), *m.decoder.parameters()]
        opt_ae = torch.optim.Adam(ae_params, lr=self.lr)
        opt_d = torch.optim.Adam(m.disc.parameters(), lr=self.disc_lr)
        opt_g = torch.optim.Adam(m.encoder.parameters(), lr=self.disc_lr)
        hist = []
        for _ in self._epochs(self.epochs):
            tot, nb = np.zeros(3), 0
            for idx in minibatches(len(Xt), self.batch_size, gen):
                xb = Xt[idx]
                # 1. reconstruction
                rec = ((m.decoder(m.encoder(xb)) - xb) ** 2).sum(1).mean()
                opt_ae.zero_grad()
                rec.backward()
                opt_ae.step()
                # 2. discriminator: prior samples = 1, encoded = 0
                z_fake = m.encoder(xb).detach()
                z_real = torch.randn(z_fake.shape, generator=gen).to(xb.device)
                d_real, d_fake = m.disc(z_real), m.disc(z_fake)
                d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                # 3. generator: the encoder fools the discriminator
                d_gen = m.disc(m.encoder(xb))
                g_loss = self.adv_weight * F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                tot += [float(rec.detach()), float(d_loss.detach()), float(g_loss.detach())]
                nb += 1
            hist.append(tot / max(nb, 1))
        self.loss_history_ = np.asarray(hist)
