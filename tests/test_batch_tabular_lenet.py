"""The LeNet-type CNN variants of Deep SVDD and OC-NN (``network="lenet"``), as used on
mnist-one-class: shapes, save/load, determinism and input checks. Tiny 8x8 images, few epochs."""
from __future__ import annotations

import numpy as np
import pytest

from models import load_detector
from models.base import InputError
from models.deep_svdd import DeepSVDD
from models.lenet import image_side, lenet_decoder, lenet_encoder
from models.ocnn import OCNN


def _images(n=48, side=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.zeros((n, side, side))
    X[:, 2:6, 3:5] = 1.0  # a bar, plus noise
    return np.clip(X + 0.1 * rng.random((n, side, side)), 0, 1).reshape(n, side * side)


SVDD = {"network": "lenet", "rep_dim": 16, "preprocess": "gcn", "pretrain_epochs": 1, "epochs": 2,
        "batch_size": 16, "lr_milestone": 1, "device": "cpu"}
OC = {"network": "lenet", "ae_latent": 16, "hidden": 4, "preprocess": "gcn", "pretrain_epochs": 1, "epochs": 2,
      "batch_size": 16, "device": "cpu"}


def test_lenet_shapes_and_bias_free():
    import torch

    enc, dec = lenet_encoder(28, 32), lenet_decoder(28, 32)
    z = enc(torch.rand(2, 784))
    assert z.shape == (2, 32) and dec(z).shape == (2, 784)
    assert not any("bias" in k for k in [*enc.state_dict(), *dec.state_dict()])
    assert image_side(784) == 28
    for bad in (10, 100):  # not a square / side not a multiple of 4
        with pytest.raises(InputError):
            image_side(bad)


@pytest.mark.parametrize("objective", ["one-class", "soft-boundary"])
def test_deep_svdd_lenet_fit_save_load_deterministic(tmp_path, objective):
    X, T = _images(), _images(8, seed=1)
    T[:4] = 1 - T[:4]  # inverted images
    det = DeepSVDD(objective=objective, **SVDD).fit(X)
    s = det.score(T)["svdd_distance"]
    assert s.shape == (8,) and np.isfinite(s).all()
    assert det.module_meta_["side"] == 8 and det.prep_max_ > det.prep_min_
    np.testing.assert_array_equal(s, DeepSVDD(objective=objective, **SVDD).fit(X).score(T)["svdd_distance"])
    again = load_detector(det.save(tmp_path / "m"))
    np.testing.assert_allclose(again.score(T)["svdd_distance"], s, rtol=1e-6)


@pytest.mark.parametrize("freeze", [True, False])
def test_ocnn_lenet_fit_save_load_deterministic(tmp_path, freeze):
    X, T = _images(), _images(8, seed=1)
    det = OCNN(freeze_encoder=freeze, **OC).fit(X)
    s = det.score(T)["ocnn"]
    assert s.shape == (8,) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, OCNN(freeze_encoder=freeze, **OC).fit(X).score(T)["ocnn"])
    again = load_detector(det.save(tmp_path / "m"))
    np.testing.assert_allclose(again.score(T)["ocnn"], s, rtol=1e-6)


def test_lenet_rejects_non_image_rows():
    X = np.random.default_rng(0).normal(size=(20, 5))
    with pytest.raises(InputError, match="square"):
        DeepSVDD(**SVDD).fit(X)
    with pytest.raises(InputError, match="square"):
        OCNN(**OC).fit(X)
    with pytest.raises(InputError, match="network"):
        DeepSVDD(network="resnet", device="cpu").fit(X)


def test_mnist_one_class_defaults_use_the_cnn():
    from monitor.batch.oneclass import DEFAULTS

    svdd = DEFAULTS["deep-svdd"]["mnist"]
    assert svdd["network"] == "lenet" and svdd["preprocess"] == "gcn"
    lenet = [v for v in DEFAULTS["ocnn"]["mnist_variants"].values() if v.get("network") == "lenet"]
    assert lenet and all(v["preprocess"] == "gcn" for v in lenet)
    for name in ("deep-svdd", "ocnn"):  # the tabular protocols keep the dense nets
        assert DEFAULTS[name]["tabular"].get("network", "mlp") == "mlp"
        assert all(v.get("network", "mlp") == "mlp" for v in DEFAULTS[name]["variants"].values())


def test_deep_svdd_pretrain_settings_default_to_the_training_ones():
    X = _images()
    plain = DeepSVDD(**SVDD).fit(X)
    same = DeepSVDD(**SVDD, pretrain_lr=1e-3, pretrain_weight_decay=1e-6, pretrain_lr_milestone=1).fit(X)
    np.testing.assert_array_equal(plain.pretrain_loss_history_, same.pretrain_loss_history_)
    # lr 0: no weight moves (the loss varies only with the minibatches' batch-norm statistics)
    frozen = DeepSVDD(**{**SVDD, "pretrain_epochs": 3}, pretrain_lr=0.0).fit(X)
    assert np.ptp(frozen.pretrain_loss_history_) < 5e-4 * abs(frozen.pretrain_loss_history_[0])
    moving = DeepSVDD(**{**SVDD, "pretrain_epochs": 3}, pretrain_lr=1e-2).fit(X)
    assert np.ptp(moving.pretrain_loss_history_) > 1e-2 * abs(moving.pretrain_loss_history_[0])


def test_ocnn_rbf_units_find_a_ring_of_anomalies_the_linear_head_cannot(tmp_path):
    from monitor.evaluation import roc_auc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))  # normal: a blob at the origin; anomalies: a ring around it
    ang = rng.uniform(0, 2 * np.pi, 100)
    A = 4.0 * np.c_[np.cos(ang), np.sin(ang)]
    T, y = np.vstack([rng.normal(size=(100, 2)), A]), np.r_[np.zeros(100), np.ones(100)]
    kw = {"hidden": 32, "pretrain_epochs": 0, "epochs": 30, "lr": 1e-2, "device": "cpu"}
    rbf = OCNN(g="rbf", **kw).fit(X)
    assert roc_auc(y, rbf.score(T)["ocnn"]) > 0.95
    assert roc_auc(y, OCNN(g="sigmoid", **kw).fit(X).score(T)["ocnn"]) < 0.8  # a hyperplane cannot enclose
    narrow = OCNN(g="rbf", rbf_bandwidth=0.5, **kw).fit(X)
    assert narrow.rbf_scale_ == pytest.approx(0.5 * rbf.rbf_scale_)
    again = load_detector(rbf.save(tmp_path / "m"))
    np.testing.assert_allclose(again.score(T)["ocnn"], rbf.score(T)["ocnn"], rtol=1e-6)
    with pytest.raises(InputError, match="rbf_bandwidth"):
        OCNN(g="rbf", rbf_bandwidth=0, **kw).fit(X)
