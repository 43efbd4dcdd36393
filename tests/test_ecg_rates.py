"""ECG records at other sampling rates (issue 24): beat windows in seconds, records resampled to the
model's rate, any WFDB folder (``--wfdb DIR``), and ``anomon data list`` on a given folder.

The 128 Hz and 250 Hz records are MIT-BIH 106 (its first 5 minutes) resampled and written with
``wfdb.wrsamp`` into a temporary folder; nothing is committed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import streams.datasets as ds
from monitor.errors import UserError
from monitor.protocols.ecg import BEAT_FS, BEAT_WINDOW_S, load_protocol, semi_split

MINUTES = 5


def _write(rec, fs: int, directory, name: str, with_ann: bool = True) -> None:
    import wfdb

    r, _ = ds.resample_record(rec, fs)
    n = fs * 60 * MINUTES
    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=r.units, sig_name=r.channels, p_signal=r.signal[:n], fmt=["16"] * len(r.channels),
                write_dir=str(directory))
    if with_ann:
        keep = r.ann_samples < n
        wfdb.wrann(name, "atr", r.ann_samples[keep], list(r.ann_symbols[keep]), write_dir=str(directory), fs=fs)


@pytest.fixture(scope="module")
def rec106(data_dir):
    return ds.load_mitdb_record(106, data_dir)


@pytest.fixture(scope="module")
def wfdb_dir(rec106, tmp_path_factory):
    """A WFDB folder of another 'database': r128 (128 Hz) and r250 (250 Hz), both MIT-BIH 106 resampled."""
    d = tmp_path_factory.mktemp("otherdb")
    _write(rec106, 128, d, "r128")
    _write(rec106, 250, d, "r250")
    return d


def test_beat_window_in_seconds():
    assert BEAT_FS == 360 and ds.beat_window(BEAT_WINDOW_S, 360) == (90, 170)
    assert ds.beat_window(BEAT_WINDOW_S, 128) == (32, 60)  # 0.25 s / 0.47 s at 128 Hz


def test_360_hz_unchanged(data_dir):
    """At MIT-BIH's own rate nothing is resampled: the windows are the (90, 170)-sample ones, bit for bit."""
    m = load_protocol("mitdb106-semi", data_dir=data_dir)
    b = ds.load_mitdb_beats(106, window=(90, 170), data_dir=data_dir, keep_symbols=("N", "V"))
    X = b.X[:, ::2].astype(np.float32)
    tr, va, te = semi_split(b.symbols != "N")
    np.testing.assert_array_equal(m.X_train[:, :, 0], X[tr])
    np.testing.assert_array_equal(m.X_val[:, :, 0], X[va])
    np.testing.assert_array_equal(m.X_test[:, :, 0], X[te])
    assert m.info["warnings"] == [] and "resampled" not in m.info and m.info["window"] == [90, 170]


def test_resampled_annotations_map(rec106):
    r128, info = ds.resample_record(rec106, 128)
    assert (info["up"], info["down"], info["effective_hz"]) == (16, 45, 128.0) and r128.fs == 128
    assert abs(r128.n_samples - rec106.n_samples * 128 / 360) <= 1
    np.testing.assert_allclose(r128.ann_samples, rec106.ann_samples * 128 / 360, atol=0.5)
    assert list(r128.ann_symbols) == list(rec106.ann_symbols)
    back, _ = ds.resample_record(r128, 360)
    assert np.max(np.abs(back.ann_samples - rec106.ann_samples)) <= 2  # round trip: within 2 samples at 360 Hz
    same, i = ds.resample_record(rec106, 360)
    assert same is rec106 and (i["up"], i["down"]) == (1, 1)


@pytest.mark.parametrize("name,fs,ratio", [("r128", 128, (45, 16)), ("r250", 250, (36, 25))])
def test_other_rate_gives_the_models_windows_centred(wfdb_dir, data_dir, name, fs, ratio):
    d = load_protocol(wfdb=wfdb_dir, record=name)
    ref = load_protocol("mitdb106-semi", data_dir=data_dir)
    assert d.protocol == f"wfdb-{name}-semi" and d.X_train.shape[1:] == ref.X_train.shape[1:] == (130, 1)
    assert (d.info["resampled"]["up"], d.info["resampled"]["down"]) == ratio and d.info["record_fs"] == fs
    assert d.info["warnings"] == [
        f"record {name}: sampled at {fs} Hz, the model's rate is 360 Hz; resampled to 360 Hz "
        f"(resample_poly up={ratio[0]} down={ratio[1]}), annotations alike"]
    # the beats are centred as at 360 Hz: the mean normal beat peaks at the same step (the R peak, 90 / 2)
    a, b = d.X_train[:, :, 0].mean(0), ref.X_train[:, :, 0].mean(0)
    assert int(np.argmax(np.abs(a - np.median(a)))) == int(np.argmax(np.abs(b - np.median(b)))) == 45
    assert np.corrcoef(a, b)[0, 1] > 0.98


