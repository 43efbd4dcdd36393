"""A plain LSTM autoencoder: the VRAE's baseline, of the same size.

Bidirectional LSTM encoder -> deterministic code ``h`` (``latent_dim``) -> LSTM decoder whose
initial state is a function of ``h`` and which reads ``h`` at every step -> linear output.
Trained on mean squared error (Adam, gradient clipping, early stopping on a held-out fraction,
optional denoising). Same standardisation, fit loop and options as :mod:`models.vrae`.

Scores (higher = more anomalous): ``reconstruction_error`` (mean |x - x_hat|) and
``reconstruction_mse`` (mean (x - x_hat)^2).

Examples
--------
>>> import numpy as np
>>> from models import get_detector
>>> X = np.random.default_rng(0).normal(size=(32, 12, 1)).astype(np.float32)
>>> det = get_detector("lstm-ae")(hidden_size=8, latent_dim=2, epochs=1, device="cpu").fit(X)
>>> det.score(X[:2])["reconstruction_error"].shape
(2,)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Component, register
from models.vrae import _patchify, _SeqAEBase, n_steps


def _build_lstm_ae_net(meta: dict[str, Any]):
    import torch
    from torch import nn

    class LSTMAENet(nn.Module):
        def __init__(self, n_channels: int, hidden: int, latent: int, layers: int, patch: int):
            super().__init__()
            self.C, self.H, self.Z, self.layers, self.P = n_channels, hidden, latent, layers, patch
            self.encoder = nn.LSTM(n_channels * patch, hidden, num_layers=layers, batch_first=True, bidirectional=True)
            self.to_code = nn.Linear(2 * hidden, latent)
            self.code_to_state = nn.Linear(latent, 2 * layers * hidden)
            self.decoder = nn.LSTM(latent, hidden, num_layers=layers, batch_first=True)
            self.out = nn.Linear(hidden, n_channels * patch)

        def encode(self, x):
            _, (hn, _) = self.encoder(_patchify(x, self.P))
            return self.to_code(torch.cat([hn[-2], hn[-1]], dim=-1))

        def forward(self, x):
            B, T, _ = x.shape
            S = n_steps(T, self.P)
            h = self.encode(x)
            s = torch.tanh(self.code_to_state(h)).view(B, 2, self.layers, self.H).permute(1, 2, 0, 3)
            o, _ = self.decoder(h[:, None, :].expand(B, S, self.Z), (s[0].contiguous(), s[1].contiguous()))
            return self.out(o).view(B, S * self.P, self.C)[:, :T]

    return LSTMAENet(int(meta["n_channels"]), int(meta["hidden_size"]), int(meta["latent_dim"]),
                     int(meta.get("num_layers", 1)), int(meta.get("patch_len", 1)))


@register
class LSTMAutoencoder(_SeqAEBase):
    """Plain (deterministic) LSTM autoencoder; parameters as in :class:`models.vrae.VRAE`."""

    name = "lstm-ae"
    #: chosen on development splits of the ECG protocols (docs/results/default_components.json)
    default_component = "reconstruction_mse"
    components = (
        Component("reconstruction_error", "mean |x - x_hat| over steps and channels"),
        Component("reconstruction_mse", "mean (x - x_hat)^2 over steps and channels"),
    )
    _contract_params = {"hidden_size": 8, "latent_dim": 4, "epochs": 2, "batch_size": 32, "device": "cpu"}

    def __init__(
        self,
        hidden_size: int = 64,
        latent_dim: int = 8,
        num_layers: int = 1,
        patch_len: int = 4,
        epochs: int = 150,
        batch_size: int = 32,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.0,
        grad_clip: float = 5.0,
        noise_std: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int = 20,
        seed: int = 0,
        device: str = "auto",
        n_threads: int | None = None,
        score_batch_size: int = 256,
    ):
        self.hidden_size = hidden_size
        self.latent_dim = latent_dim
        self.num_layers = num_layers
        self.patch_len = patch_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.noise_std = noise_std
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.score_batch_size = score_batch_size

    # the shared fit loop reads these
    kl_anneal_epochs = 0

    def _meta(self, C: int) -> dict[str, Any]:
        return {"n_channels": int(C), "hidden_size": int(self.hidden_size), "latent_dim": int(self.latent_dim),
                "num_layers": int(self.num_layers), "patch_len": int(self.patch_len)}

    def _new_module(self, n_channels: int):
        return _build_lstm_ae_net(self._meta(n_channels))

    def _new_module_from_meta(self, meta):
        return _build_lstm_ae_net(meta)

    def _batch_loss(self, net, x_in, x, beta, gen):
        loss = ((net(x_in) - x) ** 2).mean()
        return loss, loss

    def _score_std(self, Xs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(Xs).to(self._device())
            d = self.module_(x) - x
            return {"reconstruction_error": d.abs().mean(dim=(1, 2)).cpu().double().numpy(),
                    "reconstruction_mse": (d**2).mean(dim=(1, 2)).cpu().double().numpy()}

    def _cells_std(self, Xs: np.ndarray) -> np.ndarray:
        """Squared reconstruction error per step and channel (standardised units): the terms of ``reconstruction_mse``."""
        import torch

        with torch.no_grad():
            x = torch.from_numpy(Xs).to(self._device())
            return ((self.module_(x) - x) ** 2).cpu().double().numpy()

    def transform(self, X) -> np.ndarray:
        """Codes ``h`` of windows, shape ``(n, latent_dim)``."""
        import torch

        self._check_fitted()
        X = self._standardise(self._validate(X, fitting=False))
        with torch.no_grad():
            return self.module_.encode(torch.from_numpy(X).to(self._device())).cpu().double().numpy()

    def reconstruct(self, X) -> np.ndarray:
        import torch

        self._check_fitted()
        X = self._standardise(self._validate(X, fitting=False))
        with torch.no_grad():
            rec = self.module_(torch.from_numpy(X).to(self._device())).cpu().numpy()
        return rec * self.scale_ + self.mean_
