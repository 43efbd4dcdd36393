"""The detector contract, run automatically over every registered detector.

A detector opts into faster settings with the class attribute ``_contract_params``.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from models import Detector, NotFittedError, Scores, available_detectors, load_detector
from models.base import DetectorError, IncompatibleModelError, InputError

DETECTORS = available_detectors()


#: windows of the contract data: steps and channels (5, so that a spike in channel 3 of 5 can be explained)
T_STEPS, N_CHANNELS = 24, 5


def _data(cls: type[Detector], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if cls.input_kind == "window":
        t = np.linspace(0, 4 * np.pi, T_STEPS, dtype=np.float32)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        chans = [np.sin(t[None, :] + phase), np.cos(t[None, :] + phase), np.sin(2 * t[None, :] + phase),
                 np.cos(0.5 * t[None, :] + phase), np.sin(t[None, :] + phase + 1.0)]
        return np.stack(chans, axis=-1).astype(np.float32) + 0.05 * rng.normal(
            size=(n, T_STEPS, N_CHANNELS)
        ).astype(np.float32)
    X = rng.normal(size=(n, 5))
    X[:, 1] = X[:, 0] * 0.5 + 0.1 * X[:, 1]
    return X


def _make(cls: type[Detector]) -> Detector:
    return cls(**cls._contract_params)


@pytest.fixture(scope="module", params=sorted(DETECTORS), ids=sorted(DETECTORS))
def fitted(request):
    cls = DETECTORS[request.param]
    det = _make(cls)
    out = det.fit(_data(cls, 96, 0))
    return cls, det, out


def test_registry_is_populated():
    assert "robust-zscore" in DETECTORS
    assert len(DETECTORS) >= 2, f"only {sorted(DETECTORS)} registered"


def test_fit_returns_self(fitted):
    _, det, out = fitted
    assert out is det


def test_init_only_stores_hyperparameters():
    for cls in DETECTORS.values():
        det = _make(cls)
        learned = [k for k in vars(det) if k.endswith("_") and not k.startswith("_")]
        assert not learned, f"{cls.name}: __init__ set learned attributes {learned}"
        assert set(det.get_params()) == set(cls._param_names())
        json.dumps(det.get_params())  # hyperparameters must be JSON-able to be saved


def test_components_match_declaration(fitted):
    cls, det, _ = fitted
    s = det.score(_data(cls, 10, 1))
    assert isinstance(s, Scores)
    assert list(s) == [c.name for c in cls.components]
    assert all(c.direction == "higher" for c in cls.components)
    for name in s:
        assert s[name].shape == (10,)
        assert np.isfinite(s[name]).all(), f"{cls.name}.{name} gave non-finite scores"


def test_scoring_is_deterministic(fitted):
    cls, det, _ = fitted
    X = _data(cls, 12, 2)
    a, b = det.score(X), det.score(X)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{cls.name}.{name}")


def test_scoring_is_batch_invariant(fitted):
    cls, det, _ = fitted
    X = _data(cls, 17, 3)
    whole = det.score(X)
    parts = Scores.concat([det.score(X[:1]), det.score(X[1:9]), det.score(X[9:])])
    for name in whole:
        np.testing.assert_allclose(parts[name], whole[name], rtol=1e-4, atol=1e-6, err_msg=f"{cls.name}.{name}")


def test_save_load_round_trip(fitted, tmp_path):
    cls, det, _ = fitted
    X = _data(cls, 9, 4)
    det.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "weights.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["detector"] == cls.name
    loaded = load_detector(tmp_path / "m")
    assert type(loaded) is cls
    a, b = det.score(X), loaded.score(X)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-9, err_msg=f"{cls.name}.{name}")


def test_score_before_fit_raises_not_fitted():
    for cls in DETECTORS.values():
        with pytest.raises(NotFittedError, match="fit"):
            _make(cls).score(_data(cls, 3, 5))


def test_bad_input_is_rejected(fitted):
    cls, det, _ = fitted
    X = _data(cls, 4, 6)
    X[1, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        det.score(X)
    with pytest.raises(InputError, match="shape"):
        det.score(np.zeros(5))
    wrong_width = X[..., :-1]
    with pytest.raises(InputError):
        det.score(np.nan_to_num(wrong_width))


SPIKE_CHANNEL = 2  # channel 3 of 5
SPIKE_STEPS = slice(10, 13)


def test_explain_ranks_a_spiked_channel_first_and_spans_the_spike(fitted):
    """A spike in channel 3 of 5 (feature 3 of 5 for tabular detectors) ranks that channel first, and the
    span of a window covers the spiked steps (and not half the window)."""
    cls, det, _ = fitted
    X = _data(cls, 6, 7)
    if not cls.can_explain:
        with pytest.raises(DetectorError, match="cannot explain"):
            det.explain(X)
        return
    spiked = X.copy()
    if cls.input_kind == "window":
        spiked[:, SPIKE_STEPS, SPIKE_CHANNEL] += 6.0
    else:
        spiked[:, SPIKE_CHANNEL] += 8.0
    e = det.explain(spiked, top_k=3)
    n_ch = N_CHANNELS if cls.input_kind == "window" else X.shape[1]
    assert e.shares.shape == (6, n_ch) and e.top.shape == (6, 3) and e.span.shape == (6, 2)
    assert (e.shares >= 0).all()
    np.testing.assert_allclose(e.shares.sum(axis=1), 1.0, rtol=1e-9)
    assert e.top[:, 0].tolist() == [SPIKE_CHANNEL] * 6, f"{cls.name}: shares {e.shares.round(3).tolist()}"
    if cls.input_kind == "window":
        start, stop = e.span[:, 0], e.span[:, 1]
        assert (start <= SPIKE_STEPS.start).all() and (stop >= SPIKE_STEPS.stop).all(), f"{cls.name}: {e.span.tolist()}"
        assert (stop - start <= T_STEPS // 2).all(), f"{cls.name}: spans {e.span.tolist()} are not localised"
    else:
        assert e.span.tolist() == [[0, 1]] * 6
    # a normal window's explanation is well formed too, and windows are explained independently of their batch
    plain = det.explain(X, top_k=10)
    assert plain.top.shape == (6, n_ch)
    np.testing.assert_allclose(plain.shares.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(det.explain(spiked[:2]).shares, e.shares[:2], rtol=1e-4, atol=1e-6)


def test_pickle_bearing_model_is_rejected_without_executing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps({"format_version": 1, "detector": "robust-zscore", "params": {}, "state": {}})
    )
    (d / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(IncompatibleModelError, match="safetensors"):
        load_detector(d)
    assert not marker.exists()


def test_incompatible_format_version(tmp_path):
    cls = DETECTORS["robust-zscore"]
    det = _make(cls).fit(_data(cls, 20, 0))
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleModelError, match="format_version 99"):
        load_detector(tmp_path / "m")
    with pytest.raises(IncompatibleModelError, match="no such model config"):
        load_detector(tmp_path / "missing")


# --------------------------------------------------------------------------- devices
TORCH_DETECTORS = sorted(n for n, c in DETECTORS.items() if "device" in c._param_names())


def test_a_model_saved_for_cuda_loads_on_a_machine_without_one(tmp_path, monkeypatch, caplog):
    """Trained on a GPU, served on a CPU: weights are saved device-free, so the model loads on the CPU."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in TORCH_DETECTORS:
        cls = DETECTORS[name]
        X = _data(cls, 9, 4)
        det = _make(cls).fit(_data(cls, 48, 0))
        det.save(tmp_path / name)
        cfg_file = tmp_path / name / "config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["params"]["device"] = "cuda"  # as written by a fit on a GPU
        cfg_file.write_text(json.dumps(cfg))
        with caplog.at_level("WARNING", logger="models.torch_base"):
            loaded = load_detector(tmp_path / name)
        assert loaded.device == "cpu", name
        assert "no CUDA device" in caplog.text
        a, b = det.score(X), loaded.score(X)
        for comp in a:
            np.testing.assert_allclose(b[comp], a[comp], rtol=1e-6, atol=1e-9, err_msg=f"{name}.{comp}")


@pytest.mark.gpu
@pytest.mark.parametrize("name", TORCH_DETECTORS)
def test_fit_and_score_on_cuda_then_reload(name, tmp_path):
    """Every torch detector trains and scores on CUDA, batch-invariantly, and its saved model
    scores the same after a reload (on the GPU here, on the CPU elsewhere)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cls = DETECTORS[name]
    det = cls(**{**cls._contract_params, "device": "cuda"}).fit(_data(cls, 96, 0))
    assert next(det.module_.parameters()).is_cuda
    X = _data(cls, 10, 1)
    s = det.score(X)
    assert list(s) == [c.name for c in cls.components]
    for comp in s:
        assert np.isfinite(s[comp]).all(), f"{name}.{comp}"
    part = det.score(X[:4])
    for comp in s:
        np.testing.assert_allclose(part[comp], s[comp][:4], rtol=1e-3, atol=1e-5, err_msg=f"{name}.{comp}")
    det.save(tmp_path / "m")
    again = load_detector(tmp_path / "m").score(X)
    for comp in s:
        np.testing.assert_allclose(again[comp], s[comp], rtol=1e-4, atol=1e-6, err_msg=f"{name}.{comp}")
