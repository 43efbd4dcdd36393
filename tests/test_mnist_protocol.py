"""Protocol mnist-4-8 on the real MNIST file: set sizes and what goes where."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.protocols import mnist as mp


@pytest.fixture(scope="module")
def split(data_dir):
    return mp.load(data_dir)


def test_sizes_on_real_data(split):
    assert split.sizes() == {"train": 40299, "tune_normal": 8008, "tune_8": 5851, "test_normal": 8044, "test_4": 982}
    assert split.X_train.shape == (40299, 784) and split.X_tune.shape == (13859, 784) and split.X_test.shape == (9026, 784)


def test_digits_go_where_the_protocol_says(split):
    assert not np.isin(split.tune_digits, [4]).any(), "no 4 may reach the tuning set"
    assert not np.isin(split.test_digits, [8]).any(), "no 8 may reach the final test"
    np.testing.assert_array_equal(split.y_tune, (split.tune_digits == 8).astype(int))
    np.testing.assert_array_equal(split.y_test, (split.test_digits == 4).astype(int))
    assert 0.0 <= split.X_train.min() and split.X_train.max() <= 1.0


def test_split_uses_train_and_valid_8s_and_only_test_4s():
    y = {"tr": np.array([8, 4, 1, 8]), "va": np.array([8, 4, 2]), "te": np.array([4, 8, 3])}
    X = {k: np.arange(len(v), dtype=np.float32)[:, None] + 10 * i for i, (k, v) in enumerate(y.items())}
    s = mp.split(((X["tr"], y["tr"]), (X["va"], y["va"]), (X["te"], y["te"])))
    assert s.X_train[:, 0].tolist() == [2.0]
    assert sorted(s.X_tune[:, 0].tolist()) == [0.0, 3.0, 10.0, 12.0]  # valid normal + 8s of train and valid
    assert sorted(s.X_test[:, 0].tolist()) == [20.0, 22.0]


def test_thresholds_are_inclusive_and_recall_first_is_lower():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.65, 0.35])
    from monitor.evaluation import at_threshold, pr_closest_to_corner

    t = pr_closest_to_corner(y, s)
    assert t in s  # a score value: with score >= t the sample at t counts as anomalous
    t_r = mp.recall_first_threshold(y, s, target=1.0)
    assert t_r == 0.35 and t_r <= t
    assert at_threshold(y, s, t_r, inclusive=True)["recall"] == 1.0
