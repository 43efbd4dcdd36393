"""ECG protocols (exact split sizes from PROTOCOLS.md) and the train/evaluate CLI on a small subset."""
from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.protocols.ecg import load_protocol, semi_split


def test_semi_split_rule():
    y = np.r_[np.zeros(100), np.ones(30)].astype(bool)
    tr, va, te = semi_split(y)
    assert (len(tr), len(va), len(te)) == (60, 10, 60)
    assert not y[tr].any() and not y[va].any() and y[te].sum() == 30
    assert len(set(tr) | set(va) | set(te)) == 130
    np.testing.assert_array_equal(tr, np.random.default_rng(0).permutation(100)[:60])


def test_ecg5000_semi_split_sizes(data_dir):
    d = load_protocol("ecg5000-semi", data_dir=data_dir)
    assert d.sizes() == {"train": 1751, "val": 291, "test_normal": 877, "test_anomalous": 2081}
    assert d.X_train.shape == (1751, 140, 1) and d.X_test.shape == (2958, 140, 1)
    assert d.threshold_on == "val" and d.seeds == (0, 1, 2)
    # the protocol's own recipe, independently
    from streams.datasets import load_ecg5000

    ds = load_ecg5000(data_dir)
    X, y = ds.pooled()
    normal = np.random.default_rng(0).permutation(np.flatnonzero(y == 1))
    np.testing.assert_array_equal(d.X_train[:, :, 0], X[normal[:1751]].astype(np.float32))
    np.testing.assert_array_equal(d.X_val[:, :, 0], X[normal[1751:2042]].astype(np.float32))


def test_ecg5000_unsup_sizes(data_dir):
    d = load_protocol("ecg5000-unsup", data_dir=data_dir)
    assert d.sizes() == {"train": 500, "val": 0, "test_normal": 2627, "test_anomalous": 1873}
    assert d.threshold_on == "train" and d.X_threshold is d.X_train


def test_other_datasets(data_dir):
    e = load_protocol(dataset="ecg200", data_dir=data_dir)
    assert e.protocol == "ecg200-semi"
    assert e.sizes() == {"train": 79, "val": 13, "test_normal": 41, "test_anomalous": 67}
    m = load_protocol("mitdb106-semi", data_dir=data_dir)
    s = m.sizes()
    assert s["test_anomalous"] > 500 and s["train"] > 850 and m.X_train.shape[1:] == (130, 1)
    assert set(np.unique(m.classes_test)) == {"N", "V"}


def test_cli_train_evaluate_smoke(data_dir, tmp_path):
    from monitor.cli import main

    model, report = tmp_path / "m", tmp_path / "r"
    tiny = ["--param", "hidden_size=8", "--param", "latent_dim=3", "--param", "n_samples=2", "--epochs", "1",
            "--device", "cpu", "--threads", "1", "--limit", "40", "--data-dir", str(data_dir)]
    assert main(["train", "vrae", "--protocol", "ecg5000-semi", "--seed", "0", "--out", str(model), *tiny]) == 0
    assert (model / "config.json").is_file() and (model / "weights.safetensors").is_file()
    info = json.loads((model / "train.json").read_text())
    assert info["protocol"] == "ecg5000-semi" and set(info["thresholds"]) >= {"reconstruction_probability"}
    assert main(["evaluate", str(model), "--out", str(report), "--data-dir", str(data_dir)]) == 0
    m = json.loads((report / "metrics.json").read_text())
    assert m["protocol"] == "ecg5000-semi"
    # the headline is the component declared before the run, not the best on the test split
    assert m["declared_component"] == info["declared_component"] == "latent_cluster"
    assert m["headline"]["roc_auc"] == m["components"]["latent_cluster"]["roc_auc"]
    assert m["post_hoc_best_component"] in m["components"] and "best_component" not in m
    for comp in ("reconstruction_error", "reconstruction_probability", "latent_wasserstein", "latent_cluster",
                 "latent_knn", "combined"):
        assert {"roc_auc", "pr_auc", "f1", "precision", "recall", "threshold", "protocol"} <= set(m["components"][comp])
    html = (report / "report.html").read_text()
    assert "latent_cluster (declared)" in html and "reconstruction_error (post-hoc)" in html
    assert "ROC" in html and "Latent space" in html and "reconstructions" in html
    # train + evaluate in one go, two seeds -> mean ± std
    r2 = tmp_path / "r2"
    assert main(["evaluate", "--train", "vrae", "--protocol", "ecg5000-unsup", "--seeds", "0", "1", "--out", str(r2),
                 "--no-html", *tiny]) == 0
    m2 = json.loads((r2 / "metrics.json").read_text())
    assert m2["components"]["latent_cluster"]["n_runs"] == 2 and m2["seeds"] == [0, 1]


def test_cli_errors_are_one_line(capsys):
    from monitor.cli import main

    assert main(["evaluate", "--out", "/tmp/x-anomon-none"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["train", "vrae", "--protocol", "nope", "--out", "/tmp/x-anomon-none"]) == 2


def test_default_components_are_the_development_choice():
    """Each detector's default component is the one its development run chose (docs/results/)."""
    from pathlib import Path

    from models import get_detector
    from monitor.protocols.ecg import declared_component

    res = json.loads((Path(__file__).parents[1] / "docs/results/default_components.json").read_text())
    for name, r in res["detectors"].items():
        assert get_detector(name).default_component_name() == r["chosen"]
        assert r["chosen"] == max(r["mean_roc_auc"], key=r["mean_roc_auc"].get)
        assert declared_component(name, "ecg200-semi") == r["chosen"]
