"""VRAE: a variational recurrent autoencoder with variational self-attention.

The sliding-window recurrent VAE of Pereira & Silveira (ICMLA 2018, BigComp 2019):

* **encoder**: a bidirectional LSTM over the window (C channels); its final states give
  ``q(z|x) = N(mu_z, diag sigma_z^2)``;
* **variational self-attention** (Bahuleyan et al. 2018): scaled dot-product attention over
  the encoder states gives one deterministic context per step; the context vectors ``c_t``
  are latent variables themselves, ``q(c_t|x) = N(mu_c, diag sigma_c^2)``, with a KL term of
  their own against ``N(0, I)``;
* **decoder**: an LSTM whose initial state is a function of ``z``; at every step it reads
  ``[z, c_t]`` and emits a Gaussian ``p(x_t | z, c_t)`` (mean and log-variance per channel).

Training minimises the negative ELBO with KL annealing (Adam, gradient clipping), with early
stopping on the ELBO of a held-out fraction of the fit data, optional denoising (Gaussian
input corruption) and an optional L1 sparsity penalty on ``mu_z``. Inputs are standardised per
channel with statistics fitted on the training data and saved with the model.

Scores (higher = more anomalous), all computed in eval mode with *common random numbers*
(one fixed bank of L standard-normal draws, derived from ``seed``, shared by every window),
so scoring is deterministic and batch-invariant:

* ``reconstruction_error``: (1/L) sum_l mean_{t,c} |x - mu_x(z_l, c_l)|;
* ``reconstruction_probability``: -(1/L) sum_l log p(x | z_l, c_l) (a negative log-likelihood);
* ``latent_wasserstein``: median over a bank of ``n_wasserstein`` training windows of the
  squared 2-Wasserstein distance between ``q(z|x)`` and ``q(z|x_ref)`` (closed form for
  diagonal Gaussians: ``||mu1 - mu2||^2 + ||sigma1 - sigma2||^2``);
* ``latent_wasserstein_major``: the same median squared W2 distance, but to the training posteriors of
  the *majority mode* only: starting from every training posterior (at most ``major_pool``), keep the
  fraction ``major_keep`` with the lowest median W2 to the current bank, ``major_iters`` times. The
  papers take the largest cluster of the training latent space as the normal class; this matters when
  the training data is contaminated (ECG5000's UCR TRAIN split is 41 % anomalous, and a median over the
  whole bank then sits near a class boundary). Trimming needs no number of clusters and holds while the
  normal windows are the majority; "largest of k k-means clusters" sometimes picked a tight anomalous
  cluster when the normal windows split into several (monitor/experiments/vrae_unsup.py);
* ``latent_cluster``: the training posteriors are clustered with k-means in the W2 geometry
  (k-means on ``[mu, sigma]``: the W2 barycentre of diagonal Gaussians averages mu and sigma);
  score = W2 distance of ``q(z|x)`` to the nearest centre, divided by its training median;
* ``latent_knn``: mean W2 distance of ``q(z|x)`` to its ``n_neighbors`` nearest training
  posteriors, divided by the training median (leave-one-out);
* ``combined``: both views at once, as the papers suggest (method 1 + method 2):
  ``(nll - median) / IQR + combine_weight * (knn - median) / IQR`` of ``reconstruction_probability``
  and ``latent_knn``, with median and IQR of the scores of the training windows held out of the gradient
  steps (``validation_fraction``; every training window when fewer than 32 are held out).

With ``latent_whiten`` (default) the cluster and k-NN distances are measured in standardised latent
coordinates (each dimension divided by the spread of the training latent means), so nearly
collapsed dimensions, which still move for anomalies, are not drowned by the active ones.

Examples
--------
>>> import numpy as np
>>> from models import get_detector
>>> t = np.linspace(0, 2 * np.pi, 16, dtype=np.float32)
>>> X = np.sin(t[None, :, None] + np.random.default_rng(0).uniform(0, 6, (64, 1, 1))).astype(np.float32)
>>> det = get_detector("vrae")(hidden_size=8, latent_dim=2, context_dim=2, epochs=1, device="cpu").fit(X)
>>> sorted(det.score(X[:3]))
['combined', 'latent_cluster', 'latent_knn', 'latent_wasserstein', 'latent_wasserstein_major', 'reconstruction_error', 'reconstruction_probability']
>>> w2_diag_gaussians(np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2))).tolist()
[[2.0]]
"""
from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np

from models.base import Component, InputError, register
from models.torch_base import TorchDetector, progress, seed_everything, seeded_generator, torch_threads


class _FlushDenormal:
    """Flush denormal floats to zero on CPU while fitting/scoring: Adam's second moments of nearly
    unused weights (collapsed latent dimensions) decay into denormals, which x86 computes 10-100x
    slower; without this a fit can slow down tenfold mid-training."""

    def __enter__(self):
        import torch

        self._old = torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_flush_denormal(False)
        return False

log = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)
#: bounds of the decoder's log-variance (soft-clamped), for numerical stability
LOGVAR_MIN, LOGVAR_MAX = -7.0, 4.0
#: squared W2 (whitened units) under which a bank entry is the scored window itself
SELF_MATCH_W2 = 1e-10
#: fewest held-out windows on which ``combined`` is standardised (else: every training window)
MIN_HOLDOUT = 32


