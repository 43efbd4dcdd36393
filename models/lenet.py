"""LeNet-type CNN encoder/decoder and image preprocessing shared by Deep SVDD and OC-NN.

Ruff et al. (ICML 2018) use, for MNIST, a bias-free LeNet-type encoder::

    conv 5x5, 8 filters -> BN (eps 1e-4, affine=False) -> leaky ReLU -> maxpool 2
    conv 5x5, 4 filters -> BN -> leaky ReLU -> maxpool 2
    dense -> rep_dim (32)

and pretrain it as the encoder of an autoencoder whose decoder mirrors it (upsampling and
transposed convolutions, sigmoid output). Both modules take *flattened* square images
``(n, side * side)`` (anomon's tabular rows, as MNIST is stored) and reshape internally, so
the detectors keep ``input_kind = "tabular"``. ``side`` must be a multiple of 4.

Preprocessing (``preprocess="gcn"``): global contrast normalisation (L1) of each image, then
min-max scaling with the min and max of the normalised *training* (normal) data, i.e. the
per-class constants of Ruff et al.

Examples
--------
>>> import torch
>>> enc = lenet_encoder(8, rep_dim=16)
>>> dec = lenet_decoder(8, rep_dim=16)
>>> z = enc(torch.rand(3, 64))
>>> tuple(z.shape), tuple(dec(z).shape)
((3, 16), (3, 64))
>>> image_side(784)
28
"""
from __future__ import annotations

import math
from typing import Any

from models.base import InputError
from models.dense_ae import gcn_l1

NETWORKS = ("mlp", "lenet")


def image_side(n_features: int) -> int:
    """Side of the square image whose flattened size is ``n_features`` (a multiple of 4)."""
    side = math.isqrt(int(n_features))
    if side * side != int(n_features) or side % 4:
        raise InputError(f"network='lenet' needs flattened square images with a side that is a multiple of 4 "
                         f"(e.g. 784 = 28x28 features), got {n_features} features")
    return side


def check_network(network: str, who: str) -> None:
    if network not in NETWORKS:
        raise InputError(f"{who}: network must be one of {NETWORKS}, got {network!r}")


def lenet_encoder(side: int, rep_dim: int = 32, channels: tuple[int, int] = (8, 4), bn_eps: float = 1e-4):
    """Bias-free LeNet-type encoder: ``(n, side*side) -> (n, rep_dim)``."""
    import torch.nn as nn

    c1, c2 = (int(c) for c in channels)
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, c1, 5, padding=2, bias=False), nn.BatchNorm2d(c1, eps=bn_eps, affine=False),
        nn.LeakyReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2, bias=False), nn.BatchNorm2d(c2, eps=bn_eps, affine=False),
        nn.LeakyReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, int(rep_dim), bias=False),
    )


def lenet_decoder(side: int, rep_dim: int = 32, channels: tuple[int, int] = (8, 4), bn_eps: float = 1e-4):
    """Mirror of :func:`lenet_encoder`: ``(n, rep_dim) -> (n, side*side)`` in (0, 1), bias-free."""
    import torch.nn as nn

    c1, c2 = (int(c) for c in channels)
    q = side // 4
    return nn.Sequential(
        nn.Linear(int(rep_dim), c2 * q * q, bias=False), nn.Unflatten(1, (c2, q, q)),
        nn.BatchNorm2d(c2, eps=bn_eps, affine=False), nn.LeakyReLU(), nn.Upsample(scale_factor=2),
        nn.ConvTranspose2d(c2, c1, 5, padding=2, bias=False), nn.BatchNorm2d(c1, eps=bn_eps, affine=False),
        nn.LeakyReLU(), nn.Upsample(scale_factor=2),
        nn.ConvTranspose2d(c1, 1, 5, padding=2, bias=False), nn.Sigmoid(), nn.Flatten(),
    )


class GCNPrep:
    """Mixin: ``preprocess`` hyperparameter (None or "gcn") with min-max constants ``prep_min_``,
    ``prep_max_`` learned on the training data."""

    preprocess: str | None

    def _check_prep(self) -> None:
        if self.preprocess not in (None, "none", "gcn"):
            raise InputError(f"{self.name}: preprocess must be None or 'gcn', got {self.preprocess!r}")

    def _fit_prep(self, Xt) -> Any:
        if self.preprocess == "gcn":
            g = gcn_l1(Xt)
            self.prep_min_, self.prep_max_ = float(g.min()), float(g.max())
        return self._prep(Xt)

    def _prep(self, Xt) -> Any:
        if self.preprocess == "gcn":
            return (gcn_l1(Xt) - self.prep_min_) / max(self.prep_max_ - self.prep_min_, 1e-12)
        return Xt
