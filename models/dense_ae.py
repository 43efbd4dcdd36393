"""A plain dense autoencoder for tabular data, and the torch plumbing the tabular deep
detectors share (DAGMM, Deep SVDD, OC-NN, AAE, WAE).

The anomaly score is the reconstruction error (mean squared error over features).

Examples
--------
>>> import numpy as np
>>> from models.dense_ae import DenseAE
>>> X = np.random.default_rng(0).normal(size=(64, 4))
>>> det = DenseAE(hidden=(8,), latent_dim=2, epochs=2, device="cpu").fit(X)
>>> det.score(X[:3])["recon_mse"].shape
(3,)
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from models.base import Component, InputError, register
from models.torch_base import TorchDetector, progress, seed_everything, seeded_generator

ACTIVATIONS = ("tanh", "relu", "leaky_relu", "sigmoid", "elu")


def activation(name: str):
    import torch.nn as nn

    try:
        return {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU}[name]()
    except KeyError:
        raise InputError(f"unknown activation {name!r}; use one of {ACTIVATIONS}") from None


def mlp(sizes: Sequence[int], act: str = "tanh", last_act: str | None = None, bias: bool = True,
        dropout: float = 0.0, dropout_after: int | None = None):
    """``Linear`` layers ``sizes[0] → ... → sizes[-1]`` with ``act`` between them.

    ``dropout`` is inserted after the activation of hidden layer ``dropout_after`` (0-based;
    default: after every hidden layer) — active in ``train()`` mode only.
    """
    import torch.nn as nn

    layers: list[Any] = []
    n = len(sizes) - 1
    for i in range(n):
        layers.append(nn.Linear(int(sizes[i]), int(sizes[i + 1]), bias=bias))
        if i < n - 1:
            layers.append(activation(act))
            if dropout and (dropout_after is None or dropout_after == i):
                layers.append(nn.Dropout(dropout))
        elif last_act:
            layers.append(activation(last_act))
    return nn.Sequential(*layers)


def minibatches(n: int, batch_size: int, generator, shuffle: bool = True) -> Iterator[Any]:
    """Index tensors of consecutive minibatches of ``range(n)`` (shuffled with ``generator``)."""
    import torch

    idx = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    bs = max(1, int(batch_size))
    for i in range(0, n, bs):
        yield idx[i : i + bs]


def fit_reconstruction(encode, decode, Xt, opt, epochs, batch_size: int, generator, sched=None) -> list[float]:
    """Train ``decode(encode(x))`` to reconstruct ``Xt`` (sum of squared errors per row, mean over the
    minibatch) with ``opt`` over the epochs of the iterable ``epochs``; ``sched`` steps once per epoch.
    Returns the mean minibatch loss of each epoch."""
    hist = []
    for _ in epochs:
        tot, nb = 0.0, 0
        for idx in minibatches(len(Xt), batch_size, generator):
            xb = Xt[idx]
            loss = ((decode(encode(xb)) - xb) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        if sched is not None:
            sched.step()
        hist.append(tot / max(nb, 1))
    return hist


def gcn_l1(X):
    """Global contrast normalisation (L1) per row: subtract the row mean, divide by the mean |x|
    (as Ruff et al. 2018 preprocess images). Works on numpy arrays and torch tensors."""
    Xc = X - X.mean(1, keepdims=True) if isinstance(X, np.ndarray) else X - X.mean(1, keepdim=True)
    s = abs(Xc).mean(1, keepdims=True) if isinstance(X, np.ndarray) else Xc.abs().mean(1, keepdim=True)
    return Xc / (s + 1e-8)


class TabularTorchDetector(TorchDetector):
    """Shared fit/score plumbing for the tabular torch detectors.

    Subclasses implement ``_build_module(meta)``, ``_train(X_tensor, generator)`` (the
    training loop; the module is in ``train()`` mode) and ``_score_tensor(X_tensor) ->
    dict[str, Tensor]`` (called under ``no_grad`` in ``eval()`` mode). Optional
    ``_after_fit(X_tensor)`` computes post-training statistics (centres, GMM parameters).
    """

    score_chunk = 65536

    def _prepare_fit(self, X) -> tuple[Any, Any]:
        import torch

        X = self._validate(X, fitting=True)
        if len(X) < 2:
            raise InputError(f"{self.name}: needs at least 2 training rows, got {len(X)}")
        seed_everything(int(getattr(self, "seed", 0)))
        self.n_features_in_ = int(X.shape[1])
        dev = self._device()
        Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
        return Xt, seeded_generator(int(getattr(self, "seed", 0)))

    def fit(self, X, y=None):
        import torch

        Xt, gen = self._prepare_fit(X)
        self.module_meta_ = self._initial_meta(Xt)
        self.module_ = self._build_module(self.module_meta_).to(Xt.device)
        self.module_.train()
        self._train(Xt, gen)
        self.module_.eval()
        with torch.no_grad():
            self._after_fit(Xt)
        return self

    def _initial_meta(self, Xt) -> dict[str, Any]:
        return {"n_features": int(Xt.shape[1])}

    def _after_fit(self, Xt) -> None:
        pass

    def _epochs(self, n_epochs: int, desc: str | None = None):
        if not getattr(self, "verbose", False):
            return range(int(n_epochs))
        return progress(range(int(n_epochs)), desc=desc or self.name, leave=False)

    def _score(self, X) -> dict[str, np.ndarray]:
        import torch

        self.module_.eval()
        Xt = torch.as_tensor(X, dtype=torch.float32, device=self._device())
        parts: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for i in range(0, len(Xt), self.score_chunk):
                out = self._score_tensor(Xt[i : i + self.score_chunk])
                for k, v in out.items():
                    parts.setdefault(k, []).append(v.detach().double().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def _contributions(self, X) -> np.ndarray:
        """Squared reconstruction error per feature, ``(decoder(encoder(x)) - x)^2`` (the autoencoders,
        whose ``recon_mse`` is its mean): used by the detectors that set ``can_explain``."""
        import torch

        m = self.module_
        m.eval()
        Xt = torch.as_tensor(X, dtype=torch.float32, device=self._device())
        with torch.no_grad():
            parts = [((m.decoder(m.encoder(xb)) - xb) ** 2).double().cpu().numpy()
                     for xb in (Xt[i : i + self.score_chunk] for i in range(0, len(Xt), self.score_chunk))]
        return np.concatenate(parts)


class _AE:
    """Encoder/decoder module factory (kept tiny so saved models rebuild from JSON meta)."""

    @staticmethod
    def build(n_features: int, hidden: Sequence[int], latent_dim: int, act: str, out_act: str | None = None,
              bias: bool = True):
        import torch.nn as nn

        enc = mlp([n_features, *hidden, latent_dim], act, bias=bias)
        dec = mlp([latent_dim, *reversed(list(hidden)), n_features], act, last_act=out_act, bias=bias)
        m = nn.Module()
        m.encoder, m.decoder = enc, dec
        return m


@register
class DenseAE(TabularTorchDetector):
    """Dense autoencoder; score = per-row mean squared reconstruction error.

    Parameters
    ----------
    hidden
        Hidden layer widths of the encoder (the decoder mirrors them).
    latent_dim
        Bottleneck width.
    activation
        Hidden activation (tanh, relu, leaky_relu, sigmoid, elu).
    epochs, batch_size, lr, weight_decay
        Adam training settings.
    seed, device, verbose
        Reproducibility, ``"auto"``/``"cpu"``/``"cuda"``, progress bar.
    """

    name = "dense-ae"
    input_kind = "tabular"
    components = (Component("recon_mse", "mean squared reconstruction error"),)
    can_explain = True  # contributions: squared reconstruction error per feature
    _contract_params = {"hidden": [8], "latent_dim": 2, "epochs": 2, "device": "cpu"}

    def __init__(self, hidden: Sequence[int] = (64, 32), latent_dim: int = 8, activation: str = "tanh",
                 epochs: int = 50, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0,
                 seed: int = 0, device: str = "auto", verbose: bool = False):
        self.hidden = list(hidden)
        self.latent_dim = latent_dim
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def _initial_meta(self, Xt):
        return {"n_features": int(Xt.shape[1]), "hidden": [int(h) for h in self.hidden],
                "latent_dim": int(self.latent_dim), "activation": self.activation}

    def _build_module(self, meta):
        return _AE.build(meta["n_features"], meta["hidden"], meta["latent_dim"], meta["activation"])

    def _train(self, Xt, gen):
        import torch

        m = self.module_
        opt = torch.optim.Adam(m.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        fit_reconstruction(m.encoder, m.decoder, Xt, opt, self._epochs(self.epochs), self.batch_size, gen)

    def _score_tensor(self, Xt):
        m = self.module_
        return {"recon_mse": ((m.decoder(m.encoder(Xt)) - Xt) ** 2).mean(1)}
