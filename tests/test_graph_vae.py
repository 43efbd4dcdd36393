"""The GraphSAGE VAE: score direction, persistence, inputs, and tiny job runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from models import available_detectors
from models.base import IncompatibleModelError, InputError
from models.graph_vae import GraphSAGEVAE


def _communities(n, d, rng, p_in, p_out, w_in, w_out):
    """Two communities (alternate nodes): edges with probability p_in inside, p_out across; each
    community uses its own half of the d words with probability w_in (w_out for the other half)."""
    comm = np.arange(n) % 2
    P = np.where(comm[:, None] == comm[None, :], p_in, p_out)
    A = np.triu(rng.random((n, n)) < P, 1)
    A = (A | A.T).astype(np.float32)
    words = np.where(comm[:, None] == (np.arange(d)[None, :] % 2), w_in, w_out)
    return A, (rng.random((n, d)) < words).astype(np.float32), comm


def _two_communities(n=120, d=30, seed=0):
    """Two dense communities with their own words, plus 4 clique nodes and 4 contextual nodes."""
    A, X, _ = _communities(n, d, np.random.default_rng(seed), 0.12, 0.003, 0.35, 0.01)
    y = np.zeros(n, int)
    clique = (np.array([0, 7, 21, 40, 55, 66, 81, 99]) * n) // 120
    for i in clique:
        for j in clique:
            if i != j:
                A[i, j] = 1
    ctx = (np.array([3, 30, 63, 90]) * n) // 120 + 1
    X[ctx] = 0
    X[ctx, :] = 1.0  # every word at once: far from anything seen
    y[clique] = 1
    y[ctx] = 1
    return sp.csr_matrix(A), X, y


@pytest.fixture(scope="module")
def fitted():
    A, X, y = _two_communities()
    det = GraphSAGEVAE(hidden=32, latent=8, epochs=60, lr=1e-2, seed=0, progress=False).fit((A, X))
    return det, A, X, y


def test_negative_elbo_is_higher_for_obvious_anomalies(fitted):
    from sklearn.metrics import roc_auc_score

    det, A, X, y = fitted
    s = det.score((A, X))
    assert list(s) == ["neg_elbo", "attr_nll", "struct_nll", "kl"]
    assert roc_auc_score(y, s["neg_elbo"]) > 0.9
    np.testing.assert_allclose(s["neg_elbo"], s["attr_nll"] + s["struct_nll"] + s["kl"], rtol=1e-9)


def test_scoring_is_deterministic_and_node_subsets_agree(fitted):
    det, A, X, _ = fitted
    a, b = det.score((A, X)), det.score((A, X))
    np.testing.assert_array_equal(a["neg_elbo"], b["neg_elbo"])
    part = det.score((A, X), nodes=[5, 6, 100])
    np.testing.assert_allclose(part["neg_elbo"], a["neg_elbo"][[5, 6, 100]], rtol=1e-5)


def test_save_load_round_trip(fitted, tmp_path):
    det, A, X, _ = fitted
    det.save(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json", "weights.safetensors"]
    back = GraphSAGEVAE.load(tmp_path / "g")
    np.testing.assert_allclose(back.score((A, X))["neg_elbo"], det.score((A, X))["neg_elbo"], rtol=1e-6)
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["detector"] = "robust-zscore"
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleModelError, match="not 'graph-vae'"):
        GraphSAGEVAE.load(tmp_path / "g")


def test_inputs_are_checked(fitted):
    det, A, X, _ = fitted
    with pytest.raises(InputError, match="features"):
        det.score((A, X[:, :5]))
    with pytest.raises(InputError, match="graph"):
        det.score(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        det.score((A, bad))


def test_neighbour_sampling_path_for_large_graphs():
    A, X, y = _two_communities(n=80)
    det = GraphSAGEVAE(hidden=16, latent=4, epochs=5, sample_above=10, fanout=3, neg_samples=8,
                       progress=False).fit((A, X))
    s = det.score((A, X))
    assert np.isfinite(s["neg_elbo"]).all() and s.n == 80
    np.testing.assert_array_equal(s["neg_elbo"], det.score((A, X))["neg_elbo"])


def test_graph_vae_is_not_a_tabular_detector():
    assert "graph-vae" not in available_detectors()


def _write_npz(path, A, X):
    A, X = sp.csr_matrix(A), sp.csr_matrix(X)
    np.savez(path, adj_data=A.data, adj_indices=A.indices, adj_indptr=A.indptr, adj_shape=np.array(A.shape),
             attr_data=X.data, attr_indices=X.indices, attr_indptr=X.indptr, attr_shape=np.array(X.shape),
             labels=np.zeros(A.shape[0], np.int64))


def test_tiny_job_on_a_user_graph(tmp_path):
    from monitor.batch import run_job

    A, X, _ = _two_communities(n=220)
    _write_npz(tmp_path / "g.npz", A, X)
    m = run_job("graph-vae", tmp_path / "out", overrides={
        "data": str(tmp_path / "g.npz"), "seeds": [0], "detector_params": {"epochs": 2, "hidden": 8, "latent": 4}})
    assert set(m["protocols"]) == {"graph-g", "graph-g-inductive"}
    ind = m["protocols"]["graph-g-inductive"]["per_seed"][0]
    assert ind["n_scored"] == 22 and ind["n_anomalies"] == 11
    assert (tmp_path / "out" / "metrics.json").is_file() and (tmp_path / "out" / "report.html").is_file()
    GraphSAGEVAE.load(tmp_path / "out" / "models" / "graph-g-seed0")


def test_wikics_data_json_in_score_mode(tmp_path):
    from monitor.batch import run_job

    A, X, _ = _two_communities(n=40, d=6)
    A = A.tocsr()
    data = {"features": (X * 0.5 - 0.1).tolist(), "labels": [0] * 40,
            "links": [A.indices[A.indptr[i]:A.indptr[i + 1]].tolist() for i in range(40)]}
    (tmp_path / "wikics").mkdir()
    (tmp_path / "wikics" / "data.json").write_text(json.dumps(data))
    run_job("graph-vae", tmp_path / "out", overrides={
        "data": str(tmp_path / "wikics"), "mode": "score", "seeds": [0], "detector_params": {"epochs": 2}})
    lines = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert lines[0] == "node,name,neg_elbo,attr_nll,struct_nll,kl" and len(lines) == 41
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["params"]["likelihood"] == "auto"


def _swapped_communities(n=200, d=40, seed=0):
    """Two communities with their own words; 12 nodes later take the words of a node of the other one."""
    rng = np.random.default_rng(seed)
    A, X, comm = _communities(n, d, rng, 0.06, 0.002, 0.25, 0.02)
    ctx = rng.choice(n, 12, replace=False)
    Xs = X.copy()
    for v in ctx:
        Xs[v] = X[rng.choice(np.nonzero(comm != comm[v])[0])]
    y = np.zeros(n, int)
    y[ctx] = 1
    return sp.csr_matrix(A), X, Xs, y


def test_neighbour_attribute_decoder_reacts_to_out_of_context_attributes():
    """attr_source='neighbours' decodes x_v from the neighbours' z, so swapped attributes cost more."""
    from sklearn.metrics import roc_auc_score

    A, X, Xs, y = _swapped_communities()
    det = GraphSAGEVAE(hidden=32, latent=8, epochs=80, lr=1e-2, seed=0, progress=False,
                       attr_source="neighbours", self_features=False).fit((A, X))
    before, after = det.score((A, X))["attr_nll"], det.score((A, Xs))["attr_nll"]
    swapped = y == 1
    assert roc_auc_score(y, after) > 0.8
    assert np.mean(after[swapped] - before[swapped]) > 4.0  # about 10 nats measured
    assert abs(np.mean(after[~swapped] - before[~swapped])) < 1.0


