"""Per-series online normalisation and the constant-channel cases (robust-zscore, vrae)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from models.base import InputError, NotFittedError
from models.normalize import OnlineRobustScaler, SeriesNormalizers, robust_location_scale, scale_floor
from models.statistical import RobustZScore


def test_constant_channel_in_training_gives_finite_fixed_z():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=500), np.zeros(500), np.full(500, 3.0)])
    det = RobustZScore().fit(X)
    s = det.score(np.array([[0.0, 1.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 3.3]]))["max_abs_z"]
    assert s[0] == pytest.approx(6.0, abs=0.5)   # the zero channel toggled: constant_z, not 1e6
    assert s[1] < 1.0                             # nothing moved
    assert 5.0 < s[2] < 15.0                      # a 10 % step on a channel at level 3: floor 0.03 -> z = 10
    assert np.isfinite(s).all()


def test_old_absolute_floor_kept_on_request_and_models_reload(tmp_path):
    X = np.column_stack([np.random.default_rng(1).normal(size=100), np.zeros(100)])
    old = RobustZScore(min_scale=1e-6).fit(X)
    assert old.score(np.array([[0.0, 1.0]]))["max_abs_z"][0] > 1e5   # the documented old behaviour
    new = RobustZScore().fit(X)
    new.save(tmp_path / "m")
    from models.base import load_detector
    back = load_detector(tmp_path / "m")
    x = np.array([[0.5, 1.0], [0.1, 0.0]])
    np.testing.assert_array_equal(back.score(x)["max_abs_z"], new.score(x)["max_abs_z"])


def test_scale_floor_is_relative_to_the_series_range():
    X = np.random.default_rng(2).normal(size=(1000, 1))
    f1, f2 = scale_floor(X)[0], scale_floor(X * 1e6)[0]
    assert f2 == pytest.approx(f1 * 1e6)
    _, sc, const = robust_location_scale(np.r_[np.zeros(990), np.ones(10) * 4.0][:, None])
    assert not const[0] and sc[0] == pytest.approx(0.01 * 4.0)   # MAD 0, but the channel moves: 1 % of its range


def test_online_scaler_warmup_then_slow_adaptation():
    rng = np.random.default_rng(3)
    sc = OnlineRobustScaler(warmup=100, alpha=5e-3)
    assert sc.transform_one(np.array([1.0])) is None
    with pytest.raises(NotFittedError):
        sc.transform(np.ones((2, 1)))
    for x in rng.normal(10.0, 1.0, size=(100, 1)):
        sc.learn_one(x)
    assert sc.ready_ and sc.location_[0] == pytest.approx(10.0, abs=0.3)
    # a level shift to 20 is followed slowly: not after 10 readings, yes after a few thousand
    for x in rng.normal(20.0, 1.0, size=(10, 1)):
        sc.learn_one(x)
    assert sc.location_[0] < 11.0
    for x in rng.normal(20.0, 1.0, size=(3000, 1)):
        sc.learn_one(x)
    assert sc.location_[0] == pytest.approx(20.0, abs=0.5)
    assert 0.6 < sc.scale_[0] < 1.6


def test_online_scaler_flat_channel_toggle_then_learns_it():
    sc = OnlineRobustScaler(warmup=20, alpha=0.05).fit(np.zeros((20, 2)) + [0.0, 5.0])
    assert sc.constant_.tolist() == [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = sc.transform_one(np.array([1e9, 5.0]))
    assert z.tolist() == [6.0, 0.0]
    for _ in range(200):   # the operator says the toggle is normal: learnt, the channel now has a scale
        sc.learn_one(np.array([1.0 if _ % 2 else 0.0, 5.0]))
    assert not sc.constant_[0] and np.isfinite(sc.transform_one(np.array([0.5, 5.0]))).all()


def test_online_scaler_state_roundtrip_and_errors():
    sc = OnlineRobustScaler(warmup=10)
    for v in range(5):
        sc.learn_one(np.array([float(v)]))
    back = OnlineRobustScaler.from_dict(sc.to_dict())
    for v in range(5, 12):
        sc.learn_one(np.array([float(v)]))
        back.learn_one(np.array([float(v)]))
    assert back.to_dict() == sc.to_dict()
    with pytest.raises(InputError, match="version"):
        OnlineRobustScaler.from_dict({"version": 99, "params": {}})
    with pytest.raises(InputError, match="warmup"):
        OnlineRobustScaler(warmup=2)


def test_series_normalizers_serve_different_scales():
    rng = np.random.default_rng(4)
    norms = SeriesNormalizers(warmup=200, alpha=0.0)
    base = rng.normal(size=200)
    for i, x in enumerate(base):
        norms.learn("milli", [x * 1e-3])
        norms.learn("mega", [x * 1e6 + 5e7])
    a = norms.transform("milli", [4e-3])[0]
    b = norms.transform("mega", [4e6 + 5e7])[0]
    assert a == pytest.approx(b, rel=1e-6) and len(norms) == 2


def test_vrae_on_flat_channels_no_convergence_warning():
    from models.vrae import VRAE
    from sklearn.exceptions import ConvergenceWarning

    X = np.zeros((64, 8, 2), dtype=np.float32)
    X[:, :, 1] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        det = VRAE(**VRAE._contract_params).fit(X)
    assert np.isfinite(det.score(X[:4])["combined"]).all()
