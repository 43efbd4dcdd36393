"""One default component per detector, used alike by bundles (the daemon), protocols, ensembles and reports.

Every tabular detector's default is its first component today, so the default is moved here (monkeypatch)
to one that is not first: each place must follow it.
"""
import numpy as np
import pytest

from models.statistical import RobustZScore


@pytest.fixture
def second_default(monkeypatch):
    monkeypatch.setattr(RobustZScore, "default_component", "mean_sq_z")
    assert RobustZScore.default_component_name() == "mean_sq_z"


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 4)), np.vstack([rng.normal(size=(50, 4)), rng.normal(size=(10, 4)) + 4])


def test_bundle_and_declared_component_follow_the_default(second_default, tmp_path):
    from monitor.modelstore import load_bundle, save_bundle
    from monitor.protocols.ecg import declared_component

    T, _ = _data()
    det = RobustZScore().fit(T)
    save_bundle(det, tmp_path / "b", window_length=1, stride=1, channels=4, calibration=T[:100, None, :])
    b = load_bundle(tmp_path / "b")
    assert b.alert_components == ["mean_sq_z"] and b.declared_component == "mean_sq_z"  # what the daemon alerts on
    assert declared_component("robust-zscore") == "mean_sq_z"  # what evaluate reports first


def test_ensemble_members_use_their_default(second_default):
    from models.sklearn_baselines import RankEnsemble

    T, Q = _data()
    ens = RankEnsemble(members=[["robust-zscore", {}]]).fit(T)
    s_t, s_q = (RobustZScore().fit(T).score(x)["mean_sq_z"] for x in (T, Q))
    q25, q50, q75 = np.percentile(s_t, [25, 50, 75])
    np.testing.assert_allclose(ens.score(Q)["ensemble"], (s_q - q50) / (q75 - q25))


def test_tabular_protocol_scores_the_default(second_default, monkeypatch):
    from monitor.protocols import tabular as tp

    T, Q = _data()
    X = np.vstack([T, Q])
    y = np.r_[np.zeros(350, dtype=int), np.ones(10, dtype=int)]
    monkeypatch.setattr(tp, "load_protocol_data", lambda ds, s: (X, y))
    r = tp.evaluate_detector(lambda s: RobustZScore(), "thyroid", [0])
    assert r["component"] == "mean_sq_z"
    tr, te = tp.dagmm_split(y, 0)
    s = RobustZScore().fit(X[tr]).score(X[te])["mean_sq_z"]
    assert r["per_seed"][0]["roc_auc"] == pytest.approx(tp.dagmm_metrics(y[te], s)["roc_auc"])


def test_demo_alerts_on_the_default(second_default, tmp_path, data_dir):
    import io

    from monitor.demo import ensure_demo_model
    from monitor.modelstore import load_bundle

    path, _ = ensure_demo_model(tmp_path / "demo", detector="robust-zscore", data_dir=data_dir, out=io.StringIO())
    assert load_bundle(path).alert_components == ["mean_sq_z"]
