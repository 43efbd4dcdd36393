"""Attributed graphs: Cora / CiteSeer (gnn-benchmark CSR ``.npz``) and Wiki-CS (``data.json``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._core import DatasetFormatError, require

__all__ = ["GraphData", "GRAPH_FILES", "load_graph", "load_graph_npz", "load_wikics", "symmetrize"]

GRAPH_FILES = {"cora": "graphs/cora.npz", "citeseer": "graphs/citeseer.npz"}


@dataclass
class GraphData:
    """An undirected attributed graph.

    ``adj``: (n, n) CSR float32, symmetric, 0/1, no self loops; ``features``: (n, d) CSR
    float32; ``labels``: (n,) int64 class ids; ``node_names`` / ``class_names``: arrays of str;
    ``masks``: extra boolean node masks (Wiki-CS splits), empty otherwise.
    """

    adj: sp.csr_matrix
    features: sp.csr_matrix
    labels: np.ndarray
    node_names: np.ndarray
    class_names: np.ndarray
    name: str = ""
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(self.adj.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of undirected edges."""
        return int(self.adj.nnz // 2)


def symmetrize(adj: sp.spmatrix) -> sp.csr_matrix:
    """Undirected 0/1 CSR version of ``adj``: A or A^T, without self loops.

    >>> import scipy.sparse as sp
    >>> a = symmetrize(sp.csr_matrix([[1, 1, 0], [0, 0, 2], [0, 0, 0]]))
    >>> a.toarray().astype(int).tolist()
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    """
    a = sp.csr_matrix(adj, dtype=np.float32)
    a = (a + a.T).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    a.data[:] = 1.0
    a.sort_indices()
    return a.astype(np.float32)


def _csr(z, prefix: str, path: Path) -> sp.csr_matrix:
    keys = [f"{prefix}_data", f"{prefix}_indices", f"{prefix}_indptr", f"{prefix}_shape"]
    missing = [k for k in keys if k not in z.files]
    if missing:
        raise DatasetFormatError(f"{path}: missing CSR part(s) {missing}; the file has {sorted(z.files)}")
    try:
        return sp.csr_matrix((z[keys[0]], z[keys[1]], z[keys[2]]), shape=tuple(int(v) for v in z[keys[3]]))
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: inconsistent CSR parts {prefix}_*: {exc}") from exc


def load_graph_npz(path: str | Path, name: str = "") -> GraphData:
    """Read a gnn-benchmark style ``.npz``: ``adj_*`` and ``attr_*`` CSR parts, ``labels``,
    and optionally ``node_names``, ``class_names``. Never unpickles objects."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"graph file not found: {p}")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise DatasetFormatError(f"{p}: not a valid .npz file: {exc}") from exc
    with z:
        adj = _csr(z, "adj", p)
        if adj.shape[0] != adj.shape[1]:
            raise DatasetFormatError(f"{p}: adjacency is not square: {adj.shape}")
        n = adj.shape[0]
        if "attr_data" in z.files:
            feats = _csr(z, "attr", p)
        elif "attr_matrix" in z.files:
            feats = sp.csr_matrix(z["attr_matrix"])
        else:
            raise DatasetFormatError(f"{p}: no node features (attr_* CSR parts or attr_matrix)")
        if feats.shape[0] != n:
            raise DatasetFormatError(f"{p}: features have {feats.shape[0]} rows for {n} nodes")
        if "labels" not in z.files:
            raise DatasetFormatError(f"{p}: missing array 'labels'")
        labels = np.asarray(z["labels"]).astype(np.int64)
        if labels.shape != (n,):
            raise DatasetFormatError(f"{p}: labels have shape {labels.shape}; expected ({n},)")
        node_names = np.asarray(z["node_names"]).astype(str) if "node_names" in z.files else np.arange(n).astype(str)
        if "class_names" in z.files:
            class_names = np.asarray(z["class_names"]).astype(str)
        else:
            class_names = np.arange(int(labels.max()) + 1 if n else 0).astype(str)
    return GraphData(symmetrize(adj), feats.astype(np.float32).tocsr(), labels, node_names, class_names, name or p.stem)


def load_graph(name: str, data_dir: str | Path | None = None, *, verify: bool = True) -> GraphData:
    """``cora`` (2708 nodes x 1433 features, 7 classes) or ``citeseer`` (3312 x 3703, 6 classes),
    undirected, without self loops."""
    key = name.lower()
    if key not in GRAPH_FILES:
        raise ValueError(f"unknown graph {name!r}; known: {sorted(GRAPH_FILES)} (Wiki-CS: load_wikics(path))")
    return load_graph_npz(require(GRAPH_FILES[key], data_dir, verify=verify, dataset=key), key)


def load_wikics(path: str | Path) -> GraphData:
    """Wiki-CS in its own ``data.json`` format (github.com/pmernyei/wiki-cs-dataset):
    ``features`` (n x 300 lists), ``labels`` (n), ``links`` (per node, a list of neighbour
    ids), and the split masks ``train_masks``, ``val_masks``, ``stopping_masks`` (lists of
    per-split masks) and ``test_mask``. ``path`` may be the file or its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "data.json"
    if not p.is_file():
        raise FileNotFoundError(f"Wiki-CS data.json not found: {p} (public source: "
                                "https://github.com/pmernyei/wiki-cs-dataset, dataset/data.json)")
    try:
        with open(p, encoding="utf-8") as f:
            d = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(d, dict):
        raise DatasetFormatError(f"{p}: expected a JSON object with features, labels and links")
    for k in ("features", "labels", "links"):
        if k not in d:
            raise DatasetFormatError(f"{p}: missing field {k!r}; the file has {sorted(d)}")
    try:
        X = np.asarray(d["features"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{p}: field 'features' must be an n x d list of numbers: {exc}") from exc
    if X.ndim != 2:
        raise DatasetFormatError(f"{p}: field 'features' must be an n x d list of numbers, got shape {X.shape}")
    n = X.shape[0]
    labels = np.asarray(d["labels"], dtype=np.int64)
    if labels.shape != (n,):
        raise DatasetFormatError(f"{p}: field 'labels' has {labels.size} entries for {n} nodes")
    links = d["links"]
    if not isinstance(links, list) or len(links) != n:
        raise DatasetFormatError(f"{p}: field 'links' must be a list of {n} neighbour lists")
    rows, cols = [], []
    for i, nbrs in enumerate(links):
        for j in nbrs:
            if not isinstance(j, int) or not 0 <= j < n:
                raise DatasetFormatError(f"{p}: field 'links'[{i}] has an invalid node id {j!r} (n = {n})")
            rows.append(i)
            cols.append(j)
    adj = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    masks: dict[str, np.ndarray] = {}
    for k in ("train_masks", "val_masks", "stopping_masks"):
        if k in d:
            m = np.asarray(d[k], dtype=bool)
            if m.ndim != 2 or m.shape[1] != n:
                raise DatasetFormatError(f"{p}: field {k!r} must be a list of masks of length {n}, got {m.shape}")
            masks[k] = m
    if "test_mask" in d:
        m = np.asarray(d["test_mask"], dtype=bool)
        if m.shape != (n,):
            raise DatasetFormatError(f"{p}: field 'test_mask' must have {n} entries, got {m.shape}")
        masks["test_mask"] = m
    n_classes = int(labels.max()) + 1 if n else 0
    return GraphData(symmetrize(adj), sp.csr_matrix(X), labels, np.arange(n).astype(str),
                     np.asarray([str(c) for c in range(n_classes)]), "wikics", masks)
