"""Autoencoders for images given as flat vectors (MNIST: 784 = 28 x 28 pixels in [0, 1]).

Three registered detectors, all ``input_kind = "tabular"`` (an ``(n, d)`` array):

* ``image-ae`` - a dense autoencoder with 4 or 6 linear layers (2 or 3 in the encoder,
  mirrored in the decoder), latent size ``latent``, ReLU or Tanh hidden activations and a
  sigmoid output;
* ``image-conv-ae`` - a convolutional autoencoder (two stride-2 convolutions, a linear
  bottleneck, two transposed convolutions, sigmoid output) over ``image_shape``;
* ``image-vae`` - a dense variational autoencoder with a Bernoulli decoder.

Inputs are scaled with one global min-max pair learned at fit time (MNIST stays as it
is); the sigmoid output then matches the [0, 1] range.

Score components (higher = more anomalous), so a study can pick the one that separates
its validation anomalies best:

* ``mse`` - mean squared reconstruction error over the pixels;
* ``topk_se`` - mean of the ``topk`` largest squared pixel errors (a localised defect, such
  as a stroke that is missing or added, is not diluted by the many well-reconstructed
  background pixels);
* ``image-vae`` adds ``neg_elbo`` (negative ELBO, Monte Carlo over ``score_samples``
  fixed-seed draws) and ``recon_nll`` (the negative reconstruction log-probability of An
  & Cho 2015, averaged over the same draws).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.random((64, 16)).astype(np.float32)
>>> det = DenseImageAE(latent=4, layers=4, hidden=(16, 8), epochs=2, batch_size=32).fit(X)
>>> list(det.score(X[:3]))
['mse', 'topk_se']
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Component, InputError, register
from models.torch_base import TorchDetector, progress, seed_everything, seeded_generator, torch_threads

__all__ = ["DenseImageAE", "ConvImageAE", "ImageVAE"]

_ACTS = ("relu", "tanh")


def _act(name: str):
    from torch import nn

    if name not in _ACTS:
        raise InputError(f"activation must be one of {_ACTS}, got {name!r}")
    return nn.ReLU() if name == "relu" else nn.Tanh()


def _dense_stack(sizes: list[int], act: str, last_act: bool):
    from torch import nn

    mods: list[Any] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_act:
            mods.append(_act(act))
    return mods


def _hidden_sizes(layers: int, hidden: Any) -> list[int]:
    """Hidden widths of the encoder: 4 layers -> one hidden layer, 6 layers -> two."""
    if layers not in (4, 6):
        raise InputError(f"layers must be 4 or 6 (linear layers in encoder + decoder), got {layers!r}")
    h = list(hidden) if hidden is not None else [512, 256]
    return h[-1:] if layers == 4 else h[-2:]


class _ImageBase(TorchDetector):
    """Shared training loop (Adam, mini-batches, fixed-seed shuffling) and scoring."""

    input_kind = "tabular"
    data_kind = "images"  # flattened images (rows of h*w pixels): `compare` on feature rows skips them
    is_variational = False

    # subclasses: _net_meta(d) -> dict, _build_module(meta), _loss(net, xb, gen) -> tensor
    def _net_meta(self, d: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(self, net, xb, gen):
        import torch.nn.functional as F

        out = net(xb)
        if self.loss == "bce":
            return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), xb.clamp(0, 1), reduction="sum") / len(xb)
        return F.mse_loss(out, xb, reduction="sum") / len(xb)

    def _scale(self, X: np.ndarray) -> np.ndarray:
        lo, hi = float(self.scale_[0]), float(self.scale_[1])
        return ((X - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None):
        import torch

        X = self._validate(X, fitting=True)
        if self.loss not in ("mse", "bce"):
            raise InputError(f"{self.name}: loss must be 'mse' or 'bce', got {self.loss!r}")
        n, d = X.shape
        self.scale_ = np.array([X.min(), X.max()], dtype=np.float64)
        Xs = torch.from_numpy(self._scale(X))
        meta = self._net_meta(d)
        self.module_meta_ = meta
        with torch_threads(self.threads):
            seed_everything(self.seed)
            net = self._build_module(meta).to(self._device())
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = seeded_generator(self.seed)
            bs = max(1, min(int(self.batch_size), n))
            self.loss_history_ = []
            net.train()
            bar = progress(range(int(self.epochs)), desc=self.name, leave=False) if self.progress else range(int(self.epochs))
            for _ in bar:
                perm = torch.randperm(n, generator=gen)
                tot = 0.0
                for i in range(0, n, bs):
                    xb = Xs[perm[i:i + bs]].to(self._device())
                    loss = self._loss(net, xb, gen)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(xb)
                self.loss_history_.append(tot / n)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{tot / n:.4f}")
            net.eval()
        self.module_ = net
        self.n_features_in_ = int(d)
        return self

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """Reconstructions in the input's scale (the mean output for the VAE)."""
        import torch

        self._check_fitted()
        X = self._validate(X, fitting=False)
        lo, hi = float(self.scale_[0]), float(self.scale_[1])
        out = []
        with torch_threads(self.threads), torch.no_grad():
            Xs = torch.from_numpy(self._scale(X))
            for i in range(0, len(Xs), 4096):
                out.append(self._mean_recon(Xs[i:i + 4096].to(self._device())).cpu().numpy())
        R = np.concatenate(out).astype(np.float64)
        return R * (hi - lo if hi > lo else 1.0) + lo

    def _mean_recon(self, xb):
        return self.module_(xb)

    #: contributions: squared reconstruction error per pixel (in the min-max scaled units ``mse`` averages)
    can_explain = True

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch_threads(self.threads), torch.no_grad():
            Xs = torch.from_numpy(self._scale(X))
            for i in range(0, len(Xs), 4096):
                xb = Xs[i:i + 4096].to(self._device())
                out.append(((xb - self._mean_recon(xb)) ** 2).double().cpu().numpy())
        return np.concatenate(out)

    def _err_scores(self, xs, rec) -> dict[str, Any]:
        se = (xs - rec) ** 2
        k = max(1, min(int(self.topk), se.shape[1]))
        return {"mse": se.mean(1), "topk_se": se.topk(k, dim=1).values.mean(1)}

    def _score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        parts: dict[str, list[np.ndarray]] = {}
        with torch_threads(self.threads), torch.no_grad():
            Xs = torch.from_numpy(self._scale(X))
            for i in range(0, len(Xs), 4096):
                xb = Xs[i:i + 4096].to(self._device())
                for k, v in self._batch_scores(xb).items():
                    parts.setdefault(k, []).append(v.double().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def _batch_scores(self, xb) -> dict[str, Any]:
        return self._err_scores(xb, self.module_(xb))


_ERR_COMPONENTS = (
    Component("mse", "mean squared pixel reconstruction error"),
    Component("topk_se", "mean of the topk largest squared pixel errors"),
)


@register
class DenseImageAE(_ImageBase):
    """Dense autoencoder: ``layers`` = 4 or 6 linear layers, ReLU/Tanh, sigmoid output."""

    name = "image-ae"
    components = _ERR_COMPONENTS
    _contract_params = {"latent": 3, "layers": 4, "hidden": [16, 8], "epochs": 3, "batch_size": 32, "progress": False}

    def __init__(self, layers: int = 6, latent: int = 32, activation: str = "relu", hidden: Any = (512, 256),
                 loss: str = "mse", epochs: int = 30, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, topk: int = 20, seed: int = 0, device: str = "cpu",
                 threads: int | None = None, progress: bool = True):
        self.layers = layers
        self.latent = latent
        self.activation = activation
        self.hidden = list(hidden) if hidden is not None else None
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.topk = topk
        self.seed = seed
        self.device = device
        self.threads = threads
        self.progress = progress

    def _net_meta(self, d: int) -> dict[str, Any]:
        _act(self.activation)
        return {"d": int(d), "hidden": _hidden_sizes(int(self.layers), self.hidden), "latent": int(self.latent),
                "activation": self.activation}

    def _build_module(self, meta: dict[str, Any]):
        from torch import nn

        enc = [meta["d"], *meta["hidden"], meta["latent"]]
        dec = enc[::-1]
        return nn.Sequential(
            *_dense_stack(enc, meta["activation"], last_act=True),
            *_dense_stack(dec, meta["activation"], last_act=False),
            nn.Sigmoid(),
        )


def _conv_net(meta: dict[str, Any]):
    import torch
    from torch import nn

    h, w = meta["image_shape"]
    H, W = -(-h // 4) * 4, -(-w // 4) * 4  # pad to multiples of 4 (two stride-2 stages)
    c1, c2 = meta["channels"]

    class ConvAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(
                nn.Conv2d(1, c1, 3, 2, 1), _act(meta["activation"]),
                nn.Conv2d(c1, c2, 3, 2, 1), _act(meta["activation"]),
                nn.Flatten(), nn.Linear(c2 * (H // 4) * (W // 4), meta["latent"]),
            )
            self.dec = nn.Sequential(
                nn.Linear(meta["latent"], c2 * (H // 4) * (W // 4)), _act(meta["activation"]),
                nn.Unflatten(1, (c2, H // 4, W // 4)),
                nn.ConvTranspose2d(c2, c1, 4, 2, 1), _act(meta["activation"]),
                nn.ConvTranspose2d(c1, 1, 4, 2, 1), nn.Sigmoid(),
            )

        def forward(self, x):
            img = x.view(-1, 1, h, w)
            img = torch.nn.functional.pad(img, (0, W - w, 0, H - h))
            out = self.dec(self.enc(img))[:, :, :h, :w]
            return out.reshape(len(x), h * w)

    return ConvAE()


@register
class ConvImageAE(_ImageBase):
    """Convolutional autoencoder over ``image_shape`` images (given flat)."""

    name = "image-conv-ae"
    components = _ERR_COMPONENTS
    _contract_params = {"image_shape": [1, 5], "channels": [4, 8], "latent": 3, "epochs": 3, "batch_size": 32,
                        "progress": False}

    def __init__(self, image_shape: Any = (28, 28), channels: Any = (32, 64), latent: int = 32,
                 activation: str = "relu", loss: str = "mse", epochs: int = 10, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, topk: int = 20, seed: int = 0, device: str = "cpu",
                 threads: int | None = None, progress: bool = True):
        self.image_shape = list(image_shape)
        self.channels = list(channels)
        self.latent = latent
        self.activation = activation
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.topk = topk
        self.seed = seed
        self.device = device
        self.threads = threads
        self.progress = progress

    def _net_meta(self, d: int) -> dict[str, Any]:
        h, w = (int(v) for v in self.image_shape)
        if h * w != d:
            raise InputError(f"{self.name}: rows have {d} values, image_shape {h}x{w} needs {h * w}")
        _act(self.activation)
        return {"image_shape": [h, w], "channels": [int(c) for c in self.channels], "latent": int(self.latent),
                "activation": self.activation}

    def _build_module(self, meta: dict[str, Any]):
        return _conv_net(meta)


def _vae_net(meta: dict[str, Any]):
    from torch import nn

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            enc = [meta["d"], *meta["hidden"]]
            self.enc = nn.Sequential(*_dense_stack(enc, meta["activation"], last_act=True))
            self.mu = nn.Linear(enc[-1], meta["latent"])
            self.logvar = nn.Linear(enc[-1], meta["latent"])
            dec = [meta["latent"], *meta["hidden"][::-1], meta["d"]]
            self.dec = nn.Sequential(*_dense_stack(dec, meta["activation"], last_act=False))  # logits

        def encode(self, x):
            h = self.enc(x)
            return self.mu(h), self.logvar(h).clamp(-12, 8)

        def forward(self, x):
            mu, _ = self.encode(x)
            return self.dec(mu).sigmoid()

    return VAE()


@register
class ImageVAE(_ImageBase):
    """Dense VAE, Bernoulli decoder; scores: reconstruction errors of the mean, negative ELBO and
    reconstruction NLL (both Monte Carlo over ``score_samples`` fixed-seed draws)."""

    name = "image-vae"
    is_variational = True
    components = _ERR_COMPONENTS + (
        Component("neg_elbo", "negative ELBO (Bernoulli decoder), Monte Carlo"),
        Component("recon_nll", "negative reconstruction log-probability (An & Cho 2015), Monte Carlo"),
    )
    _contract_params = {"latent": 3, "hidden": [16, 8], "epochs": 3, "batch_size": 32, "score_samples": 2,
                        "progress": False}

    def __init__(self, latent: int = 32, hidden: Any = (512, 256), activation: str = "relu", beta: float = 1.0,
                 epochs: int = 30, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
                 topk: int = 20, score_samples: int = 8, seed: int = 0, device: str = "cpu",
                 threads: int | None = None, progress: bool = True):
        self.latent = latent
        self.hidden = list(hidden)
        self.activation = activation
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.topk = topk
        self.score_samples = score_samples
        self.seed = seed
        self.device = device
        self.threads = threads
        self.progress = progress

    loss = "bce"

    def _net_meta(self, d: int) -> dict[str, Any]:
        _act(self.activation)
        return {"d": int(d), "hidden": [int(h) for h in self.hidden], "latent": int(self.latent),
                "activation": self.activation}

    def _build_module(self, meta: dict[str, Any]):
        return _vae_net(meta)

    @staticmethod
    def _terms(net, xb, eps):
        import torch.nn.functional as F

        mu, logvar = net.encode(xb)
        z = mu + (0.5 * logvar).exp() * eps
        logits = net.dec(z)
        nll = F.binary_cross_entropy_with_logits(logits, xb.clamp(0, 1), reduction="none").sum(1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        return nll, kl

    def _loss(self, net, xb, gen):
        import torch

        eps = torch.randn((len(xb), net.mu.out_features), generator=gen).to(xb.device)
        nll, kl = self._terms(net, xb, eps)
        return (nll + self.beta * kl).mean()

    def _batch_scores(self, xb) -> dict[str, Any]:
        import torch

        net = self.module_
        out = self._err_scores(xb, net(xb))
        L = max(1, int(self.score_samples))
        # per-sample fixed noise (seeded by position in nothing but the draw index): the same
        # draws for every row, so scores do not depend on how the input is batched
        g = seeded_generator(self.seed + 12345)
        eps_all = torch.randn((L, net.mu.out_features), generator=g).to(xb.device)
        nll_sum = torch.zeros(len(xb), device=xb.device)
        elbo_sum = torch.zeros(len(xb), device=xb.device)
        for i in range(L):
            eps = eps_all[i].expand(len(xb), -1)
            nll, kl = self._terms(net, xb, eps)
            nll_sum += nll
            elbo_sum += nll + kl
        out["neg_elbo"] = elbo_sum / L
        out["recon_nll"] = nll_sum / L
        return out
