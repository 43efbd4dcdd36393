"""Model bundles: clear errors for missing, corrupt and incompatible bundles; hot reload keeps the old model
when the new one fails; no pickle anywhere; the daemon swaps models without losing windows."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from monitor.modelstore import ModelBundleError, ModelWatcher, load_bundle
from tests.fixtures.daemon import make_bundle


@pytest.fixture
def bundle_dir(tmp_path, daemon_bundle):
    d = tmp_path / "model"
    shutil.copytree(daemon_bundle, d)
    return d


def test_load_and_score(bundle_dir):
    b = load_bundle(bundle_dir)
    assert (b.length, b.stride, b.channels) == (16, 4, 1)
    s = b.score_windows(np.zeros((3, 16, 1), dtype=np.float32))
    assert s.n == 3 and set(s) == set(b.components) and set(b.thresholds) == set(b.components)
    assert len(b.calibration[b.components[0]]) > 100


@pytest.mark.parametrize("damage,needle", [
    (lambda d: shutil.rmtree(d), "does not exist"),
    (lambda d: (d / "anomon.json").unlink(), "anomon.json: missing"),
    (lambda d: (d / "anomon.json").write_text("{not json"), "corrupt"),
    (lambda d: (d / "weights.safetensors").write_bytes(b"\x00garbage"), "not a valid safetensors"),
    (lambda d: (d / "config.json").write_text(json.dumps({"format_version": 99})), "format_version 99"),
    (lambda d: (d / "anomon.json").write_text(json.dumps({**json.loads((d / "anomon.json").read_text()),
                                                           "window": {"length": 0}})), "field 'window'"),
    (lambda d: (d / "anomon.json").write_text(json.dumps({**json.loads((d / "anomon.json").read_text()),
                                                           "window": {"length": 99, "stride": 1, "channels": 1}})),
     "cannot score a window"),
])
def test_bad_bundles_give_clear_errors(bundle_dir, damage, needle):
    damage(bundle_dir)
    with pytest.raises(ModelBundleError) as e:
        load_bundle(bundle_dir)
    assert needle in str(e.value)


def test_pickle_bearing_model_is_rejected_without_running_it(bundle_dir, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (bundle_dir / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelBundleError):
        load_bundle(bundle_dir)
    assert not marker.exists()


def test_hot_reload_keeps_old_model_on_failure(bundle_dir, tmp_path):
    w = ModelWatcher(bundle_dir, interval_s=0.01)
    v0 = w.bundle.version
    # a broken file: the old model keeps serving and the failure is recorded
    (bundle_dir / "anomon.json").write_text("{broken")
    time.sleep(0.02)
    assert w.poll() is None
    assert w.bundle.version == v0 and w.failures == 1 and "corrupt" in w.last_error
    # a good new model: swapped in
    make_bundle(tmp_path / "new", version="v2")
    for f in ("config.json", "weights.safetensors", "anomon.json"):
        shutil.copy(tmp_path / "new" / f, bundle_dir / f)
    time.sleep(0.02)
    new = w.poll()
    assert new is not None and w.bundle.version == "v2" and w.reloads == 1
    # SIGHUP path: an explicit request reloads even without a change
    w.request_reload()
    assert w.poll() is not None and w.reloads == 2