def w2_diag_gaussians(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Squared 2-Wasserstein distances between diagonal Gaussians, all pairs.

    ``W2^2(N(m1, diag s1^2), N(m2, diag s2^2)) = ||m1 - m2||^2 + ||s1 - s2||^2``.
    Arguments are ``(n, d)`` and ``(m, d)``; returns ``(n, m)``.
    """
    mu1, sigma1, mu2, sigma2 = (np.asarray(a, dtype=np.float64) for a in (mu1, sigma1, mu2, sigma2))

    def sqd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)

    return sqd(mu1, mu2) + sqd(sigma1, sigma2)


#: A small, fast configuration (streaming demos, long windows such as 1 s of 360 Hz ECG):
#: ``get_detector("vrae")(**FAST_PARAMS)``. Trains on ~2000 windows of 360 x 1 in about a minute on 2 cores.
FAST_PARAMS: dict[str, Any] = {
    "hidden_size": 32, "latent_dim": 8, "context_dim": 4, "patch_len": 8, "epochs": 25, "patience": 5,
    "batch_size": 64, "learning_rate": 3e-3, "kl_anneal_epochs": 5, "n_samples": 8, "n_wasserstein": 128,
    "n_clusters": 64,
}


# --------------------------------------------------------------------------- networks
def _soft_clamp(x, lo: float, hi: float):
    import torch

    mid, half = (hi + lo) / 2.0, (hi - lo) / 2.0
    return mid + half * torch.tanh((x - mid) / half)


def _build_vrae_net(meta: dict[str, Any]):
    import torch
    from torch import nn

    class VRAENet(nn.Module):
        def __init__(self, n_channels: int, hidden: int, latent: int, context: int, attention: bool, layers: int,
                     patch: int):
            super().__init__()
            self.C, self.H, self.Z, self.Dc, self.attention, self.layers, self.P = (
                n_channels, hidden, latent, context, attention, layers, patch)
            self.encoder = nn.LSTM(n_channels * patch, hidden, num_layers=layers, batch_first=True, bidirectional=True)
            self.to_z = nn.Linear(2 * hidden, 2 * latent)
            dec_in = latent
            if attention:
                self.att_q = nn.Linear(2 * hidden, hidden, bias=False)
                self.att_k = nn.Linear(2 * hidden, hidden, bias=False)
                self.to_c = nn.Linear(2 * hidden, 2 * context)
                dec_in += context
            self.z_to_state = nn.Linear(latent, 2 * layers * hidden)
            self.decoder = nn.LSTM(dec_in, hidden, num_layers=layers, batch_first=True)
            self.out = nn.Linear(hidden, 2 * n_channels * patch)

        def encode(self, x):
            """Posterior parameters: (mu_z, logvar_z, mu_c, logvar_c); the c ones are None without attention."""
            h, (hn, _) = self.encoder(_patchify(x, self.P))
            summary = torch.cat([hn[-2], hn[-1]], dim=-1)
            mu_z, logvar_z = self.to_z(summary).chunk(2, dim=-1)
            logvar_z = _soft_clamp(logvar_z, -10.0, 6.0)
            mu_c = logvar_c = None
            if self.attention:
                q, k = self.att_q(h), self.att_k(h)
                a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.H), dim=-1)
                ctx = a @ h
                mu_c, logvar_c = self.to_c(ctx).chunk(2, dim=-1)
                logvar_c = _soft_clamp(logvar_c, -10.0, 6.0)
            return mu_z, logvar_z, mu_c, logvar_c

        def decode(self, z, c, T: int):
            B, S = z.shape[0], n_steps(T, self.P)
            inp = z[:, None, :].expand(B, S, self.Z)
            if c is not None:
                inp = torch.cat([inp, c], dim=-1)
            s = torch.tanh(self.z_to_state(z)).view(B, 2, self.layers, self.H).permute(1, 2, 0, 3)
            o, _ = self.decoder(inp, (s[0].contiguous(), s[1].contiguous()))
            y = self.out(o).view(B, S, 2, self.P, self.C).transpose(2, 3).reshape(B, S * self.P, 2 * self.C)[:, :T]
            mu_x, logvar_x = y.chunk(2, dim=-1)
            return mu_x, _soft_clamp(logvar_x, LOGVAR_MIN, LOGVAR_MAX)

    return VRAENet(int(meta["n_channels"]), int(meta["hidden_size"]), int(meta["latent_dim"]),
                   int(meta["context_dim"]), bool(meta["attention"]), int(meta.get("num_layers", 1)),
                   int(meta.get("patch_len", 1)))


def n_steps(T: int, patch: int) -> int:
    """Recurrent steps for a window of T samples read ``patch`` samples at a time."""
    return -(-T // patch)


def _patchify(x, patch: int):
    """(B, T, C) -> (B, ceil(T/patch), patch*C): consecutive samples side by side; the last
    patch is padded by repeating the last sample."""
    import torch

    if patch == 1:
        return x
    B, T, C = x.shape
    pad = n_steps(T, patch) * patch - T
    if pad:
        x = torch.cat([x, x[:, -1:].expand(B, pad, C)], dim=1)
    return x.reshape(B, -1, patch * C)


def _gauss_nll(x, mu, logvar):
    """-log N(x | mu, exp(logvar)), summed over steps and channels: shape (B,)."""
    return 0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * (-logvar).exp()).sum(dim=(1, 2))


def _kl_std_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over every non-batch dimension: shape (B,)."""
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


# --------------------------------------------------------------------------- shared training base
class _SeqAEBase(TorchDetector):
    """Training/scoring plumbing shared by the VRAE and the plain LSTM autoencoder."""

    input_kind = "window"

    # ---- subclass hooks
    def _new_module(self, n_channels: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _batch_loss(self, net, x_in, x, beta: float, gen):  # pragma: no cover - abstract
        """Returns (training loss, validation criterion), both scalars."""
        raise NotImplementedError

    def _after_fit(self, X: np.ndarray, holdout: np.ndarray | None = None) -> None:
        """Fit score-side state (reference banks, clusters) on the standardised training data;
        ``holdout`` indexes the windows held out of gradient steps (early stopping)."""

    # ---- common
    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def _fit_scaler(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=(0, 1)).astype(np.float32)
        sd = X.std(axis=(0, 1)).astype(np.float32)
        self.scale_ = np.where(sd > 1e-8, sd, 1.0).astype(np.float32)

    def fit(self, X, y=None):
        import torch

        X = self._validate(X, fitting=True)
        n, T, C = X.shape
        if n < 4:
            raise InputError(f"{self.name}: need at least 4 windows to fit, got {n}")
        t0 = time.perf_counter()
        with torch_threads(self.n_threads), _FlushDenormal():
            seed_everything(self.seed)
            dev = self._device()
            self._fit_scaler(X)
            Xs = self._standardise(X)
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(n)
            n_val = int(round(self.validation_fraction * n)) if self.validation_fraction else 0
            n_val = min(n_val, n - 2)
            val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            Xtr = torch.from_numpy(Xs[tr_idx]).to(dev)
            Xva = torch.from_numpy(Xs[val_idx]).to(dev) if n_val > 0 else None

            net = self._new_module(C).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            g_cpu = seeded_generator(self.seed)
            g_dev = seeded_generator(self.seed + 1, dev)
            bs = max(1, min(self.batch_size, len(tr_idx)))
            steps_per_epoch = math.ceil(len(tr_idx) / bs)
            anneal_steps = max(1, int(self.kl_anneal_epochs * steps_per_epoch)) if self.kl_anneal_epochs else 0
            best, best_state, bad, step = math.inf, None, 0, 0
            history: list[dict[str, float]] = []
            bar = progress(range(self.epochs), desc=self.name, unit="epoch", leave=False)
            for epoch in bar:
                net.train()
                order = torch.randperm(len(tr_idx), generator=g_cpu).to(dev)
                tot = 0.0
                for i in range(steps_per_epoch):
                    xb = Xtr[order[i * bs:(i + 1) * bs]]
                    beta = min(1.0, step / anneal_steps) if anneal_steps else 1.0
                    x_in = xb
                    if self.noise_std:
                        x_in = xb + self.noise_std * torch.randn(xb.shape, generator=g_dev, device=dev)
                    loss, _ = self._batch_loss(net, x_in, xb, beta, g_dev)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip:
                        torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
                    opt.step()
                    tot += float(loss.detach()) * len(xb)
                    step += 1
                rec = {"epoch": epoch + 1, "train_loss": tot / len(tr_idx)}
                if Xva is not None:
                    net.eval()
                    gv = seeded_generator(self.seed + 2, dev)
                    with torch.no_grad():
                        vals = [float(self._batch_loss(net, Xva[j:j + 512], Xva[j:j + 512], 1.0, gv)[1]) * len(Xva[j:j + 512])
                                for j in range(0, len(Xva), 512)]
                    crit = sum(vals) / len(Xva)
                    rec["val_loss"] = crit
                else:
                    crit = rec["train_loss"]
                history.append(rec)
                bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val=f"{rec.get('val_loss', float('nan')):.3f}")
                cb = getattr(self, "_epoch_callback", None)
                if cb is not None:  # benchmarks: evaluate the model as it trains
                    cb(epoch + 1, net, Xs)
                annealing = bool(anneal_steps) and step < anneal_steps
                if crit < best:
                    best, best_state, bad = crit, copy.deepcopy(net.state_dict()), 0
                elif not annealing:
                    bad += 1
                    if self.patience and bad >= self.patience:
                        break
            bar.close()
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
            self.module_ = net
            self.module_meta_ = self._meta(C)
            self.n_features_in_ = int(C)
            self.window_length_ = int(T)
            self.n_epochs_ = len(history)
            self.best_val_loss_ = float(best)
            self.history_ = history
            self._after_fit(Xs, val_idx)
        self.fit_seconds_ = round(time.perf_counter() - t0, 3)
        return self

    def _build_module(self, meta):
        return self._new_module_from_meta(meta)

    def _score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        with torch_threads(self.n_threads), _FlushDenormal():
            Xs = self._standardise(X)
            parts = [self._score_std(Xs[i:i + self.score_batch_size]) for i in range(0, len(Xs), self.score_batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # ---- explanations: per step and channel, the reconstruction's misfit (standardised units)
    can_explain = True

    def _cells_std(self, Xs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        with torch_threads(self.n_threads), _FlushDenormal():
            Xs = self._standardise(X)
            return np.concatenate([self._cells_std(Xs[i:i + self.score_batch_size])
                                   for i in range(0, len(Xs), self.score_batch_size)])


@register
class VRAE(_SeqAEBase):
    """Variational recurrent autoencoder with variational self-attention (see module docstring).

    Parameters
    ----------
    hidden_size
        LSTM units per direction (encoder) and of the decoder.
    latent_dim
        Dimension of z.
    context_dim
        Dimension of each attention context vector c_t.
    attention
        Use the variational self-attention (else the decoder reads only z).
    num_layers
        LSTM layers in encoder and decoder.
    patch_len
        Samples read (and emitted) per recurrent step: the window is cut into ``ceil(T/patch_len)``
        frames of ``patch_len * C`` values. 1 = one sample per step; larger is much faster on
        long windows (e.g. 4-8 for 360 Hz ECG).
    epochs, batch_size, learning_rate, weight_decay, grad_clip
        Optimisation (Adam).
    kl_weight, kl_context_weight
        Final weights of the KL terms of z and of the contexts (the "beta" of a beta-VAE).
    kl_anneal_epochs
        Epochs over which the KL weights rise linearly from 0 (0 = no annealing).
    noise_std
        Denoising: std of Gaussian noise added to the (standardised) input during training.
    sparsity
        Weight of an L1 penalty on mu_z (latent sparsity).
    validation_fraction, patience
        Early stopping on the ELBO of a held-out fraction of the fit data.
    n_samples
        L, Monte-Carlo samples of (z, c) per window at scoring time.
    n_wasserstein
        N_W, number of training windows in the Wasserstein reference bank.
    major_keep, major_iters, major_pool
        ``latent_wasserstein_major``: fraction of the training posteriors kept per trimming step, number
        of steps, and the most training posteriors considered (a random subset beyond; n^2 memory).
        ``major_keep=1`` = every training posterior in the pool.
    n_clusters
        k of the k-means of the training posteriors (``latent_cluster``; at most n/4).
    n_neighbors, knn_bank_size
        ``latent_knn``: neighbours averaged, and the most training posteriors kept in its bank.
    combine_weight
        Weight of the latent term in ``combined``. The default 1 (both robust z-scores count the same)
        is a fixed, principled choice: the semi-supervised protocols hold out only normal beats, so
        no weight can be selected on validation data without test labels.
    latent_whiten
        Measure ``latent_cluster``/``latent_knn`` distances in standardised coordinates: each latent
        dimension divided by the spread of the training latent means.
    seed
        Seeds training and the (common) random numbers used for scoring.
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
    n_threads
        torch CPU threads during fit/score (None = leave as is).
    score_batch_size
        Windows per scoring chunk (does not change the scores).
    n_members
        Deep ensemble: fit this many VRAEs, identical but for their seeds (member ``i`` has seed
        ``seed + 1000 * i``, so member 0 is the single model of ``seed`` and the members of seeds below
        1000 never coincide), and score each component as the mean over the members. Averaging the
        latent k-NN distances of independently trained latent spaces removes much of the variance of one
        space (see ``monitor/protocols/ecg.py`` for the development figures). Costs ``n_members`` times
        the fit and scoring time.
    """

    name = "vrae"
    #: chosen on development splits of the ECG protocols (docs/results/default_components.json)
    default_component = "combined"
    components = (
        Component("reconstruction_error", "mean |x - mu_x| over L samples of (z, c)"),
        Component("reconstruction_probability", "-(1/L) sum_l log p(x | z_l, c_l)"),
        Component("latent_wasserstein", "median squared W2 distance of q(z|x) to a bank of training posteriors"),
        Component("latent_wasserstein_major",
                  "median squared W2 distance of q(z|x) to the majority mode of the training posteriors (trimmed bank)"),
        Component("latent_cluster", "W2 distance of q(z|x) to the nearest k-means centre of training posteriors (scaled)"),
        Component("latent_knn", "mean W2 distance of q(z|x) to its k nearest training posteriors (scaled)"),
        Component("combined", "reconstruction_probability + combine_weight * latent_knn, each robustly standardised"),
    )
    _contract_params = {
        "hidden_size": 8, "latent_dim": 4, "context_dim": 2, "epochs": 2, "batch_size": 32,
        "n_samples": 4, "n_wasserstein": 16, "n_clusters": 3, "device": "cpu",
    }

    def __init__(
        self,
        hidden_size: int = 64,
        latent_dim: int = 8,
        context_dim: int = 4,
        attention: bool = True,
        num_layers: int = 1,
        patch_len: int = 4,
        epochs: int = 150,
        batch_size: int = 32,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.0,
        grad_clip: float = 5.0,
        kl_weight: float = 1.0,
        kl_context_weight: float = 1.0,
        kl_anneal_epochs: float = 10.0,
        noise_std: float = 0.0,
        sparsity: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int = 20,
        n_samples: int = 16,
        n_wasserstein: int = 256,
        n_clusters: int = 256,
        major_keep: float = 0.6,
        major_iters: int = 3,
        major_pool: int = 2048,
        n_neighbors: int = 1,
        knn_bank_size: int = 10000,
        latent_whiten: bool = True,
        combine_weight: float = 1.0,
        seed: int = 0,
        device: str = "auto",
        n_threads: int | None = None,
        score_batch_size: int = 256,
        n_members: int = 1,
    ):
        self.hidden_size = hidden_size
        self.latent_dim = latent_dim
        self.context_dim = context_dim
        self.attention = attention
        self.num_layers = num_layers
        self.patch_len = patch_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.kl_weight = kl_weight
        self.kl_context_weight = kl_context_weight
        self.kl_anneal_epochs = kl_anneal_epochs
        self.noise_std = noise_std
        self.sparsity = sparsity
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_samples = n_samples
        self.n_wasserstein = n_wasserstein
        self.n_clusters = n_clusters
        self.major_keep = major_keep
        self.major_iters = major_iters
        self.major_pool = major_pool
        self.n_neighbors = n_neighbors
        self.knn_bank_size = knn_bank_size
        self.latent_whiten = latent_whiten
        self.combine_weight = combine_weight
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.score_batch_size = score_batch_size
        self.n_members = n_members

    # ---- deep ensemble (n_members > 1): members are single VRAEs; components are member means
    #: seed offset between ensemble members
    MEMBER_SEED_STRIDE = 1000

    def _n_members(self) -> int:
        n = self.n_members
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"vrae: n_members must be an integer >= 1, got {n!r}")
        return int(n)

    def _member(self, i: int) -> VRAE:
        params = dict(self.get_params(), n_members=1, seed=int(self.seed) + self.MEMBER_SEED_STRIDE * i)
        return type(self)(**params)

    @property
    def members(self) -> list[VRAE]:
        """The fitted single VRAEs this detector averages (``[self]`` when ``n_members`` is 1)."""
        self._check_fitted()
        return list(self.members_) if getattr(self, "members_", None) is not None else [self]

    def fit(self, X, y=None):
        n = self._n_members()
        if n == 1:
            super().fit(X, y)
            self.members_ = None
            return self
        X = self._validate(X, fitting=True)
        t0 = time.perf_counter()
        members = []
        for i in range(n):
            member = self._member(i)
            log.info("vrae: fitting ensemble member %d/%d (seed %d)", i + 1, n, member.seed)
            members.append(member.fit(X))
        self.members_ = members
        first = members[0]
        self.mean_, self.scale_ = first.mean_, first.scale_
        self.n_features_in_, self.window_length_ = first.n_features_in_, first.window_length_
        self.member_epochs_ = [m.n_epochs_ for m in members]
        self.n_epochs_ = int(max(self.member_epochs_))
        self.best_val_loss_ = float(np.mean([m.best_val_loss_ for m in members]))
        self.history_ = first.history_
        self.fit_seconds_ = round(time.perf_counter() - t0, 3)
        return self

    def _score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if getattr(self, "members_", None) is None:
            return super()._score(X)
        parts = [m._score(X) for m in self.members_]
        return {k: np.mean([p[k] for p in parts], axis=0) for k in parts[0]}

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        if getattr(self, "members_", None) is None:
            return super()._contributions(X)
        return np.mean([m._contributions(X) for m in self.members_], axis=0)  # ensemble: the members' mean

    def _get_state(self):
        if getattr(self, "members_", None) is None:
            arrays, meta = super()._get_state()
            meta.pop("members_", None)
            return arrays, meta
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, m in enumerate(self.members_):
            a, meta = m._get_state()
            arrays.update({f"member{i}.{k}": v for k, v in a.items()})
            metas.append(meta)
        own = {k: v for k, v in vars(self).items()
               if k.endswith("_") and not k.startswith("_") and k not in ("members_", "history_")}
        for k, v in own.items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
        meta = {k: v for k, v in own.items() if not isinstance(v, np.ndarray)}
        meta["members_"] = metas
        return arrays, meta

    def _set_state(self, arrays, meta) -> None:
        meta = dict(meta)
        metas = meta.pop("members_", None)
        if not metas:
            self.members_ = None
            super()._set_state(arrays, meta)
            if getattr(self, "major_mu_", None) is None and getattr(self, "ref_mu_", None) is not None:
                # saved before latent_wasserstein_major existed: its bank falls back to the latent_wasserstein one
                log.warning("vrae model saved without a majority bank: latent_wasserstein_major uses the "
                            "latent_wasserstein bank (retrain for the largest-cluster bank)")
                self.major_mu_, self.major_sigma_ = self.ref_mu_, self.ref_sigma_
            return
        if len(metas) != self._n_members():
            raise ValueError(f"saved ensemble has {len(metas)} members, its config says n_members={self.n_members}")
        members = []
        for i, mmeta in enumerate(metas):
            m = self._member(i)
            pre = f"member{i}."
            m._set_state({k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}, mmeta)
            members.append(m)
        self.members_ = members
        for k, v in meta.items():
            setattr(self, k, v)
        for k, v in arrays.items():
            if not k.startswith("member"):
                setattr(self, k, v)
        self.history_ = members[0].__dict__.get("history_", [])

    # ---- network
    def _meta(self, C: int) -> dict[str, Any]:
        return {"n_channels": int(C), "hidden_size": int(self.hidden_size), "latent_dim": int(self.latent_dim),
                "context_dim": int(self.context_dim), "attention": bool(self.attention),
                "num_layers": int(self.num_layers), "patch_len": int(self.patch_len)}

    def _new_module(self, n_channels: int):
        return _build_vrae_net(self._meta(n_channels))

    def _new_module_from_meta(self, meta):
        return _build_vrae_net(meta)

    def _batch_loss(self, net, x_in, x, beta, gen):
        import torch

        T = x.shape[1]
        mu_z, lv_z, mu_c, lv_c = net.encode(x_in)
        z = mu_z + (0.5 * lv_z).exp() * torch.randn(mu_z.shape, generator=gen, device=mu_z.device)
        c = None
        kl = self.kl_weight * _kl_std_normal(mu_z, lv_z)
        if mu_c is not None:
            c = mu_c + (0.5 * lv_c).exp() * torch.randn(mu_c.shape, generator=gen, device=mu_c.device)
            kl = kl + self.kl_context_weight * _kl_std_normal(mu_c, lv_c)
        mu_x, lv_x = net.decode(z, c, T)
        nll = _gauss_nll(x, mu_x, lv_x)
        neg_elbo = nll + kl  # at beta = 1: the validation criterion
        loss = nll + beta * kl
        if self.sparsity:
            loss = loss + self.sparsity * mu_z.abs().sum(1)
        return loss.mean(), neg_elbo.mean()

    # ---- scoring state
    def _eps_bank(self, T: int):
        """Common random numbers: (L, latent) for z and (L, T, context) for c, fixed by ``seed``."""
        key = (T, str(self._device()))
        cache = getattr(self, "_eps_cache", None)
        if cache is None or cache[0] != key:
            import torch

            g = seeded_generator(self.seed + 12345)
            ez = torch.randn((self.n_samples, self.latent_dim), generator=g)
            ec = torch.randn((self.n_samples, n_steps(T, self.patch_len), self.context_dim), generator=g)
            dev = self._device()
            self._eps_cache = (key, ez.to(dev), ec.to(dev))
            cache = self._eps_cache
        return cache[1], cache[2]

    def _encode_np(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        mus, sds = [], []
        with torch.no_grad():
            for i in range(0, len(Xs), self.score_batch_size):
                x = torch.from_numpy(Xs[i:i + self.score_batch_size]).to(self._device())
                mu, lv, _, _ = self.module_.encode(x)
                mus.append(mu.cpu().numpy())
                sds.append((0.5 * lv).exp().cpu().numpy())
        return np.concatenate(mus).astype(np.float64), np.concatenate(sds).astype(np.float64)

    def _whiten(self, mu: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior in standardised latent coordinates (each dim divided by the training spread of mu_z)."""
        s = np.asarray(self.latent_scale_, dtype=np.float64)
        return mu / s, sd / s

    def _after_fit(self, Xs: np.ndarray, holdout: np.ndarray | None = None) -> None:
        from sklearn.cluster import KMeans

        mu, sd = self._encode_np(Xs)
        if self.latent_whiten:
            spread = mu.std(axis=0)
            self.latent_scale_ = np.maximum(spread, max(1e-3 * float(spread.max()), 1e-8)).astype(np.float32)
        else:
            self.latent_scale_ = np.ones(mu.shape[1], dtype=np.float32)
        rng = np.random.default_rng(self.seed + 7)
        # Wasserstein reference bank (N_W windows), in the raw latent coordinates (as in the paper)
        k = min(self.n_wasserstein, len(Xs))
        idx = np.sort(rng.choice(len(Xs), size=k, replace=False))
        self.ref_mu_, self.ref_sigma_ = mu[idx].astype(np.float32), sd[idx].astype(np.float32)
        self.major_mu_, self.major_sigma_ = self._majority_bank(mu, sd)
        mu, sd = self._whiten(mu, sd)
        # nearest-neighbour bank: every training posterior (a random subset beyond knn_bank_size)
        m = min(self.knn_bank_size, len(Xs))
        kidx = np.sort(rng.choice(len(Xs), size=m, replace=False)) if m < len(Xs) else np.arange(len(Xs))
        self.knn_mu_, self.knn_sigma_ = mu[kidx].astype(np.float32), sd[kidx].astype(np.float32)
        self.knn_scale_ = np.array([max(float(np.median(self._knn_dist(self.knn_mu_, self.knn_sigma_))), 1e-12)])
        # k-means of the posteriors in W2 geometry: k-means on [mu, sigma]
        n_cl = max(1, min(self.n_clusters, len(Xs) // 4 or 1))
        feats = np.hstack([mu, sd])
        # never more clusters than distinct posteriors: a flat channel (or a constant training set) gives one
        # posterior for every window, and k-means would warn "Number of distinct clusters (1) found ..."
        n_distinct = len(np.unique(np.round(feats.astype(np.float64), 6), axis=0))
        n_cl = max(1, min(n_cl, n_distinct))
        km = KMeans(n_clusters=n_cl, n_init=3, random_state=self.seed).fit(feats)
        self.cluster_centers_ = km.cluster_centers_.astype(np.float32)
        self.cluster_scale_ = np.array([max(float(np.median(self._cluster_dist(mu, sd))), 1e-12)])
        # robust standardisation of the two scores summed by ``combined``, on the windows held out of the
        # gradient steps (early stopping) when there are enough: the NLL of windows the network was
        # trained on is optimistic (in-sample), the k-NN distance is leave-one-out either way
        self.combine_stats_ = np.array([0.0, 1.0, 0.0, 1.0])
        Xc = Xs[holdout] if holdout is not None and len(holdout) >= MIN_HOLDOUT else Xs
        parts = [self._score_std(Xc[i:i + self.score_batch_size], combined=False)
                 for i in range(0, len(Xc), self.score_batch_size)]
        stats = []
        for c in ("reconstruction_probability", "latent_knn"):
            v = np.concatenate([p[c] for p in parts])
            q25, q50, q75 = np.percentile(v, [25, 50, 75])
            stats += [q50, max(q75 - q25, 1e-12)]
        self.combine_stats_ = np.array(stats)

    def _cluster_dist(self, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """W2 distance from each (whitened) posterior to the nearest cluster centre."""
        c = self.cluster_centers_.astype(np.float64)
        d = c.shape[1] // 2
        return np.sqrt(w2_diag_gaussians(mu, sd, c[:, :d], c[:, d:]).min(axis=1))

    def _majority_bank(self, mu: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The majority mode of the training posteriors (raw coordinates), the bank of latent_wasserstein_major:
        keep the ``major_keep`` fraction with the lowest median W2 to the current bank, ``major_iters`` times."""
        n = len(mu)
        pool = np.arange(n)
        if n > self.major_pool:
            pool = np.sort(np.random.default_rng(self.seed + 11).choice(n, size=self.major_pool, replace=False))
        W = w2_diag_gaussians(mu[pool], sd[pool], mu[pool], sd[pool])
        bank = np.arange(len(pool))
        n_keep = max(1, int(round(min(max(self.major_keep, 0.0), 1.0) * len(pool))))
        for _ in range(max(0, self.major_iters) if n_keep < len(pool) else 0):
            bank = np.sort(np.argsort(np.median(W[:, bank], axis=1), kind="stable")[:n_keep])
        sel = pool[bank]
        return mu[sel].astype(np.float32), sd[sel].astype(np.float32)

    def _major_dist(self, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Median squared W2 distance to the posteriors of the largest training cluster (raw coordinates)."""
        if len(mu) > 1024:  # bounded memory: rows in chunks
            return np.concatenate([self._major_dist(mu[i:i + 1024], sd[i:i + 1024]) for i in range(0, len(mu), 1024)])
        return np.median(w2_diag_gaussians(mu, sd, self.major_mu_, self.major_sigma_), axis=1)

    def _knn_dist(self, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        if len(mu) > 1024:  # bounded memory: rows in chunks
            return np.concatenate([self._knn_dist(mu[i:i + 1024], sd[i:i + 1024]) for i in range(0, len(mu), 1024)])
        w2 = w2_diag_gaussians(mu, sd, self.knn_mu_, self.knn_sigma_)
        # a window's own posterior in the bank (a training window scored again) is not a neighbour:
        # so training scores are leave-one-out and a threshold on them stays meaningful
        w2 = np.where(w2 <= SELF_MATCH_W2, np.inf, w2)
        k = min(self.n_neighbors, max(1, w2.shape[1] - 1))
        return np.sqrt(np.partition(w2, k - 1, axis=1)[:, :k]).mean(axis=1)

    def _decode_samples(self, x):
        """The L common-random-number decodings of standardised windows ``x`` (a tensor, one chunk):
        ``(mu_z, sd_z, xr, mu_x, lv_x)``, the last three ``(L * B, T, C)`` (``xr``: ``x`` repeated)."""
        net = self.module_
        B, T, C = x.shape
        L = self.n_samples
        ez, ec = self._eps_bank(T)
        mu_z, lv_z, mu_c, lv_c = net.encode(x)
        sd_z = (0.5 * lv_z).exp()
        z = (mu_z[None] + sd_z[None] * ez[:, None, :]).reshape(L * B, -1)
        c = None
        if mu_c is not None:
            c = (mu_c[None] + (0.5 * lv_c).exp()[None] * ec[:, None]).reshape(L * B, ec.shape[1], -1)
        mu_x, lv_x = net.decode(z, c, T)
        return mu_z, sd_z, x[None].expand(L, B, T, C).reshape(L * B, T, C), mu_x, lv_x

    def _cells_std(self, Xs: np.ndarray) -> np.ndarray:
        """Per step and channel, the data term of the reconstruction NLL, ``(x - mu_x)^2 / (2 sigma_x^2)``,
        averaged over the L samples (standardised windows, one chunk). The rest of the NLL,
        ``(log 2 pi + log sigma_x^2) / 2``, is the decoder's own uncertainty, not a misfit of the data
        (and can be negative): it is not attributed."""
        import torch

        x = torch.from_numpy(Xs).to(self._device())
        B, T, C = x.shape
        with torch.no_grad():
            _, _, xr, mu_x, lv_x = self._decode_samples(x)
            cells = (0.5 * (xr - mu_x) ** 2 * (-lv_x).exp()).view(self.n_samples, B, T, C).mean(0)
        return cells.cpu().double().numpy()

    def _forward_scores(self, Xs: np.ndarray) -> dict[str, Any]:
        """Posterior and L-sample reconstructions of standardised windows (one chunk)."""
        import torch

        dev = self._device()
        x = torch.from_numpy(Xs).to(dev)
        B, T, C = x.shape
        L = self.n_samples
        with torch.no_grad():
            mu_z, sd_z, xr, mu_x, lv_x = self._decode_samples(x)
            nll = _gauss_nll(xr, mu_x, lv_x).view(L, B).mean(0)
            err = (xr - mu_x).abs().mean(dim=(1, 2)).view(L, B).mean(0)
            mean_rec = mu_x.view(L, B, T, C).mean(0)
        return {"mu_z": mu_z.cpu().double().numpy(), "sd_z": sd_z.cpu().double().numpy(),
                "nll": nll.cpu().double().numpy(), "err": err.cpu().double().numpy(),
                "reconstruction": mean_rec.cpu().numpy()}

    def _score_std(self, Xs: np.ndarray, combined: bool = True) -> dict[str, np.ndarray]:
        f = self._forward_scores(Xs)
        w2 = w2_diag_gaussians(f["mu_z"], f["sd_z"], self.ref_mu_, self.ref_sigma_)
        mu, sd = self._whiten(f["mu_z"], f["sd_z"])
        out = {
            "reconstruction_error": f["err"],
            "reconstruction_probability": f["nll"],
            "latent_wasserstein": np.median(w2, axis=1),
            "latent_wasserstein_major": self._major_dist(f["mu_z"], f["sd_z"]),
            "latent_cluster": self._cluster_dist(mu, sd) / float(np.asarray(self.cluster_scale_).reshape(-1)[0]),
            "latent_knn": self._knn_dist(mu, sd) / float(np.asarray(self.knn_scale_).reshape(-1)[0]),
        }
        if combined:
            m1, s1, m2, s2 = np.asarray(self.combine_stats_, dtype=np.float64)
            out["combined"] = ((out["reconstruction_probability"] - m1) / s1
                               + self.combine_weight * (out["latent_knn"] - m2) / s2)
        return out

    # ---- extras for reports and the supervised variant
    def transform(self, X) -> np.ndarray:
        """Latent means ``mu_z`` of windows, shape ``(n, latent_dim)`` (``(n, n_members * latent_dim)``
        for an ensemble)."""
        self._check_fitted()
        X = self._validate(X, fitting=False)
        if getattr(self, "members_", None) is not None:  # ensemble: the members' latent means side by side
            return np.hstack([m.transform(X) for m in self.members_])
        with torch_threads(self.n_threads):
            return self._encode_np(self._standardise(X))[0]

    def reconstruct(self, X) -> np.ndarray:
        """Mean reconstruction (over the L samples), in the input's units: ``(n, T, C)``."""
        self._check_fitted()
        X = self._validate(X, fitting=False)
        if getattr(self, "members_", None) is not None:  # ensemble: mean of the members' reconstructions
            return np.mean([m.reconstruct(X) for m in self.members_], axis=0)
        with torch_threads(self.n_threads):
            Xs = self._standardise(X)
            rec = np.concatenate([self._forward_scores(Xs[i:i + self.score_batch_size])["reconstruction"]
                                  for i in range(0, len(Xs), self.score_batch_size)])
        return rec * self.scale_ + self.mean_


class VRAESVM:
    """Supervised VRAE+SVM (Pereira & Silveira): an RBF SVM on the VRAE's latent means.

    Fit the VRAE on all windows (labels unused), then the SVM on ``(mu_z, y)``;
    :meth:`decision_function` is higher for the anomalous class (label 1).
    Not a registered detector: it needs labels, the contract does not.
    """

    def __init__(self, vrae: VRAE, C: float = 10.0, gamma: str | float = "scale"):
        self.vrae, self.C, self.gamma = vrae, C, gamma

    def fit(self, X, y) -> VRAESVM:
        from sklearn.svm import SVC

        if not self.vrae.is_fitted:
            self.vrae.fit(X)
        self.svm_ = SVC(C=self.C, gamma=self.gamma, class_weight="balanced").fit(self.vrae.transform(X), np.asarray(y).astype(int))
        return self

    def decision_function(self, X) -> np.ndarray:
        return self.svm_.decision_function(self.vrae.transform(X))
