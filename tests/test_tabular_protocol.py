"""The dagmm-* protocols on the real data: exact split sizes, scaling, threshold rule."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.protocols import tabular as tp


@pytest.fixture(autouse=True)
def _data(data_dir, monkeypatch):
    monkeypatch.setenv("ANOMON_DATA", str(data_dir))


@pytest.mark.parametrize(
    "dataset, n, d, n_anom, n_train, n_test",
    [
        ("thyroid", 3772, 6, 93, 1839, 1933),        # normals 3679 -> 1839 train, 1840 + 93 test
        ("arrhythmia", 452, 274, 66, 193, 259),      # normals 386 -> 193 train, 193 + 66 test
    ],
)
def test_split_sizes_odds(dataset, n, d, n_anom, n_train, n_test):
    for seed in (0, 1):
        X, y = tp.load_protocol_data(dataset, seed)
        assert X.shape == (n, d) and int(y.sum()) == n_anom
        assert X.min() == 0.0 and X.max() <= 1.0
        tr, te = tp.dagmm_split(y, seed)
        assert len(tr) == n_train and len(te) == n_test
        assert int(y[tr].sum()) == 0 and int(y[te].sum()) == n_anom
        assert not set(tr.tolist()) & set(te.tolist())
    # different seeds give different training sets; the same seed the same one
    assert not np.array_equal(tp.dagmm_split(y, 0)[0], tp.dagmm_split(y, 1)[0])
    np.testing.assert_array_equal(tp.dagmm_split(y, 3)[0], tp.dagmm_split(y, 3)[0])


def test_split_follows_the_written_recipe():
    _, y = tp.load_protocol_data("thyroid")
    rng = np.random.default_rng(4)
    normal = rng.permutation(np.flatnonzero(y == 0))
    tr, te = tp.dagmm_split(y, 4)
    np.testing.assert_array_equal(tr, normal[: len(normal) // 2])
    np.testing.assert_array_equal(np.sort(te), np.sort(np.concatenate([normal[len(normal) // 2 :], np.flatnonzero(y == 1)])))


def test_kddcup_and_kddcup_rev_sizes():
    X, y = tp.load_protocol_data("kddcup", 0)
    assert len(y) == 494021 and int(y.sum()) == 97278  # `normal.` is the anomaly
    tr, te = tp.dagmm_split(y, 0)
    assert len(tr) == 396743 // 2 == 198371 and len(te) == 396743 - 198371 + 97278
    Xr, yr = tp.load_protocol_data("kddcup-rev", 0)
    assert len(yr) == 97278 + 97278 // 4 == 121597 and int(yr.sum()) == 24319  # attacks : normal = 1 : 4
    trr, ter = tp.dagmm_split(yr, 0)
    assert len(trr) == 48639 and len(ter) == 48639 + 24319
    assert Xr.shape[1] == X.shape[1] and Xr.min() == 0.0 and Xr.max() == 1.0
    # the attack sample depends on the seed
    raw_y = 1 - tp._raw("kddcup")[1]
    assert not np.array_equal(tp.kddcup_rev_sample(raw_y, 0), tp.kddcup_rev_sample(raw_y, 1))


def test_minmax_constant_columns_become_zero():
    X = np.array([[1.0, 7.0, -1.0], [3.0, 7.0, 1.0]])
    np.testing.assert_array_equal(tp.minmax_scale(X), [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])


def test_threshold_at_test_anomaly_ratio_inclusive():
    y = np.array([0] * 8 + [1] * 2)
    s = np.arange(10.0)
    thr = tp.dagmm_threshold(s, y)
    assert thr == pytest.approx(np.percentile(s, 80.0))
    m = tp.dagmm_metrics(y, s)
    assert m["tp"] == 2 and m["fp"] == 0  # threshold 7.2: the scores 8 and 9 (the anomalies) are flagged
    ties = tp.dagmm_metrics(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert ties["recall"] == 1.0


def test_user_file_formats(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    y = (rng.random(40) < 0.2).astype(int)
    y[:2] = [0, 1]
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xa, ya = tp.load_tabular_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(ya, y)
    import pandas as pd

    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": y}).to_csv(tmp_path / "d.csv", index=False)
    Xc, yc = tp.load_tabular_file(tmp_path / "d.csv")
    assert Xc.shape == (40, 2) and (yc == y).all()
    from monitor.errors import UserError

    np.savez(tmp_path / "bad.npz", X=X, y=y * 2)
    with pytest.raises(UserError, match="labels"):
        tp.load_tabular_file(tmp_path / "bad.npz")
    with pytest.raises(UserError, match="not found"):
        tp.load_tabular_file(tmp_path / "missing.npz")
