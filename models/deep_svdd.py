"""Deep SVDD (Ruff et al., ICML 2018): one-class and soft-boundary.

A bias-free network ``phi`` maps the data into a hypersphere around a centre ``c``:

* **one-class**: minimise ``mean ||phi(x) - c||^2`` (+ weight decay);
* **soft-boundary**: minimise ``R^2 + 1/nu * mean max(0, ||phi(x) - c||^2 - R^2)``; ``R`` is
  updated after each epoch (past ``warmup_epochs``) as the ``(1 - nu)``-quantile of the
  distances.

``c`` is the mean of ``phi(x)`` over the training data from an initial forward pass (after
optional autoencoder pretraining); coordinates too close to 0 are pushed to ``±eps`` to avoid
the trivial solution, as in the paper. No bias terms, bounded activations avoided (leaky
ReLU by default), for the same reason.

Score: ``||phi(x) - c||^2`` (one-class) or ``||phi(x) - c||^2 - R^2`` (soft-boundary).

Examples
--------
>>> import numpy as np
>>> from models.deep_svdd import DeepSVDD
>>> X = np.random.default_rng(0).normal(size=(64, 4))
>>> det = DeepSVDD(hidden=(8,), rep_dim=4, epochs=2, pretrain_epochs=1, device="cpu").fit(X)
>>> det.score(X[:2])["svdd_distance"].shape
(2,)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import Component, InputError, register
from models.dense_ae import TabularTorchDetector, fit_reconstruction, minibatches, mlp
from models.lenet import GCNPrep, check_network, image_side, lenet_decoder, lenet_encoder


def _build(meta):
    import torch.nn as nn

    m = nn.Module()
    if meta.get("network", "mlp") == "lenet":
        m.net = lenet_encoder(meta["side"], meta["rep_dim"])
        if meta.get("with_decoder"):
            m.decoder = lenet_decoder(meta["side"], meta["rep_dim"])
        return m
    sizes = [meta["n_features"], *meta["hidden"], meta["rep_dim"]]
    m.net = mlp(sizes, meta["activation"], bias=False)
    if meta.get("with_decoder"):
        m.decoder = mlp(list(reversed(sizes)), meta["activation"], bias=False)
    return m


def adam(params, lr, weight_decay, milestone):
    """Adam plus a step scheduler (lr x 0.1 after ``milestone`` epochs; None = constant)."""
    import torch

    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(milestone)] if milestone else [], gamma=0.1)
    return opt, sched


@register
class DeepSVDD(GCNPrep, TabularTorchDetector):
    """Deep SVDD, one-class or soft-boundary.

    Parameters
    ----------
    objective
        ``"one-class"`` or ``"soft-boundary"``.
    nu
        Soft-boundary trade-off (fraction of training points allowed outside), in (0, 1].
    network
        ``"mlp"`` (dense, for tabular rows) or ``"lenet"``: Ruff et al.'s bias-free LeNet-type CNN
        (see :mod:`models.lenet`) on flattened square images, e.g. MNIST's 784 pixels;
        ``hidden`` and ``activation`` are then unused.
    hidden, rep_dim, activation
        Bias-free network widths and activation (leaky_relu by default).
    epochs, batch_size, lr, weight_decay
        Adam settings (weight decay = the paper's λ/2 ||W||^2).
    lr_milestone
        Epoch after which the learning rate is divided by 10 (pretraining and training);
        ``None`` keeps it constant.
    pretrain_epochs
        Epochs of autoencoder pretraining (0 = none); the network then starts from the encoder.
    pretrain_lr, pretrain_weight_decay, pretrain_lr_milestone
        Adam settings of the pretraining; ``None`` takes ``lr``, ``weight_decay`` and
        ``lr_milestone`` (Ruff et al. pretrain MNIST with weight decay 0.5e-3 and train with 0.5e-6).
    warmup_epochs
        Soft-boundary: epochs before ``R`` is first updated.
    eps
        Minimum |c_j|.
    preprocess
        ``None`` or ``"gcn"``: per-row global contrast normalisation (L1) followed by min-max
        scaling with the training set's global min and max (Ruff et al.'s image preprocessing).
    """

    name = "deep-svdd"
    input_kind = "tabular"
    components = (Component("svdd_distance", "squared distance to the hypersphere centre (minus R^2 if soft-boundary)"),)
    _contract_params = {"hidden": [8], "rep_dim": 4, "epochs": 2, "pretrain_epochs": 1, "device": "cpu"}

    def __init__(self, objective: str = "one-class", nu: float = 0.1, hidden: Sequence[int] = (64, 32),
                 rep_dim: int = 16, activation: str = "leaky_relu", epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-6, pretrain_epochs: int = 20, warmup_epochs: int = 5,
                 eps: float = 0.1, preprocess: str | None = None, network: str = "mlp",
                 lr_milestone: int | None = None, pretrain_lr: float | None = None,
                 pretrain_weight_decay: float | None = None, pretrain_lr_milestone: int | None = None,
                 seed: int = 0, device: str = "auto", verbose: bool = False):
        self.objective = objective
        self.pretrain_lr = pretrain_lr
        self.pretrain_weight_decay = pretrain_weight_decay
        self.pretrain_lr_milestone = pretrain_lr_milestone
        self.network = network
        self.lr_milestone = lr_milestone
        self.preprocess = preprocess
        self.nu = nu
        self.hidden = list(hidden)
        self.rep_dim = rep_dim
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.pretrain_epochs = pretrain_epochs
        self.warmup_epochs = warmup_epochs
        self.eps = eps
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        if self.objective not in ("one-class", "soft-boundary"):
            raise InputError(f"deep-svdd: objective must be 'one-class' or 'soft-boundary', got {self.objective!r}")
        if not 0 < self.nu <= 1:
            raise InputError(f"deep-svdd: nu must be in (0, 1], got {self.nu}")
        check_network(self.network, "deep-svdd")
        self._check_prep()
        meta = {"n_features": int(Xt.shape[1]), "hidden": [int(h) for h in self.hidden],
                "rep_dim": int(self.rep_dim), "activation": self.activation, "network": self.network}
        if self.network == "lenet":
            meta["side"] = image_side(Xt.shape[1])
        return meta

    def _build_module(self, meta):
        return _build(meta)

    def _pretrain(self, Xt, gen):
        meta = {**self.module_meta_, "with_decoder": True}
        ae = _build(meta).to(Xt.device)
        ae.train()
        opt, sched = adam(ae.parameters(), self.lr if self.pretrain_lr is None else self.pretrain_lr,
                          self.weight_decay if self.pretrain_weight_decay is None else self.pretrain_weight_decay,
                          self.lr_milestone if self.pretrain_lr_milestone is None else self.pretrain_lr_milestone)
        hist = fit_reconstruction(ae.net, ae.decoder, Xt, opt, self._epochs(self.pretrain_epochs, "deep-svdd pretrain"),
                                  self.batch_size, gen, sched)
        self.pretrain_loss_history_ = np.asarray(hist)
        self.module_.net.load_state_dict(ae.net.state_dict())

    def _train(self, Xt, gen):
        import torch

        Xt = self._fit_prep(Xt)
        if self.pretrain_epochs:
            self._pretrain(Xt, gen)
        m = self.module_
        with torch.no_grad():
            m.eval()
            c = torch.cat([m.net(Xt[i : i + self.score_chunk]) for i in range(0, len(Xt), self.score_chunk)]).mean(0)
            m.train()
        c = torch.where(c.abs() < self.eps, torch.where(c < 0, -self.eps, self.eps), c)
        self.c_ = c.detach().cpu().numpy().astype(np.float64)
        R = torch.tensor(0.0, device=Xt.device)
        soft = self.objective == "soft-boundary"
        opt, sched = adam(m.parameters(), self.lr, self.weight_decay, self.lr_milestone)
        hist = []
        for ep in self._epochs(self.epochs):
            tot, nb, dists = 0.0, 0, []
            for idx in minibatches(len(Xt), self.batch_size, gen):
                d = ((m.net(Xt[idx]) - c) ** 2).sum(1)
                if soft:
                    loss = R**2 + (1.0 / self.nu) * torch.clamp(d - R**2, min=0).mean()
                    dists.append(d.detach())
                else:
                    loss = d.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                nb += 1
            sched.step()
            if soft and ep >= self.warmup_epochs:
                R = torch.quantile(torch.cat(dists).sqrt(), 1.0 - self.nu)
            hist.append(tot / max(nb, 1))
        self.radius_ = float(R)
        self.loss_history_ = np.asarray(hist)

    def _score_tensor(self, Xt):
        import torch

        c = torch.as_tensor(np.asarray(self.c_), dtype=torch.float32, device=Xt.device)
        d = ((self.module_.net(self._prep(Xt)) - c) ** 2).sum(1).double()
        if self.objective == "soft-boundary":
            d = d - float(self.radius_) ** 2
        return {"svdd_distance": d}
