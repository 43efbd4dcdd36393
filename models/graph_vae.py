"""A variational graph autoencoder with a GraphSAGE encoder, for anomalous nodes.

The model scores the **nodes of an attributed graph**:

* **encoder** - GraphSAGE layers with the mean aggregator
  (``h' = act(W_self h + W_neigh mean_{u in N(v)} h_u)``), then linear heads for the
  mean and log-variance of ``q(z | graph)``, one Gaussian per node;
* **neighbour sampling** - on graphs with more than ``sample_above`` nodes, every
  training epoch aggregates over at most ``fanout`` random neighbours per node (and the
  structure term uses ``neg_samples`` random non-edges per node instead of the whole
  row); scoring always aggregates over the full neighbourhood, so it is deterministic;
* **attribute decoder** - an MLP ``z -> x``: Bernoulli logits for binary features
  (bag of words, as Cora and CiteSeer), a unit-variance Gaussian otherwise. Its input is
  the node's own ``z_v`` (``attr_source="self"``), the mean of its neighbours' ``z``
  (``"neighbours"``: ``p(x_v | mean_{u in N(v)} z_u)``, so attributes that do not fit the
  neighbourhood cost more) or both concatenated; its output bias starts at the features'
  marginal log-odds (or means);
* **structure decoder** - inner product, ``p(A_ij = 1) = sigmoid(z_i . z_j + b)`` (b learned), with the
  edges up-weighted by the graph's non-edge/edge ratio (as in Kipf & Welling's GAE);
* **score** - each node's negative ELBO: attribute NLL + ``structure_weight`` x
  structure NLL (its row of the adjacency) + KL(q(z_v) || N(0, I)), the reconstruction
  terms averaged over ``score_samples`` draws of ``z`` from a fixed-seed generator.
  ``kl_weight`` (beta) weights the KL in the training loss only; the score always uses
  the plain KL, so it stays the negative ELBO of the fitted ``q`` and decoders.

Higher = more anomalous, as for every anomon detector.

It is **not** registered as a tabular detector (a node's score depends on the graph
around it, which an ``(n, d)`` array does not carry). It follows the same conventions:
hyperparameters in ``__init__``, learned attributes ending in ``_``, ``fit`` returns
``self``, ``score`` returns :class:`models.base.Scores`, and :meth:`save` / :meth:`load`
write ``config.json`` + ``weights.safetensors`` (never pickle).

A graph is either an object with ``adj`` (scipy sparse, n x n) and ``features``
(dense or scipy sparse, n x d) attributes - e.g. ``streams.datasets.GraphData`` - or a
tuple ``(adj, features)``. The adjacency is symmetrised and its diagonal dropped.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> rng = np.random.default_rng(0)
>>> X = (rng.random((40, 12)) < 0.2).astype(np.float32)
>>> A = sp.random(40, 40, density=0.08, random_state=0, format="csr")
>>> det = GraphSAGEVAE(hidden=16, latent=4, epochs=5, seed=0).fit((A, X))
>>> s = det.score((A, X))
>>> list(s), s.n
(['neg_elbo', 'attr_nll', 'struct_nll', 'kl'], 40)
"""
from __future__ import annotations

import json
import os
import warnings
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from models.base import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    Component,
    IncompatibleModelError,
    InputError,
    Scores,
    load_as,
)
from models.torch_base import MODULE_PREFIX, TorchDetector, progress, seed_everything, seeded_generator, torch_threads

__all__ = ["GraphSAGEVAE", "as_graph"]