def test_fs_is_the_models_rate(wfdb_dir):
    d = load_protocol(wfdb=wfdb_dir, record="r128", fs=250)
    assert d.X_train.shape[1:] == (90, 1)  # (62 + 118) samples at 250 Hz, decimated by 2
    assert "the model's rate is 250 Hz" in d.info["warnings"][0]
    assert load_protocol(wfdb=wfdb_dir, record="r250", fs=250).info["warnings"] == []


def test_wfdb_folder_errors_name_the_file(wfdb_dir, tmp_path):
    with pytest.raises(UserError, match=r"r999\.hea.*records in .*: r128, r250"):
        load_protocol(wfdb=wfdb_dir, record="r999")
    with pytest.raises(UserError, match="several records .*--record NAME"):
        load_protocol(wfdb=wfdb_dir)
    no_ann = tmp_path / "no-ann"
    no_ann.mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(wfdb_dir / f"r128.{ext}", no_ann)
    with pytest.raises(UserError, match=r"annotation file of record r128 not found: .*no-ann/r128\.atr"):
        load_protocol(wfdb=no_ann)  # the folder's only record
    (no_ann / "r128.dat").unlink()
    with pytest.raises(UserError, match=r"signal file of record r128 not found: .*no-ann/r128\.dat"):
        load_protocol(wfdb=no_ann, record="r128")
    norate = tmp_path / "no-rate"
    norate.mkdir()
    for ext in ("dat", "atr"):
        shutil.copy(wfdb_dir / f"r128.{ext}", norate)
    lines = (wfdb_dir / "r128.hea").read_text().splitlines()
    (norate / "r128.hea").write_text("\n".join(["r128 2"] + lines[1:]) + "\n")
    with pytest.raises(UserError, match=r"r128\.hea: the WFDB header gives no sampling rate"):
        load_protocol(wfdb=norate, record="r128")
    with pytest.raises(ds.DatasetFormatError, match="no sampling rate"):  # never the WFDB default of 250 Hz
        ds.load_wfdb_record(norate / "r128")


def test_records_file_names_the_records(wfdb_dir, tmp_path):
    d = tmp_path / "db"
    shutil.copytree(wfdb_dir, d)
    (d / "RECORDS").write_text("r250\n")
    assert ds.record_names(d) == ["r250"]
    assert load_protocol(wfdb=d).protocol == "wfdb-r250-semi"  # the only record RECORDS lists


