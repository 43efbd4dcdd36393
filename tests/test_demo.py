"""`anomon demo` end to end, small: embedded broker, a quickly trained model, replayed ECG, summary and report."""
from __future__ import annotations

import io
import json

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]


def test_demo_runs_end_to_end_and_loses_nothing(tmp_path, data_dir):
    from monitor.demo import run_demo

    out = io.StringIO()
    s = run_demo(6.0, model_dir=str(tmp_path / "model"), series=1, speed=20.0, detector="robust-zscore",
                 json_path=str(tmp_path / "summary.json"), out_dir=str(tmp_path / "report"), data_dir=data_dir,
                 out=out, refresh_s=1.0)
    text = out.getvalue()
    assert "anomon demo summary" in text and "mitdb-106 " in text
    assert s["windows_scored"] > 100 and s["windows_lost"] == 0 and s["duplicates"] == 0
    assert s["abnormal_beats"] > 0 and s["windows_labelled_anomalous"] > 0
    for k in ("precision", "recall", "f1", "throughput_readings_per_s", "latency_ms", "window_roc_auc"):
        assert k in s
    assert json.loads((tmp_path / "summary.json").read_text())["windows_scored"] == s["windows_scored"]
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
    # the second run uses the cached model
    out2 = io.StringIO()
    run_demo(2.0, model_dir=str(tmp_path / "model"), series=1, speed=5.0, detector="robust-zscore",
             out_dir=str(tmp_path / "report2"), data_dir=data_dir, out=out2, refresh_s=1.0)
    assert "(cached)" in out2.getvalue()


@pytest.mark.timeout(60)
def test_calibration_windows_share_no_reading_with_training_windows(data_dir):
    import numpy as np

    from monitor.demo import FS, REPLAY_FROM_MINUTE, T, TRAIN_MINUTES, _training_windows, cal_span
    from streams.datasets import load_mitdb_record

    X, Xcal = _training_windows("106", data_dir)
    sig = load_mitdb_record("106", data_dir).signal[:, 0].astype(np.float32)
    n_train = int(TRAIN_MINUTES * 60 * FS)
    a, b = cal_span(n_train)
    assert a >= n_train and b <= int(REPLAY_FROM_MINUTE * 60 * FS) and len(Xcal) > 1000
    # each calibration window is a slice of [a, b), each training window a slice of [0, n_train)
    first, last = Xcal[0, :, 0], Xcal[-1, :, 0]
    starts = [i for i in range(a, b - T + 1) if np.array_equal(sig[i:i + T], first)]
    assert starts and starts[0] >= n_train
    assert any(np.array_equal(sig[i:i + T], last) for i in range(b - T - 9, b - T + 1))
    assert not any(np.array_equal(X[-1, :, 0], sig[i:i + T]) for i in range(n_train - T + 1, n_train))