# --------------------------------------------------------------------------- graph input
def as_graph(graph: Any) -> tuple[Any, np.ndarray]:
    """``(adj csr symmetric without self loops, float32 features)`` from a graph-like input.

    >>> import scipy.sparse as sp
    >>> a, x = as_graph((sp.csr_matrix(np.array([[0, 1], [0, 0]])), np.eye(2)))
    >>> a.toarray().tolist(), x.dtype.name
    ([[0.0, 1.0], [1.0, 0.0]], 'float32')
    """
    import scipy.sparse as sp

    if isinstance(graph, tuple) and len(graph) == 2:
        adj, feats = graph
    elif hasattr(graph, "adj") and hasattr(graph, "features"):
        adj, feats = graph.adj, graph.features
    else:
        raise InputError(
            "graph-vae: expected a graph: an object with .adj and .features, or a tuple (adj, features); "
            f"got {type(graph).__name__}"
        )
    if not sp.issparse(adj):
        adj = np.asarray(adj)
        if adj.ndim != 2:
            raise InputError(f"graph-vae: adjacency must be a square matrix, got shape {adj.shape}")
        adj = sp.csr_matrix(adj)
    if adj.shape[0] != adj.shape[1]:
        raise InputError(f"graph-vae: adjacency must be square, got shape {adj.shape}")
    adj = sp.csr_matrix(adj, dtype=np.float32)
    adj = ((adj + adj.T) > 0).astype(np.float32).tolil()
    adj.setdiag(0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    X = feats.toarray() if sp.issparse(feats) else np.asarray(feats)
    try:
        X = X.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"graph-vae: features are not numeric: {exc}") from None
    if X.ndim != 2 or X.shape[0] != adj.shape[0]:
        raise InputError(f"graph-vae: features must be (n, d) with n = {adj.shape[0]} nodes, got {X.shape}")
    if X.shape[0] == 0:
        raise InputError("graph-vae: empty graph (0 nodes)")
    if not np.isfinite(X).all():
        raise InputError("graph-vae: features hold NaN or inf")
    return adj, X


def _mean_operator(adj, rows: np.ndarray | None = None):
    """Row-normalised sparse torch matrix (mean over neighbours; isolated nodes get 0)."""
    import torch

    adj = adj.tocoo()
    deg = np.asarray(adj.sum(axis=1)).reshape(-1)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    vals = adj.data * inv[adj.row]
    idx = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(idx, torch.from_numpy(vals.astype(np.float32)), adj.shape).coalesce()


def _sample_neighbours(adj, fanout: int, rng: np.random.Generator):
    """A copy of ``adj`` keeping at most ``fanout`` random neighbours per node (GraphSAGE sampling)."""
    import scipy.sparse as sp

    indptr, indices = adj.indptr, adj.indices
    deg = np.diff(indptr)
    rows, cols = [], []
    for v in np.nonzero(deg)[0]:
        nb = indices[indptr[v]:indptr[v + 1]]
        if len(nb) > fanout:
            nb = rng.choice(nb, fanout, replace=False)
        rows.append(np.full(len(nb), v))
        cols.append(nb)
    if not rows:
        return sp.csr_matrix(adj.shape, dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=adj.shape)


# --------------------------------------------------------------------------- network
def _build_net(meta: dict[str, Any]):
    import torch
    from torch import nn

    class SAGE(nn.Module):
        def __init__(self, d_in: int, d_out: int, use_self: bool = True):
            super().__init__()
            self.use_self = use_self
            self.self_lin = nn.Linear(d_in, d_out) if use_self else None
            self.neigh_lin = nn.Linear(d_in, d_out, bias=not use_self)

        def forward(self, h, mean_op):
            out = self.neigh_lin(torch.sparse.mm(mean_op, h))
            return out + self.self_lin(h) if self.self_lin is not None else out

    class Net(nn.Module):
        def __init__(self, d: int, hidden: int, latent: int, layers: int, self_features: bool, attr_source: str):
            super().__init__()
            dims = [d] + [hidden] * layers
            self.sage = nn.ModuleList(
                SAGE(a, b, use_self=(i > 0 or self_features)) for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
            )
            self.act = nn.LeakyReLU(0.2)
            self.mu = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)
            self.edge_bias = nn.Parameter(torch.zeros(()))
            dec_in = 2 * latent if attr_source == "both" else latent
            self.attr_dec = nn.Sequential(nn.Linear(dec_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, d))

        def encode(self, x, mean_op):
            h = x
            for layer in self.sage:
                h = self.act(layer(h, mean_op))
            return self.mu(h), self.logvar(h).clamp(-10, 10)

    return Net(int(meta["n_features"]), int(meta["hidden"]), int(meta["latent"]), int(meta["layers"]),
               bool(meta.get("self_features", True)), str(meta.get("attr_source", "self")))


