"""OC-NN: one-class neural network (Chalapathy, Menon and Chawla, 2018).

Objective (one hidden layer ``h = g(V x)``, output ``y_hat = <w, h>``)::

    min_{w, V, r}  1/2 ||w||^2 + 1/2 ||V||_F^2 + 1/nu * mean(max(0, r - y_hat)) - r

optimised by back-propagation for ``w, V``, with ``r`` set after every epoch to the
``nu``-quantile of ``{y_hat_n}`` (Algorithm 1). Inputs can first pass through the encoder of
an autoencoder pretrained on the same data (``pretrain_epochs``), as in the paper: a dense one
(``network="mlp"``) or the LeNet-type CNN of Deep SVDD for images (``network="lenet"``,
:mod:`models.lenet`). The encoder is then frozen (``freeze_encoder=True``) or trained on
with the OC-NN objective, end to end.

Decision score ``S = y_hat - r`` (``>= 0`` normal); anomon's score is ``r - y_hat`` so that
higher means more anomalous.

Examples
--------
>>> import numpy as np
>>> from models.ocnn import OCNN
>>> X = np.random.default_rng(0).normal(size=(64, 4))
>>> det = OCNN(hidden=8, epochs=2, pretrain_epochs=1, ae_hidden=(6,), ae_latent=3, device="cpu").fit(X)
>>> det.score(X[:2])["ocnn"].shape
(2,)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import Component, InputError, register
from models.dense_ae import TabularTorchDetector, _AE, fit_reconstruction, minibatches
from models.lenet import GCNPrep, check_network, image_side, lenet_decoder, lenet_encoder


def _build(meta):
    import torch.nn as nn

    m = nn.Module()
    n_in = meta["n_features"]
    if meta["ae_latent"] and meta.get("network", "mlp") == "lenet":
        m.encoder = lenet_encoder(meta["side"], meta["ae_latent"])
        m.decoder = lenet_decoder(meta["side"], meta["ae_latent"])
        n_in = meta["ae_latent"]
    elif meta["ae_latent"]:
        ae = _AE.build(meta["n_features"], meta["ae_hidden"], meta["ae_latent"], meta["ae_activation"])
        m.encoder, m.decoder = ae.encoder, ae.decoder
        n_in = meta["ae_latent"]
    m.V = nn.Linear(n_in, meta["hidden"], bias=False)
    m.w = nn.Linear(meta["hidden"], 1, bias=False)
    return m


@register
class OCNN(GCNPrep, TabularTorchDetector):
    """One-class neural network.

    Parameters
    ----------
    nu
        Upper bound on the fraction of training points outside (``r`` = ``nu``-quantile).
    hidden
        Hidden units of ``V``.
    g
        Hidden activation: ``"linear"``, ``"sigmoid"`` (paper) or ``"relu"``; or ``"rbf"``: Gaussian
        units ``h_j = exp(-||z - v_j||^2 / (2 s^2))`` whose centres ``v_j`` (the rows of ``V``) start
        at training points and are learned, so that ``y_hat`` is an RBF-kernel expansion (the kernel
        OC-SVM counterpart of the linear case); ``||V||^2`` is then not penalised (centres are
        positions, not weights).
    rbf_bandwidth
        ``g="rbf"``: ``s`` as a multiple of the median distance between training features / sqrt(2)
        (scale-free; 1.0 is the median heuristic, smaller values give narrower units).
    pretrain_epochs, ae_hidden, ae_latent, ae_activation
        Autoencoder feature extractor (frozen after pretraining); ``pretrain_epochs=0`` feeds
        the raw features.
    network
        Autoencoder type: ``"mlp"`` (dense, ``ae_hidden``/``ae_activation``) or ``"lenet"``: the
        bias-free LeNet-type CNN of Deep SVDD (:mod:`models.lenet`, ``ae_latent`` = its
        representation size) on flattened square images such as MNIST's 784 pixels.
    preprocess
        ``None`` or ``"gcn"``: global contrast normalisation (L1) and min-max scaling with the
        training data's constants, as for Deep SVDD.
    epochs, batch_size, lr
        Adam settings for ``w, V``.
    pretrain_lr, weight_decay
        Adam settings of the autoencoder pretraining (``pretrain_lr=None``: ``lr``); the weight
        decay also applies to a fine-tuned encoder.
    freeze_encoder
        ``True``: the pretrained encoder is a fixed feature extractor (only ``V, w`` learn);
        ``False``: the OC-NN objective also trains the encoder, end to end (the paper's point:
        the hidden representation is driven by the one-class objective).
    """

    name = "ocnn"
    input_kind = "tabular"
    components = (Component("ocnn", "r - y_hat: distance below the one-class boundary"),)
    _contract_params = {"hidden": 8, "epochs": 2, "pretrain_epochs": 1, "ae_hidden": [6], "ae_latent": 3,
                        "device": "cpu"}

    def __init__(self, nu: float = 0.1, hidden: int = 32, g: str = "sigmoid", epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, pretrain_epochs: int = 20,
                 ae_hidden: Sequence[int] = (64,), ae_latent: int = 16, ae_activation: str = "tanh",
                 network: str = "mlp", preprocess: str | None = None, pretrain_lr: float | None = None,
                 weight_decay: float = 0.0, freeze_encoder: bool = True, rbf_bandwidth: float = 1.0,
                 seed: int = 0, device: str = "auto", verbose: bool = False):
        self.nu = nu
        self.rbf_bandwidth = rbf_bandwidth
        self.network = network
        self.preprocess = preprocess
        self.pretrain_lr = pretrain_lr
        self.weight_decay = weight_decay
        self.freeze_encoder = freeze_encoder
        self.hidden = hidden
        self.g = g
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.pretrain_epochs = pretrain_epochs
        self.ae_hidden = list(ae_hidden)
        self.ae_latent = ae_latent
        self.ae_activation = ae_activation
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        if not 0 < self.nu < 1:
            raise InputError(f"ocnn: nu must be in (0, 1), got {self.nu}")
        if self.g not in ("linear", "sigmoid", "relu", "rbf"):
            raise InputError(f"ocnn: g must be linear, sigmoid, relu or rbf, got {self.g!r}")
        if not float(self.rbf_bandwidth) > 0:
            raise InputError(f"ocnn: rbf_bandwidth must be > 0 (a multiple of the median heuristic), got {self.rbf_bandwidth}")
        check_network(self.network, "ocnn")
        self._check_prep()
        use_ae = bool(self.pretrain_epochs)
        meta = {"n_features": int(Xt.shape[1]), "hidden": int(self.hidden),
                "ae_hidden": [int(h) for h in self.ae_hidden], "ae_latent": int(self.ae_latent) if use_ae else 0,
                "ae_activation": self.ae_activation, "network": self.network}
        if self.network == "lenet" and use_ae:
            meta["side"] = image_side(Xt.shape[1])
        return meta

    def _build_module(self, meta):
        return _build(meta)

    def _features(self, x):
        m = self.module_
        return m.encoder(x) if hasattr(m, "encoder") else x

    def _head(self, z):
        import torch

        if self.g == "rbf":
            d2 = torch.cdist(z, self.module_.V.weight).pow(2)
            return self.module_.w(torch.exp(-d2 / (2.0 * float(self.rbf_scale_) ** 2))).squeeze(1)
        h = self.module_.V(z)
        if self.g == "sigmoid":
            h = torch.sigmoid(h)
        elif self.g == "relu":
            h = torch.relu(h)
        return self.module_.w(h).squeeze(1)

    def _yhat(self, x):
        return self._head(self._features(self._prep(x)))

    def _train(self, Xt, gen):
        Xt = self._fit_prep(Xt)
        if hasattr(self.module_, "encoder"):
            self._pretrain(Xt, gen)
        self._fit_head(Xt, gen)

    def _pretrain(self, Xt, gen):
        """Autoencoder pretraining of ``encoder``/``decoder`` on the (preprocessed) data."""
        import torch

        m = self.module_
        opt = torch.optim.Adam([*m.encoder.parameters(), *m.decoder.parameters()],
                               lr=self.pretrain_lr or self.lr, weight_decay=self.weight_decay)
        fit_reconstruction(m.encoder, m.decoder, Xt, opt, self._epochs(self.pretrain_epochs, "ocnn pretrain"),
                           self.batch_size, gen)
        for p in m.decoder.parameters():
            p.requires_grad_(False)
        m.decoder.eval()

    def _fit_head(self, Xt, gen):
        """The OC-NN objective on ``V, w`` (and the encoder unless frozen); sets ``r_``."""
        import torch

        m = self.module_
        tune = hasattr(m, "encoder") and not self.freeze_encoder
        if hasattr(m, "encoder") and self.freeze_encoder:
            for p in m.encoder.parameters():
                p.requires_grad_(False)
            m.encoder.eval()  # frozen: batch norm uses its running statistics from now on

        def all_features():
            if hasattr(m, "encoder"):
                m.encoder.eval()
            with torch.no_grad():
                Z = torch.cat([self._features(Xt[i : i + self.score_chunk]) for i in range(0, len(Xt), self.score_chunk)])
            if tune:
                m.encoder.train()
            return Z

        Z = None if tune else all_features()  # frozen features: computed once
        rbf = self.g == "rbf"
        if rbf:
            self._init_rbf(all_features() if Z is None else Z, gen)
        params = [*m.V.parameters(), *m.w.parameters()]
        opt = torch.optim.Adam([{"params": params}, *([{"params": list(m.encoder.parameters()),
                                                        "weight_decay": self.weight_decay}] if tune else [])],
                               lr=self.lr)
        r = torch.tensor(0.0, device=Xt.device)
        hist = []
        for _ in self._epochs(self.epochs):
            tot, nb = 0.0, 0
            for idx in minibatches(len(Xt), self.batch_size, gen):
                yh = self._head(self._features(Xt[idx]) if tune else Z[idx])
                loss = (0.5 * (m.w.weight**2).sum() + (0.0 if rbf else 0.5 * (m.V.weight**2).sum())
                        + (1.0 / self.nu) * torch.clamp(r - yh, min=0).mean() - r)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                nb += 1
            with torch.no_grad():
                r = torch.quantile(self._head(all_features() if tune else Z), self.nu)
            hist.append(tot / max(nb, 1))
        self.r_ = float(r)
        self.loss_history_ = np.asarray(hist)

    def _init_rbf(self, Z, gen):
        """Centres at ``hidden`` distinct training points (repeating beyond 2,000); ``rbf_scale_`` =
        ``rbf_bandwidth`` x the median pairwise distance of (up to 2,000) training features / sqrt(2)."""
        import torch

        n = len(Z)
        pick = torch.randperm(n, generator=gen)[: min(n, 2000)].to(Z.device)
        S = Z[pick]
        with torch.no_grad():
            self.module_.V.weight.copy_(S[torch.arange(int(self.hidden), device=Z.device) % len(S)])
            d = torch.pdist(S.double()) if len(S) > 1 else torch.ones(1, dtype=torch.float64)
            self.rbf_scale_ = max(float(self.rbf_bandwidth) * float(d.median()) / np.sqrt(2.0), 1e-6)

    def _score_tensor(self, Xt):
        return {"ocnn": (float(self.r_) - self._yhat(Xt)).double()}
