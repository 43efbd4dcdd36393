"""Protocols ``graph-cora`` / ``graph-cora-inductive`` (and the same on CiteSeer).

Exactly as ``../shared/PROTOCOLS.md`` defines them:

* The graph is taken undirected (``streams.datasets.load_graph``), with its CSR features.
* **Injection** (Ding et al. 2019) with ``rng = numpy.random.default_rng(s)``, s = 0, 1, 2:

  - *structural*: ``rng.choice(pool, 75, replace=False)`` gives 75 nodes, taken as 5
    consecutive groups of 15 (cliques); every pair within a clique is connected;
  - *contextual*: ``rng.choice(pool minus the clique nodes, 75, replace=False)``; for each
    of them in turn, ``rng.choice(n, 50, replace=False)`` candidates (over all nodes of the
    graph), and the node takes the original feature vector of the candidate farthest from
    its own in Euclidean distance.

* **Transductive** (``graph-cora``): pool = all nodes; score every node; ROC AUC and
  PR AUC over all nodes.
* **Inductive** (``graph-cora-inductive``): ``rng.choice(n, n // 10, replace=False)``
  removed nodes (270 on Cora); train on the induced subgraph of the rest (no anomalies);
  put the removed nodes back with all their edges; half of them (``n_removed // 2``) are
  injected: the first ``n_inj // 2`` of ``rng.permutation(removed)`` are structural
  (cliques of 15, the last one smaller when the count is not a multiple of 15), the next
  ``n_inj - n_inj // 2`` contextual (candidates over all nodes). Score only the added
  nodes, without retraining.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> adj = sp.csr_matrix((60, 60), dtype=np.float32)
>>> X = np.eye(60, dtype=np.float32)
>>> inj = inject_anomalies(adj, X, np.random.default_rng(0), n_cliques=2, clique_size=5, n_contextual=10)
>>> int(inj.labels.sum()), len(inj.cliques), int(inj.adj.nnz) // 2
(20, 2, 20)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

#: protocol name -> (graph name, inductive?)
PROTOCOLS: dict[str, tuple[str, bool]] = {
    "graph-cora": ("cora", False),
    "graph-cora-inductive": ("cora", True),
    "graph-citeseer": ("citeseer", False),
    "graph-citeseer-inductive": ("citeseer", True),
}

N_CLIQUES = 5
CLIQUE_SIZE = 15
N_CONTEXTUAL = 75
N_CANDIDATES = 50
REMOVE_FRACTION = 0.1


@dataclass
class Injected:
    """An injected graph: ``adj`` (csr, symmetric), ``features`` (dense float32), ``labels``
    (1 = injected), and which nodes were injected how."""

    adj: sp.csr_matrix
    features: np.ndarray
    labels: np.ndarray
    cliques: list[np.ndarray] = field(default_factory=list)
    contextual: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def structural(self) -> np.ndarray:
        return np.concatenate(self.cliques) if self.cliques else np.zeros(0, np.int64)


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


def add_cliques(adj: sp.csr_matrix, cliques: list[np.ndarray]) -> sp.csr_matrix:
    """``adj`` with every pair within each clique connected (symmetric, no self loops)."""
    rows, cols = [], []
    for c in cliques:
        c = np.asarray(c, dtype=np.int64)
        r, q = np.meshgrid(c, c, indexing="ij")
        off = r != q
        rows.append(r[off])
        cols.append(q[off])
    if not rows:
        return adj.tocsr()
    extra = sp.csr_matrix(
        (np.ones(sum(len(r) for r in rows), np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=adj.shape
    )
    out = ((adj + extra) > 0).astype(np.float32).tocsr()
    out.setdiag(0)
    out.eliminate_zeros()
    return out


def swap_contextual(X: np.ndarray, nodes: np.ndarray, rng: np.random.Generator,
                    n_candidates: int = N_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Each node of ``nodes`` takes the features of the farthest (Euclidean) of
    ``n_candidates`` random nodes. Candidates and distances use the original features.
    Returns (new features, source node of each)."""
    X0 = X
    X = X.copy()
    n = X.shape[0]
    sources = np.empty(len(nodes), np.int64)
    for i, v in enumerate(nodes):
        cand = rng.choice(n, min(n_candidates, n), replace=False)
        d = np.linalg.norm(X0[cand] - X0[v], axis=1)
        src = int(cand[int(np.argmax(d))])
        sources[i] = src
        X[v] = X0[src]
    return X, sources