@pytest.mark.parametrize("kw", [dict(attr_source="neighbours", self_features=False),
                                dict(attr_source="both", kl_weight=0.5)])
def test_decoder_variants_score_round_trip_and_subsets(kw, tmp_path):
    A, X, _ = _two_communities(n=60)
    det = GraphSAGEVAE(hidden=16, latent=4, epochs=5, seed=0, progress=False, **kw).fit((A, X))
    s = det.score((A, X))
    assert np.isfinite(s["neg_elbo"]).all() and s.n == 60
    np.testing.assert_allclose(det.score((A, X), nodes=[3, 40])["neg_elbo"], s["neg_elbo"][[3, 40]], rtol=1e-5)
    det.save(tmp_path / "m")
    np.testing.assert_allclose(GraphSAGEVAE.load(tmp_path / "m").score((A, X))["neg_elbo"], s["neg_elbo"], rtol=1e-6)


def test_bad_decoder_options_are_rejected():
    A, X, _ = _two_communities(n=30)
    with pytest.raises(InputError, match="attr_source"):
        GraphSAGEVAE(epochs=1, attr_source="self-and-more", progress=False).fit((A, X))


def test_models_saved_before_the_decoder_options_still_load(fitted, tmp_path):
    """A config.json without attr_source / kl_weight (written by an older anomon) loads and scores unchanged."""
    det, A, X, _ = fitted
    det.save(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for k in ("attr_source", "kl_weight"):
        cfg["params"].pop(k)
        cfg["state"]["module_meta_"].pop(k, None)
    cfg_path.write_text(json.dumps(cfg))
    back = GraphSAGEVAE.load(tmp_path / "old")
    assert back.attr_source == "self" and back.kl_weight == 1.0
    np.testing.assert_allclose(back.score((A, X))["neg_elbo"], det.score((A, X))["neg_elbo"], rtol=1e-6)


def test_neighbour_decoder_gives_an_isolated_node_the_decoders_marginal():
    """With attr_source='neighbours' an isolated node's decoder input is 0 whatever its own z:
    its attribute NLL is exactly the Bernoulli NLL of its features under attr_dec(0)."""
    import torch
    import torch.nn.functional as F

    A, X, _ = _two_communities(n=60)
    A = A.tolil()
    for v in (5, 17):  # cut two nodes loose
        A[v, :] = 0
        A[:, v] = 0
    A = A.tocsr()
    det = GraphSAGEVAE(hidden=16, latent=4, epochs=20, seed=0, progress=False, attr_source="neighbours").fit((A, X))
    s = det.score((A, X))

    def at_zero(model):
        with torch.no_grad():
            logits = model.module_.attr_dec(torch.zeros(1, 4)).expand(2, -1)
            return F.binary_cross_entropy_with_logits(logits, torch.from_numpy(X[[5, 17]]),
                                                      reduction="none").sum(1).numpy()

    np.testing.assert_allclose(s["attr_nll"][[5, 17]], at_zero(det), rtol=1e-5)
    own = GraphSAGEVAE(hidden=16, latent=4, epochs=20, seed=0, progress=False).fit((A, X))
    assert not np.allclose(own.score((A, X))["attr_nll"][[5, 17]], at_zero(own), rtol=1e-3)  # 'self' reads z_v
