"""Protocols graph-cora / graph-cora-inductive on the real Cora graph: injection sizes and shapes."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.protocols import graph as gp


@pytest.fixture(scope="module")
def cora(data_dir):
    return gp.load("cora", data_dir)


def test_cora_transductive_injection(cora):
    X0 = cora.features.toarray()
    inj = gp.inject_anomalies(cora.adj, cora.features, np.random.default_rng(0))
    assert len(inj.cliques) == 5 and all(len(c) == 15 for c in inj.cliques)
    struct = inj.structural
    assert len(np.unique(struct)) == 75
    A = inj.adj
    for c in inj.cliques:
        sub = A[c][:, c].toarray()
        assert (sub + np.eye(15) == 1).all(), "every pair of a clique must be connected"
    assert len(inj.contextual) == 75 and len(np.unique(inj.contextual)) == 75
    assert not np.isin(inj.contextual, struct).any(), "contextual nodes are other nodes than the clique members"
    assert inj.labels.sum() == 150 and inj.labels[struct].all() and inj.labels[inj.contextual].all()
    np.testing.assert_array_equal(inj.features[inj.contextual], X0[inj.sources])
    untouched = np.setdiff1d(np.arange(cora.n_nodes), inj.contextual)
    np.testing.assert_array_equal(inj.features[untouched], X0[untouched])
    assert (A != A.T).nnz == 0 and A.diagonal().sum() == 0
    # only clique edges were added
    added = A - cora.adj
    assert added.min() >= 0 and added.nnz <= 5 * 15 * 14


def test_injection_is_seeded(cora):
    a = gp.inject_anomalies(cora.adj, cora.features, np.random.default_rng(1))
    b = gp.inject_anomalies(cora.adj, cora.features, np.random.default_rng(1))
    c = gp.inject_anomalies(cora.adj, cora.features, np.random.default_rng(2))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_contextual_source_is_the_farthest_candidate():
    X = np.array([[0.0], [1.0], [5.0], [2.0]], dtype=np.float32)
    Xn, src = gp.swap_contextual(X, np.array([0]), np.random.default_rng(0), n_candidates=4)
    assert src.tolist() == [2] and Xn[0, 0] == 5.0


def test_cora_inductive_split(cora):
    s = gp.inductive_split(cora.adj, cora.features, np.random.default_rng(0))
    n = cora.n_nodes
    assert len(s.added) == 270 and len(s.kept) == n - 270
    assert not np.isin(s.added, s.kept).any()
    assert s.train_adj.shape == (n - 270, n - 270)
    assert s.labels.sum() == 135
    assert np.isin(s.full.structural, s.added).all() and np.isin(s.full.contextual, s.added).all()
    assert len(s.full.structural) == 67 and len(s.full.contextual) == 68
    assert [len(c) for c in s.full.cliques] == [15, 15, 15, 15, 7]
    # the training graph is the untouched induced subgraph of the kept nodes
    assert (s.train_adj != cora.adj[s.kept][:, s.kept]).nnz == 0
