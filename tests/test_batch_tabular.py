"""The batch-job framework (registry, config, CLI) and tiny runs of the tabular jobs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import load_detector
from monitor import batch
from monitor.batch import Job, available_jobs, get_job, parse_seeds, register_job, resolve_config, run_job
from monitor.errors import ConfigError, UserError

TINY_DAGMM = {"hidden": [4], "latent_dim": 1, "epochs": 2, "batch_size": 64, "lr": 1e-3}


@pytest.fixture()
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 4))
    y = np.zeros(160, dtype=int)
    X[:16] += 4.0
    y[:16] = 1
    p = tmp_path / "tiny.npz"
    np.savez(p, X=X, y=y)
    return p


def test_registry_lists_the_jobs():
    jobs = available_jobs()
    for name in ("dagmm", "dagmm-thyroid", "dagmm-arrhythmia", "dagmm-kddcup", "dagmm-kddcup-rev",
                 "aae", "wae", "deep-svdd", "ocnn", "compare"):
        assert name in jobs, name
        assert jobs[name].description
    assert jobs["dagmm"].accepts_data and not jobs["dagmm-thyroid"].accepts_data
    with pytest.raises(UserError, match="unknown batch job"):
        get_job("no-such-job")


def test_register_and_resolve_a_job(tmp_path):
    def run(out, cfg, progress):
        return {"n_seeds": len(list(progress(cfg["seeds"])))}

    register_job(Job("test-echo", "echo", run, {"seeds": 2, "alpha": 1}), replace=True)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_job(Job("test-echo", "other", run))
        cfg = resolve_config("test-echo", overrides={"alpha": 5})
        assert cfg["seeds"] == [0, 1] and cfg["alpha"] == 5
        with pytest.raises(UserError, match="--data"):
            resolve_config("test-echo", overrides={"data": "x.npz"})
        with pytest.raises(ConfigError, match="beta"):
            resolve_config("test-echo", overrides={"beta": 1})
        m = run_job("test-echo", tmp_path / "o", overrides={"seeds": "0,4,9"})
        assert m["n_seeds"] == 3
        saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
        assert saved["job"] == "test-echo" and saved["config"]["seeds"] == [0, 4, 9] and saved["runtime_s"] >= 0
        assert (tmp_path / "o" / "report.html").read_text().startswith("<!doctype html>")  # fallback report
    finally:
        batch._JOBS.pop("test-echo", None)


def test_parse_seeds():
    assert parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("20") == list(range(20))
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("x", 0, "", [], True):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)


def test_config_file_declares_a_job_on_user_data(tmp_path, tiny_npz):
    cfg_file = tmp_path / "batch.yaml"
    cfg_file.write_text(
        "batch:\n"
        "  defaults: {seeds: 1}\n"
        "  jobs:\n"
        "    dagmm-thyroid: {seeds: 20}\n"
        f"    my-sensors:\n      job: dagmm\n      data: {tiny_npz}\n      baseline: false\n"
        f"      detector_params: {json.dumps(TINY_DAGMM)}\n"
    )
    cfg = resolve_config("dagmm-thyroid", cfg_file)
    assert cfg["seeds"] == list(range(20)) and cfg["dataset"] == "thyroid"
    cfg = resolve_config("my-sensors", cfg_file)
    assert cfg["data"] == str(tiny_npz) and cfg["seeds"] == [0] and cfg["detector_params"]["epochs"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  dagmm-thyroid: {epochz: 3}\n")
    with pytest.raises(ConfigError, match="epochz"):
        resolve_config("dagmm-thyroid", bad)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("dagmm", tmp_path / "nope.yaml")


def test_dagmm_job_on_user_data_writes_metrics_report_and_models(tmp_path, tiny_npz):
    out = tmp_path / "run"
    m = run_job("dagmm", out, overrides={"data": str(tiny_npz), "seeds": "0,1", "detector_params": TINY_DAGMM})
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["job"] == "dagmm" and metrics["config"]["seeds"] == [0, 1]
    agg = metrics["results"]["dagmm"]["aggregate"]
    for k in ("precision", "recall", "f1", "roc_auc", "pr_auc"):
        assert agg[k]["n"] == 2 and 0.0 <= agg[k]["mean"] <= 1.0
    assert "isolation-forest" in metrics["results"] and metrics["verdict"]
    html = (out / "report.html").read_text()
    assert "DAGMM" in html and "IsolationForest" in html
    model_dir = out / "models" / "dagmm" / "seed-1"
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "weights.safetensors"]
    det = load_detector(model_dir)
    assert det.name == "dagmm" and det.score(np.zeros((3, 4)))["energy"].shape == (3,)
    assert m["runtime_s"] > 0


def test_dagmm_job_without_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--data"):
        run_job("dagmm", tmp_path / "x", overrides={"seeds": 1})


def test_cli_list_and_run(tmp_path, tiny_npz, capsys):
    from monitor.cli import main

    assert main(["batch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "dagmm-kddcup-rev" in out and "compare" in out
    rc = main(["batch", "dagmm", "--data", str(tiny_npz), "--out", str(tmp_path / "cli"), "--seeds", "1",
               "--set", f"detector_params={json.dumps(TINY_DAGMM)}", "--set", "baseline=false"])
    assert rc == 0
    assert (tmp_path / "cli" / "metrics.json").is_file() and (tmp_path / "cli" / "report.html").is_file()
    assert main(["batch", "dagmm-thyroid", "--data", str(tiny_npz), "--out", str(tmp_path / "y")]) == 2
    assert "does not take --data" in capsys.readouterr().err


def test_oneclass_and_compare_jobs_on_user_data(tmp_path, tiny_npz):
    m = run_job("deep-svdd", tmp_path / "svdd", overrides={
        "data": str(tiny_npz), "seeds": 1, "tabular_params": {"epochs": 2, "pretrain_epochs": 1, "hidden": [4]}})
    assert {r["detector"] for r in m["tabular_table"]} == {"deep-svdd one-class", "deep-svdd soft-boundary"}
    assert (tmp_path / "svdd" / "report.html").is_file()
    m = run_job("compare", tmp_path / "cmp", overrides={
        "data": str(tiny_npz), "seeds": 1, "detectors": ["isolation-forest", "knn", "robust-zscore"]})
    assert set(m["tables"]["f1"][0]) == {"detector", "tiny"}
    assert m["best"][str(tiny_npz)]["f1"] > 0.5
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "isolation-forest" in html and "Run time" in html


def test_isolation_forest_export_matches_sklearn():
    from sklearn.ensemble import IsolationForest

    from models.sklearn_baselines import IsolationForestDetector

    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(500, 4)), rng.normal(size=(100, 4)) * 2
    det = IsolationForestDetector(n_estimators=30, max_features=0.75, seed=2).fit(X)
    ref = IsolationForest(n_estimators=30, max_features=0.75, random_state=2).fit(X)
    np.testing.assert_allclose(det.score(T)["isolation"], -ref.score_samples(T), rtol=1e-12)


def test_mnist_one_class_protocol(data_dir, monkeypatch):
    monkeypatch.setenv("ANOMON_DATA", str(data_dir))
    from models.sklearn_baselines import IsolationForestDetector
    from monitor.batch.oneclass import evaluate_mnist_one_class, mnist_one_class_data

    X, Xte, yte = mnist_one_class_data(0)
    assert X.shape == (5923, 784)  # every 0 of train + valid (the 60k MNIST training digits)
    assert Xte.shape == (10000, 784) and int((yte == 0).sum()) == 980 and int(yte.sum()) == 9020
    res = evaluate_mnist_one_class(lambda d: IsolationForestDetector(n_estimators=10, seed=d), [1])
    assert res["per_digit"][0]["n_train"] == 6742 and res["mean_roc_auc"] > 0.9