def test_cli_wfdb_train_and_evaluate(wfdb_dir, data_dir, tmp_path, capsys):
    """A model trained at 360 Hz on MIT-BIH scores a 128 Hz record of another folder, with the warning in
    metrics.json; --train with --wfdb trains on the folder's record."""
    from monitor.cli import main

    model, rep = tmp_path / "m", tmp_path / "r"
    assert main(["train", "knn", "--dataset", "mitdb-106", "--data-dir", str(data_dir), "--limit", "60",
                 "--out", str(model)]) == 0
    info = json.loads((model / "train.json").read_text())
    assert info["fs"] == 360 and info["window_s"] == list(BEAT_WINDOW_S) and info["warnings"] == []
    assert main(["evaluate", str(model), "--wfdb", str(wfdb_dir), "--record", "r128", "--limit", "60",
                 "--out", str(rep), "--no-html"]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    assert m["protocol"] == "wfdb-r128-semi" and m["sampling"]["record_fs"] == 128 and m["sampling"]["fs"] == 360
    assert len(m["warnings"]) == 1 and "sampled at 128 Hz, the model's rate is 360 Hz" in m["warnings"][0]
    assert m["headline"]["roc_auc"] > 0.9  # N vs V of record 106, seen through 128 Hz
    capsys.readouterr()
    assert main(["evaluate", "--train", "knn", "--wfdb", str(wfdb_dir), "--record", "r250", "--fs", "250",
                 "--seeds", "0", "--limit", "60", "--out", str(tmp_path / "r2"), "--no-html"]) == 0
    m2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert m2["warnings"] == [] and m2["sampling"]["fs"] == 250
    assert json.loads((tmp_path / "r2" / "models" / "seed-0" / "train.json").read_text())["fs"] == 250
    # a model trained on a WFDB folder's record is evaluated on it again from its train.json alone
    assert main(["evaluate", str(tmp_path / "r2" / "models" / "seed-0"), "--limit", "60", "--out",
                 str(tmp_path / "r3"), "--no-html"]) == 0
    m3 = json.loads((tmp_path / "r3" / "metrics.json").read_text())
    assert m3["protocol"] == "wfdb-r250-semi" and m3["sampling"]["fs"] == 250 and m3["warnings"] == []
    assert m3["headline"]["roc_auc"] == m2["headline"]["roc_auc"]
    capsys.readouterr()
    assert main(["evaluate", str(model), str(tmp_path / "r2" / "models" / "seed-0"), "--wfdb", str(wfdb_dir),
                 "--record", "r128", "--out", str(tmp_path / "x")]) == 2
    assert "trained at different rates (250, 360 Hz)" in capsys.readouterr().err
    assert main(["evaluate", "--train", "knn", "--wfdb", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "WFDB folder not found" in err and "none" in err


def _data_list(main, capsys, root):
    capsys.readouterr()
    assert main(["data", "--data-dir", str(root), "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return {r["name"]: r for r in out["datasets"]}, out


def test_data_list_on_a_given_folder(data_dir, rec106, tmp_path, capsys):
    from monitor.cli import main

    one = tmp_path / "one" / "mitdb"  # one MIT-BIH record, copied
    one.mkdir(parents=True)
    for ext in ("hea", "dat", "atr"):
        shutil.copy(data_dir / "mitdb" / f"106.{ext}", one)
    rows, _ = _data_list(main, capsys, one.parent)
    assert rows["mitdb"]["present"] == "yes" and rows["mitdb"]["checksum"] == "ok"
    assert rows["mitdb"]["records"] == ["106"] and rows["ecg5000"]["present"] == "no"
    assert main(["data", "--data-dir", str(one.parent), "list"]) == 0
    table = capsys.readouterr().out
    assert "mitdb: 1 record(s) load (106; 360 Hz)" in table
    assert not any(ln.strip().startswith("mitdb:") for ln in table.split("missing datasets")[-1].splitlines())

    other = tmp_path / "other"  # a record at 128 Hz under mitdb/, and one loose in the folder itself
    _write(rec106, 128, other / "mitdb", "x128")
    _write(rec106, 128, other, "loose")
    _write(rec106, 128, other / "mitdb", "noann", with_ann=False)
    rows, out = _data_list(main, capsys, other)
    assert rows["mitdb"]["present"] == "yes" and rows["mitdb"]["records"] == ["x128"]
    assert rows["mitdb"]["rates_hz"] == [128.0] and rows["mitdb"]["checksum"] == "unlisted"
    assert "noann.atr" in rows["mitdb"]["records_not_loading"]["noann"][0]
    assert out["wfdb_records"] == [{"record": "loose", "fs": 128.0}]
    # and the record it lists does load from there, resampled to the model's rate
    d = load_protocol(dataset="mitdb-x128", data_dir=other)
    assert d.X_train.shape[1:] == (130, 1) and d.info["record_fs"] == 128 and d.info["warnings"]

    empty = tmp_path / "empty"
    empty.mkdir()
    rows, _ = _data_list(main, capsys, empty)
    assert rows["mitdb"]["present"] == "no" and rows["mitdb"]["checksum"] == "missing"


def test_docs_table_matches_its_results_file():
    """docs/ecg.md's table is docs/results/ecg_rates.json (monitor.experiments.ecg_rates), rounded."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    res = json.loads((repo / "docs/results/ecg_rates.json").read_text())["records"]
    cols = ["360 Hz (the record as is)", "128 Hz resampled to 360 Hz", "128 Hz not resampled (before)",
            "250 Hz resampled to 360 Hz", "250 Hz not resampled (before)"]
    rows = re.findall(r"^\| (\d+), (\w+)[^|]*\|(.*)\|$", (repo / "docs/ecg.md").read_text(), re.M)
    assert len(rows) == 4
    for record, det, cells in rows:
        got = [tuple(float(v) for v in c.split("/")) for c in cells.split("|")]
        want = [(round(res[record][det][c]["roc_auc"], 4), round(res[record][det][c]["f1"], 3)) for c in cols]
        assert got == want, (record, det)


def test_a_record_without_normal_or_anomalous_beats(tmp_path):
    import wfdb

    sig = np.random.default_rng(0).normal(size=(3600, 1))
    for name, sym in (("allv", "V"), ("alln", "N")):
        wfdb.wrsamp(name, fs=360, units=["mV"], sig_name=["II"], p_signal=sig, fmt=["16"], write_dir=str(tmp_path))
        wfdb.wrann(name, "atr", np.arange(200, 3400, 300), [sym] * 11, write_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"allv.*no normal \('N'\) beats to train on"):
        load_protocol(wfdb=tmp_path, record="allv")
    d = load_protocol(wfdb=tmp_path, record="alln")
    assert d.sizes()["test_anomalous"] == 0 and "no anomalous beats" in d.info["warnings"][0]


def test_train_data_wfdb_records_of_one_rate(wfdb_dir, tmp_path):
    """``--data DIR`` (series windows in readings): records at different rates are refused, one rate is recorded."""
    from monitor.training import TrainingDataError, read_series

    with pytest.raises(TrainingDataError, match=r"different sampling rates \(r128 128 Hz, r250 250 Hz\)"):
        read_series(wfdb_dir)
    one = tmp_path / "one"
    one.mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(wfdb_dir / f"r128.{ext}", one)
    series, counts = read_series(one)
    assert counts["sample_rate_hz"] == 128 and len(series) == 1
