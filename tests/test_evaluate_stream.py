"""``anomon evaluate-stream`` on small synthetic series written in tmp_path (monitor/evaluate_stream.py)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from monitor import evaluate_stream as es
from monitor.cli import main


def _write_csvs(folder, n_series=2, n=800, sep=",", label="label", seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_series):
        t = np.arange(n)
        x = 5.0 * np.sin(t / 15.0) * (k + 1) + rng.normal(0, 0.1, n) + 100 * k  # different scales and levels
        y = np.zeros(n, int)
        a = 500 + 60 * k
        x[a:a + 15] += 6.0 * (k + 1)
        y[a:a + 15] = 1
        pd.DataFrame({"timestamp": t, "value": x, "other": np.cos(t / 15.0), label: y}).to_csv(
            folder / f"s{k}.csv", index=False, sep=sep)
    return folder


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_writes_metrics_and_report(tmp_path, capsys):
    data = _write_csvs(tmp_path / "data")
    out = tmp_path / "out"
    rc, stdout, err = _run(["evaluate-stream", "--data", str(data), "--detector", "robust-zscore", "--window", "16",
                            "--train-frac", "0.4", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "NAB standard" in stdout
    m = json.loads((out / "metrics.json").read_text())  # strict JSON (NaN written as null)
    assert m["kind"] == "evaluate-stream" and m["n_series"] == 2
    for key in ("nab_standard", "nab_reward_low_FP_rate", "nab_reward_low_FN_rate", "range_precision", "range_recall",
                "range_f1", "point_f1", "roc_auc", "vus_pr", "ucr_top1"):
        assert key in m["mean"]
    s0 = m["series"]["s0"]
    assert s0["train_rows"] == 320 and s0["test_start"] == 320 and s0["unscored_points"] == 0
    assert s0["windows_scored"] == 800 - 16 + 1  # the whole series went through the windower
    assert s0["roc_auc"] > 0.9 and m["nab_corpus"]["standard"] > 50  # an easy spike is found early
    assert s0["alerts"] >= 1 and s0["nab_detail"]["standard"]["tp"] == 1
    html = (out / "report.html").read_text()
    assert "<img src=\"data:image/png;base64," in html and "metrics.json" in html
    assert "src=\"http" not in html  # self-contained


def test_stream_scores_equal_batch_scores_and_map_to_end_points():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 2))
    det = es._Scorer(type("D", (), {"input_kind": "tabular", "score": lambda self, X: {"s": X.sum(axis=1)}})(), "s")
    for T, S, chunk in ((10, 1, 7), (12, 5, 64), (8, 3, 1)):
        ends, sc = es.stream_scores(Z, "a", det, T, S, chunk=chunk)
        W = es._windows(Z, T, S)
        assert np.array_equal(ends, T - 1 + S * np.arange(len(W)))
        assert np.allclose(sc, W.reshape(len(W), -1).sum(axis=1), atol=1e-4)
        pts = es.to_points(300, ends, sc)
        assert np.isnan(pts[:T - 1]).all() and pts[T - 1] == sc[0]
        if S > 1:
            assert pts[T] == sc[0] and pts[T - 1 + S] == sc[1]  # carried forward until the next window ends


def test_semicolon_csv_train_glob_and_train_rows(tmp_path, capsys):
    data = _write_csvs(tmp_path / "data", sep=";", label="anomaly")
    free = tmp_path / "data" / "anomaly-free"
    free.mkdir()
    rng = np.random.default_rng(2)
    t = np.arange(600)
    pd.DataFrame({"datetime": t, "value": 5.0 * np.sin(t / 15.0) + rng.normal(0, 0.1, 600),
                  "other": np.cos(t / 15.0)}).to_csv(free / "free.csv", index=False, sep=";")
    series, train = es.load_folder(data, train_glob="anomaly-free/*")
    assert [s.name for s in series] == ["s0", "s1"] and [s.name for s in train] == ["anomaly-free/free"]
    assert series[0].values.shape[1] == 2  # value + other; the label and the time are not values
    with pytest.raises(es.UserError, match="free.csv: no label column"):
        es.load_folder(data)
    assert [s.name for s in es.load_folder(data, exclude="anomaly-free/*")[0]] == ["s0", "s1"]
    res = es.evaluate_stream(data, "robust-zscore", window=16, train_glob="anomaly-free/*", train_rows=100)
    s1 = res["series"]["s1"]
    assert s1["shared_model"] is True and s1["train_rows"] == 100 and s1["test_start"] == 100


def test_ucr_file_carries_its_training_span_and_top1(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    x = np.sin(np.arange(n) / 10.0) + rng.normal(0, 0.05, n)
    x[2200:2230] = 3.0  # 1-based 2201..2230
    d = tmp_path / "ucr"
    d.mkdir()
    with gzip.open(d / "001_UCR_Anomaly_toy_1000_2201_2230.txt.gz", "wt") as f:
        f.write("\n".join(f"{v:e}" for v in x))
    res = es.evaluate_stream(d, "robust-zscore", window=20)
    (s,) = res["series"].values()
    assert s["train_rows"] == 1000 and s["anomalous_points"] == 30 and s["ucr_top1"] == 1.0


def test_smd_layout_and_likelihood(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "smd"
    for sub in ("train", "test", "test_label"):
        (root / sub).mkdir(parents=True)
    tr = rng.normal(0.5, 0.01, (600, 3))
    te = rng.normal(0.5, 0.01, (600, 3))
    y = np.zeros(600, int)
    te[400:420, 1] += 0.3
    y[400:420] = 1
    np.savetxt(root / "train" / "machine-x.txt", tr, delimiter=",")
    np.savetxt(root / "test" / "machine-x.txt", te, delimiter=",")
    np.savetxt(root / "test_label" / "machine-x.txt", y, fmt="%d")
    lp = {"learning_period": 50, "estimation_samples": 100, "historic_window": 500, "reestimation_period": 20}
    res = es.evaluate_stream(root, "robust-zscore", window=10, likelihood=True, likelihood_params=lp)
    s = res["series"]["machine-x"]
    assert s["train_rows"] == 600 and s["points"] == 600 and s["threshold"] == 0.5
    assert s["nab_detail"]["standard"]["tp"] == 1 and s["roc_auc"] > 0.9


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"),
    ("badvalue", "row 12, column 'value': 'oops' is not a number"),
    ("nolabels", "no label column"),
    ("short", "shorter than one window"),
    ("nospan", "no training span"),
    ("badparams", "--params"),
])
def test_clear_one_line_errors(tmp_path, capsys, case, message):
    data = tmp_path / "data"
    args = ["--train-frac", "0.5"]
    if case == "nolabels":
        data.mkdir()
        pd.DataFrame({"value": np.arange(100.0)}).to_csv(data / "x.csv", index=False)
    elif case == "badvalue":
        data.mkdir()
        v = [str(float(i)) for i in range(100)]
        v[10] = "oops"
        pd.DataFrame({"value": v, "label": 0}).to_csv(data / "x.csv", index=False)
    elif case == "short":
        _write_csvs(data, n_series=1, n=20)
    elif case == "nospan":
        _write_csvs(data, n_series=1)
        args = []
    elif case == "badparams":
        _write_csvs(data, n_series=1)
        args += ["--params", '{"no_such": 1}']
    rc, _, err = _run(["evaluate-stream", "--data", str(data), "--detector", "robust-zscore", "--window", "32",
                       *args, "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert err.startswith("anomon: error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_same_file_names_in_subfolders_stay_apart(tmp_path):
    _write_csvs(tmp_path / "d" / "valve1", n_series=1)
    _write_csvs(tmp_path / "d" / "valve2", n_series=1, seed=5)
    res = es.evaluate_stream(tmp_path / "d", "robust-zscore", window=16, train_frac=0.4)
    assert sorted(res["series"]) == ["valve1/s0", "valve2/s0"] and res["n_series"] == 2
