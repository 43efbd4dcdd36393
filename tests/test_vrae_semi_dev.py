"""ecg5000-semi recipe selection (issue 3): the development split is disjoint from the protocol's
choices, and the protocol applies the recipe chosen on it."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.experiments.vrae_semi_dev import dev_split, metrics
from monitor.protocols.ecg import make_detector, semi_split


def _labels() -> np.ndarray:
    # ECG5000's class counts (pooled): 2919 normal (class 1), 2081 anomalous (classes 2-5)
    y = np.array([1] * 2919 + [2] * 1767 + [3] * 96 + [4] * 194 + [5] * 24)
    return np.random.default_rng(5).permutation(y)


@pytest.mark.parametrize("split", [1, 2])
def test_dev_split_sizes_and_disjointness(split):
    y = _labels()
    tr, va, te, yte = dev_split(y, split)
    assert (len(tr), len(va)) == (1751, 291)
    assert int((yte == 0).sum()) == 877 and int(yte.sum()) == 2081 // 2
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert (y[np.concatenate([tr, va])] == 1).all() and ((y[te] != 1) == (yte == 1)).all()
    # a different permutation of the normals than the protocol's default_rng(0)
    assert not np.array_equal(np.sort(tr), np.sort(semi_split(y != 1)[0]))


def test_dev_metrics_threshold_rule():
    """95th percentile of the validation scores; anomalous when strictly above it."""
    y = np.array([0] * 10 + [1] * 10)
    s = np.r_[np.zeros(10), np.ones(10)]
    m = metrics(y, s, np.linspace(0, 1, 21))  # threshold 0.95: the anomalies' 1.0 is above it
    assert (m["recall"], m["fpr"], m["roc_auc"]) == (1.0, 0.0, 1.0)
    m = metrics(y, s, np.r_[np.zeros(19), np.ones(2)])  # threshold 1.0: nothing is strictly above it
    assert m["recall"] == 0.0 and m["f1"] == 0.0


def test_dev_split_refuses_the_protocol_split():
    from monitor.experiments.vrae_semi_dev import main

    with pytest.raises(SystemExit, match="protocol"):
        main(["--split", "0", "--out", "unused"])


def test_ecg5000_semi_applies_the_dev_chosen_recipe():
    det = make_detector("vrae", 1, None, "ecg5000-semi")
    assert (det.kl_weight, det.epochs, det.patience, det.n_members, det.seed) == (1.0, 300, 30, 5, 1)
    # user overrides still win; other protocols keep their own settings
    assert make_detector("vrae", 0, {"epochs": 7}, "ecg5000-semi").epochs == 7
    assert make_detector("vrae", 0, None, "ecg5000-unsup").kl_weight == 2.0
    assert make_detector("vrae", 0, None, "mitdb106-semi").kl_weight == 1.0
