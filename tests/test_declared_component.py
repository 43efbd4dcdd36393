"""Pre-declared components (issue 21): a bundle records the component it reports and alerts on (the
detector's default, chosen on development data, unless one is given), the daemon flags windows on that
one only, and a bundle written before the field existed still reads."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import get_detector
from models.base import Scores
from models.thresholds import StreamThresholds
from monitor.modelstore import load_bundle, save_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = np.sin(np.linspace(0, 20, 16))[None, :, None] + 0.05 * rng.standard_normal((64, 16, 1))
    det = get_detector("lstm-ae")(hidden_size=8, latent_dim=2, epochs=2, batch_size=32, patience=2,
                                  device="cpu", n_threads=1).fit(X.astype(np.float32))
    return save_bundle(det, tmp_path_factory.mktemp("b") / "lstm", window_length=16, stride=4, channels=1,
                       calibration=X.astype(np.float32), fpr=0.05)


def test_bundle_records_the_detectors_declared_component(bundle_dir):
    cls = get_detector("lstm-ae")
    assert cls.default_component == "reconstruction_mse" != cls.components[0].name  # not just the first
    meta = json.loads((bundle_dir / "anomon.json").read_text())
    assert meta["declared_component"] == meta["alert_components"][0] == "reconstruction_mse"
    assert "default component" in meta["declared_component_from"]
    b = load_bundle(bundle_dir)
    assert b.declared_component == b.alert_components[0] == "reconstruction_mse"


def test_daemon_flags_windows_on_the_declared_component_only(bundle_dir):
    b = load_bundle(bundle_dir)
    # as the daemon builds them (monitor/daemon/loop.py): the bundle's thresholds and alert components
    th = StreamThresholds(b.thresholds, b.alert_components, b.calibration, "calibrated", 1e-3, 10)
    other = next(c for c in b.components if c != b.declared_component)
    n = 3
    data = {c: np.full(n, b.thresholds[c] / 2 if b.thresholds[c] > 0 else -1.0) for c in b.components}
    data[other] = np.full(n, abs(b.thresholds[other]) * 10 + 1)  # far above its threshold: not an alert component
    flags, _ = th.classify(Scores(data), n, "t:0")
    assert not flags.any()
    data[b.declared_component] = np.full(n, abs(b.thresholds[b.declared_component]) * 10 + 1)
    flags, _ = th.classify(Scores(data), n, "t:0")
    assert flags.all()


def test_a_bundle_without_the_field_reads_its_alert_component_as_declared(bundle_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(bundle_dir, old)
    meta = json.loads((old / "anomon.json").read_text())
    del meta["declared_component"], meta["declared_component_from"]
    (old / "anomon.json").write_text(json.dumps(meta))
    assert load_bundle(old).declared_component == meta["alert_components"][0]
