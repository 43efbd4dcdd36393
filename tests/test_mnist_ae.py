"""Image autoencoders (dense, conv, VAE) and the mnist-ae job (tiny run on the real data)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import available_detectors, load_detector


def test_image_detectors_are_registered():
    names = available_detectors()
    assert {"image-ae", "image-conv-ae", "image-vae"} <= set(names)


@pytest.mark.parametrize("kind,params", [
    ("image-ae", {"layers": 6, "latent": 4, "activation": "tanh", "hidden": [32, 16]}),
    ("image-ae", {"layers": 4, "latent": 4, "hidden": [32, 16], "loss": "bce"}),
    ("image-conv-ae", {"image_shape": [8, 8], "channels": [4, 8], "latent": 4}),
    ("image-vae", {"latent": 4, "hidden": [32, 16], "score_samples": 3}),
])
def test_reconstruction_error_ranks_unseen_patterns_higher(kind, params, tmp_path):
    rng = np.random.default_rng(0)
    # normal: a bright left half; anomaly: a bright right half
    normal = np.zeros((256, 64), np.float32)
    normal[:, [c for c in range(64) if c % 8 < 4]] = 0.9
    normal += 0.05 * rng.random(normal.shape).astype(np.float32)
    odd = np.zeros((8, 64), np.float32)
    odd[:, [c for c in range(64) if c % 8 >= 4]] = 0.9
    det = available_detectors()[kind](epochs=15, batch_size=64, lr=3e-3, progress=False, **params).fit(normal)
    s_n, s_a = det.score(normal[:16]), det.score(odd)
    for comp in s_n:
        assert s_a[comp].min() > np.median(s_n[comp]), comp
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m")
    for comp in s_n:
        np.testing.assert_allclose(back.score(odd)[comp], s_a[comp], rtol=1e-6)
    assert det.reconstruct(odd).shape == odd.shape


def test_grids():
    from monitor.batch.mnist_ae import full_grid, resolve_grid

    kinds = {(g["kind"], g.get("layers"), g.get("latent"), g.get("activation")) for g in full_grid()}
    assert ("dense", 4, 128, "tanh") in kinds and ("dense", 6, 32, "relu") in kinds
    assert any(k[0] == "conv" for k in kinds) and any(k[0] == "vae" for k in kinds)
    assert {g["lr"] for g in full_grid()} == {1e-3, 3e-3} and {g["batch_size"] for g in full_grid()} == {128, 256}
    with pytest.raises(Exception, match="grid"):
        resolve_grid("huge")


def test_tiny_job_run_writes_metrics_report_and_models(tmp_path, data_dir):
    from monitor.batch import run_job

    grid = [
        {"kind": "dense", "layers": 4, "latent": 8, "hidden": [64, 32], "epochs": 1, "batch_size": 256},
        {"kind": "vae", "latent": 4, "hidden": [64, 32], "epochs": 1, "batch_size": 256, "score_samples": 2},
    ]
    m = run_job("mnist-ae", tmp_path, overrides={"seeds": "0,1", "grid": grid, "max_train": 1200, "max_eval": 900,
                                                  "data_dir": str(data_dir)})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == "mnist-4-8" and saved["sizes"]["test_4"] == 982
    assert len(saved["ranking"]) == 2 + 4  # dense: mse, topk_se; vae: + neg_elbo, recon_nll
    assert [r["tune_roc_auc"] for r in saved["ranking"]] == sorted((r["tune_roc_auc"] for r in saved["ranking"]),
                                                                    reverse=True)
    for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy"):
        assert set(m["test"][k]) == {"mean", "std"}
    assert len(m["per_seed"]) == 2
    html = (tmp_path / "report.html").read_text()
    assert "Ranking" in html and "Confusion" in html and "data:image/png;base64" in html
    det = load_detector(tmp_path / "models" / "seed1")
    assert det.name in ("image-ae", "image-vae")