# --------------------------------------------------------------------------- detector
class GraphSAGEVAE(TorchDetector):
    """GraphSAGE-encoder VAE; scores nodes by their negative ELBO (see the module docstring).

    Parameters
    ----------
    hidden, latent, layers
        Width of the SAGE layers, size of z, number of SAGE layers.
    self_features
        Whether the first SAGE layer sees the node's own attributes. ``False`` makes
        ``q(z_v | graph)`` infer a node from its neighbourhood (its own attributes reach it
        only through 2-hop paths), so attributes that disagree with the neighbours reconstruct
        badly - still a valid ELBO, as any ``q`` gives a lower bound.
    attr_source
        Input of the attribute decoder: ``"self"`` (``z_v``), ``"neighbours"`` (the mean of
        the neighbours' ``z``; isolated nodes get 0, i.e. the decoder's marginal) or
        ``"both"`` (the two concatenated). With ``"neighbours"`` the generative model is
        ``p(Z) p(A | Z) p(X | Z, A)``, still scored by its negative ELBO.
    epochs, lr, weight_decay
        Full-graph Adam training.
    kl_weight
        Weight of the KL term in the training loss (beta; 1 = the ELBO). Scores use the
        unweighted KL whatever it is.
    structure_weight
        Weight of the structure NLL in the loss and the score.
    edge_weight
        Weight of an edge against a non-edge in the structure NLL: ``"balanced"`` (the
        graph's non-edge/edge ratio, as GAE) or a number (1.0 = the plain Bernoulli likelihood).
    likelihood
        ``"auto"`` (Bernoulli when every feature is 0 or 1, else Gaussian), ``"bernoulli"``
        or ``"gaussian"``.
    fanout, sample_above, neg_samples
        Neighbour sampling for large graphs: above ``sample_above`` nodes, training
        aggregates over at most ``fanout`` sampled neighbours per node and the structure
        term uses ``neg_samples`` sampled non-edges per node. Scoring a graph of more than
        ``sample_above`` nodes also uses ``neg_samples`` fixed-seed non-edges.
    score_samples
        Draws of z per node for the reconstruction terms of the score.
    """

    name = "graph-vae"
    input_kind = "graph"
    components = (
        Component("neg_elbo", "negative ELBO of the node (attributes + structure + KL)"),
        Component("attr_nll", "attribute reconstruction NLL"),
        Component("struct_nll", "structure (adjacency row) reconstruction NLL, edge-weighted"),
        Component("kl", "KL(q(z|graph) || N(0, I))"),
    )

    def __init__(
        self,
        hidden: int = 128,
        latent: int = 64,
        layers: int = 2,
        self_features: bool = True,
        attr_source: str = "self",
        epochs: int = 200,
        kl_weight: float = 1.0,
        lr: float = 5e-3,
        weight_decay: float = 0.0,
        structure_weight: float = 1.0,
        edge_weight: Any = "balanced",
        likelihood: str = "auto",
        fanout: int = 25,
        sample_above: int = 5000,
        neg_samples: int = 64,
        score_samples: int = 4,
        seed: int = 0,
        device: str = "cpu",
        threads: int | None = None,
        progress: bool = True,
    ):
        self.hidden = hidden
        self.latent = latent
        self.layers = layers
        self.self_features = self_features
        self.attr_source = attr_source
        self.epochs = epochs
        self.kl_weight = kl_weight
        self.lr = lr
        self.weight_decay = weight_decay
        self.structure_weight = structure_weight
        self.edge_weight = edge_weight
        self.likelihood = likelihood
        self.fanout = fanout
        self.sample_above = sample_above
        self.neg_samples = neg_samples
        self.score_samples = score_samples
        self.seed = seed
        self.device = device
        self.threads = threads
        self.progress = progress

    # ---- network
    def _build_module(self, meta: dict[str, Any]):
        return _build_net(meta)

    # ---- losses
    def _node_terms(self, net, adj, X, mean_op, z_gen, nodes=None, sampled: bool = False, neg_rng=None):
        """Per-node (attr_nll, struct_nll, kl) tensors (for ``nodes``, default all)."""
        import torch
        import torch.nn.functional as F

        n = X.shape[0]
        mu, logvar = net.encode(X, mean_op)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(mu.shape, generator=z_gen, device=mu.device) if z_gen is not None else torch.randn_like(mu)
        z = mu + std * eps
        if nodes is None:
            nodes_t = torch.arange(n)
        else:
            nodes_t = torch.as_tensor(nodes, dtype=torch.long)
        kl = 0.5 * (mu[nodes_t] ** 2 + std[nodes_t] ** 2 - 1.0 - logvar[nodes_t]).sum(1)
        zn = z[nodes_t]
        src = self.attr_source
        if src == "self":
            dec_in = zn
        else:
            zbar = torch.sparse.mm(mean_op, z)[nodes_t]  # mean of the neighbours' z (0 when isolated)
            dec_in = zbar if src == "neighbours" else torch.cat([zn, zbar], 1)
        out = net.attr_dec(dec_in)
        xn = X[nodes_t]
        if self.likelihood_ == "bernoulli":
            attr = F.binary_cross_entropy_with_logits(out, xn, reduction="none").sum(1)
        else:
            attr = 0.5 * ((out - xn) ** 2).sum(1) + 0.5 * xn.shape[1] * float(np.log(2 * np.pi))
        pw = float(self.pos_weight_)
        if not sampled:
            logits = zn @ z.T + net.edge_bias
            target = torch.from_numpy(adj[nodes_t.numpy()].toarray())
            target[torch.arange(len(nodes_t)), nodes_t] = 0.0
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=torch.tensor(pw))
            mask = torch.ones_like(bce)
            mask[torch.arange(len(nodes_t)), nodes_t] = 0.0  # no self-pairs
            struct = (bce * mask).sum(1)
        else:
            struct = self._sampled_struct(net, z, adj, nodes_t.numpy(), pw, neg_rng)
        return attr, struct, kl

    def _sampled_struct(self, net, z, adj, nodes: np.ndarray, pw: float, rng: np.random.Generator):
        """Structure NLL with the non-edge part estimated from ``neg_samples`` random nodes."""
        import torch
        import torch.nn.functional as F

        n = adj.shape[0]
        indptr, indices = adj.indptr, adj.indices
        deg = np.diff(indptr)[nodes]
        src = np.repeat(nodes, deg)
        dst = np.concatenate([indices[indptr[v]:indptr[v + 1]] for v in nodes]) if len(nodes) else np.zeros(0, int)
        pos_nll = torch.zeros(len(nodes))
        if len(src):
            pos_logit = (z[torch.from_numpy(src)] * z[torch.from_numpy(dst)]).sum(1) + net.edge_bias
            pos_loss = pw * F.softplus(-pos_logit)
            owner = torch.from_numpy(np.repeat(np.arange(len(nodes)), deg))
            pos_nll = pos_nll.index_add(0, owner, pos_loss)
        k = int(self.neg_samples)
        neg = rng.integers(0, n, size=(len(nodes), k))
        neg_logit = (z[torch.from_numpy(nodes)].unsqueeze(1) * z[torch.from_numpy(neg)]).sum(-1) + net.edge_bias
        scale = torch.from_numpy(((n - 1 - deg) / k).astype(np.float32))
        neg_nll = F.softplus(neg_logit).mean(1) * k * scale
        return pos_nll + neg_nll

    # ---- fit / score
    def fit(self, graph: Any, y: Any = None) -> GraphSAGEVAE:
        """Train on a graph (unsupervised; ``y`` is ignored)."""
        import torch

        adj, X = as_graph(graph)
        n, d = X.shape
        if self.likelihood not in ("auto", "bernoulli", "gaussian"):
            raise InputError(f"graph-vae: likelihood must be auto, bernoulli or gaussian, got {self.likelihood!r}")
        binary = bool(np.isin(X, (0.0, 1.0)).all())
        lik = ("bernoulli" if binary else "gaussian") if self.likelihood == "auto" else self.likelihood
        if lik == "bernoulli" and not binary:
            raise InputError("graph-vae: likelihood 'bernoulli' needs features in {0, 1}")
        n_edges = max(int(adj.nnz), 1)
        self.likelihood_ = lik
        if self.edge_weight == "balanced":
            self.pos_weight_ = float((n * (n - 1) - n_edges) / n_edges) if n > 1 else 1.0
        else:
            self.pos_weight_ = float(self.edge_weight)
        if self.attr_source not in ("self", "neighbours", "both"):
            raise InputError(f"graph-vae: attr_source must be self, neighbours or both, got {self.attr_source!r}")
        meta = {"n_features": int(d), "hidden": int(self.hidden), "latent": int(self.latent), "layers": int(self.layers),
                "self_features": bool(self.self_features), "attr_source": str(self.attr_source)}
        self.module_meta_ = meta
        with torch_threads(self.threads):
            seed_everything(self.seed)
            net = self._build_module(meta)
            density = min(max(n_edges / max(n * (n - 1), 1), 1e-9), 0.5)
            with torch.no_grad():  # start the edge bias at the graph's log-odds of an edge
                net.edge_bias.fill_(float(np.log(density / (1 - density))))
                # and the attribute decoder's output at the features' marginal (logits or means)
                m = X.mean(0).astype(np.float64)
                if lik == "bernoulli":
                    m = np.clip(m, 1e-4, 1 - 1e-4)
                    m = np.log(m / (1 - m))
                net.attr_dec[-1].bias.copy_(torch.from_numpy(m.astype(np.float32)))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            Xt = torch.from_numpy(X)
            large = n > int(self.sample_above)
            rng = np.random.default_rng(self.seed)
            full_op = _mean_operator(adj)
            gen = seeded_generator(self.seed)
            self.loss_history_ = []
            net.train()
            bar = progress(range(int(self.epochs)), desc="graph-vae", leave=False) if self.progress else range(int(self.epochs))
            for _ in bar:
                op = _mean_operator(_sample_neighbours(adj, int(self.fanout), rng)) if large else full_op
                attr, struct, kl = self._node_terms(net, adj, Xt, op, gen, sampled=large, neg_rng=rng)
                loss = (attr + self.structure_weight * struct + float(self.kl_weight) * kl).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.loss_history_.append(float(loss.detach()))
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{self.loss_history_[-1]:.2f}")
            net.eval()
        self.module_ = net
        self.n_features_in_ = int(d)
        return self

    def score(self, graph: Any, nodes: Any = None) -> Scores:  # type: ignore[override]
        """Negative ELBO (and its parts) of every node of ``graph`` (or of ``nodes``)."""
        self._check_fitted()
        return Scores(self._score_graph(graph, nodes), self.components)

    def _score(self, X: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - graph input only
        raise InputError("graph-vae scores graphs: call score(graph)")

    def _score_graph(self, graph: Any, nodes: Any = None) -> dict[str, np.ndarray]:
        import torch

        adj, X = as_graph(graph)
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"graph-vae: nodes have {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        n = X.shape[0]
        idx = np.arange(n) if nodes is None else np.asarray(nodes, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"graph-vae: node indices out of range [0, {n})")
        sampled = n > int(self.sample_above)
        net = self.module_
        Xt = torch.from_numpy(X)
        op = _mean_operator(adj)
        acc = {"attr_nll": np.zeros(len(idx)), "struct_nll": np.zeros(len(idx)), "kl": np.zeros(len(idx))}
        reps = max(int(self.score_samples), 1)
        with torch_threads(self.threads), torch.no_grad():
            gen = seeded_generator(self.seed + 1)
            rng = np.random.default_rng(self.seed + 1)
            chunk = 2048
            for r in range(reps):
                state = gen.get_state()
                for s in range(0, len(idx), chunk):
                    gen.set_state(state)  # the same z draws for every chunk: batch-invariant
                    part = idx[s:s + chunk]
                    a, st, kl = self._node_terms(net, adj, Xt, op, gen, nodes=part, sampled=sampled, neg_rng=rng)
                    acc["attr_nll"][s:s + chunk] += a.numpy() / reps
                    acc["struct_nll"][s:s + chunk] += st.numpy() / reps
                    acc["kl"][s:s + chunk] += kl.numpy() / reps
        neg_elbo = acc["attr_nll"] + self.structure_weight * acc["struct_nll"] + acc["kl"]
        return {"neg_elbo": neg_elbo, **acc}

    # ---- persistence: as every detector, but loaded without the registry
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GraphSAGEVAE:
        """Load a model saved by :meth:`save` (``config.json`` + ``weights.safetensors``; no pickle)."""
        return load_as(cls, path)


# keep these names referenced for readers of the persistence format
_ = (CONFIG_FILE, FORMAT_VERSION, MODULE_PREFIX, json, tempfile)