def _split_cliques(nodes: np.ndarray, size: int) -> list[np.ndarray]:
    return [nodes[i:i + size] for i in range(0, len(nodes), size)]


def inject_anomalies(adj: Any, features: Any, rng: np.random.Generator, *, n_cliques: int = N_CLIQUES,
                     clique_size: int = CLIQUE_SIZE, n_contextual: int = N_CONTEXTUAL,
                     n_candidates: int = N_CANDIDATES, pool: np.ndarray | None = None) -> Injected:
    """Ding et al. 2019 injection (transductive form): see the module docstring."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    X = _dense(features)
    n = X.shape[0]
    pool = np.arange(n) if pool is None else np.asarray(pool, dtype=np.int64)
    n_struct = n_cliques * clique_size
    if n_struct + n_contextual > len(pool):
        raise ValueError(f"cannot inject {n_struct} + {n_contextual} anomalies into {len(pool)} nodes")
    struct = rng.choice(pool, n_struct, replace=False)
    cliques = _split_cliques(struct, clique_size)
    rest = np.setdiff1d(pool, struct)
    ctx = rng.choice(rest, n_contextual, replace=False)
    Xn, sources = swap_contextual(X, ctx, rng, n_candidates)
    labels = np.zeros(n, np.int64)
    labels[struct] = 1
    labels[ctx] = 1
    return Injected(add_cliques(adj, cliques), Xn, labels, cliques, ctx, sources)


@dataclass
class InductiveSplit:
    """Inductive protocol: ``train_adj``/``train_features`` over ``kept`` nodes (reindexed
    0..len(kept)-1); ``full`` the whole injected graph; ``added`` the indices (in the full
    graph) of the nodes to score; ``labels`` = ``full.labels[added]``."""

    kept: np.ndarray
    added: np.ndarray
    train_adj: sp.csr_matrix
    train_features: np.ndarray
    full: Injected
    labels: np.ndarray


def inductive_split(adj: Any, features: Any, rng: np.random.Generator, *,
                    remove_fraction: float = REMOVE_FRACTION, clique_size: int = CLIQUE_SIZE,
                    n_candidates: int = N_CANDIDATES) -> InductiveSplit:
    """``graph-*-inductive``: see the module docstring."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    X = _dense(features)
    n = X.shape[0]
    n_rem = int(n * remove_fraction)
    removed = rng.choice(n, n_rem, replace=False)
    kept = np.setdiff1d(np.arange(n), removed)
    n_inj = n_rem // 2
    order = rng.permutation(removed)
    struct = order[: n_inj // 2]
    ctx = order[n_inj // 2: n_inj]
    cliques = _split_cliques(struct, clique_size)
    Xn, sources = swap_contextual(X, ctx, rng, n_candidates)
    labels = np.zeros(n, np.int64)
    labels[struct] = 1
    labels[ctx] = 1
    full = Injected(add_cliques(adj, cliques), Xn, labels, cliques, ctx, sources)
    added = np.sort(removed)
    return InductiveSplit(
        kept=kept,
        added=added,
        train_adj=adj[kept][:, kept].tocsr(),
        train_features=X[kept],
        full=full,
        labels=labels[added],
    )


def load(name: str, data_dir: Any = None):
    """The undirected graph ``name`` (``cora``/``citeseer``) via ``streams.datasets``."""
    from streams.datasets import load_graph

    return load_graph(name, data_dir)
