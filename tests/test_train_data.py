"""Issue 19: ``anomon train DETECTOR --data FILE`` writes a bundle that ``anomon run`` serves unchanged.

Two series of very different scales (1 and 1000) in one CSV: per-series normalisation makes one
bundle serve both; the held-back calibration tail is recorded; labelled anomalies stay out of
training and give metrics; bad files fail with one line naming the file, the row and the column.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.cli import main
from monitor.modelstore import load_bundle
from tests.fixtures.daemon import daemon_config, read_topic, score_ids

N, T, S = 400, 16, 4
T0 = 1_767_225_600_000
SCALES = {"pump-a": 1.0, "pump-b": 1000.0}


def _signal(k: int, scale: float) -> np.ndarray:
    i = np.arange(N)
    a = np.sin(2 * np.pi * i / 16.0 + k) * scale
    return np.stack([a, 0.5 * a + 0.05 * scale * np.cos(1.7 * i)], axis=1)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    lines = ["ts,series,a,b,label"]
    for k, (sid, scale) in enumerate(SCALES.items()):
        v = _signal(k, scale)
        for i in range(N):
            lab = int(300 <= i < 304)
            x = v[i] + (6 * scale if lab else 0.0)
            lines.append(f"{T0 + 10 * i},{sid},{float(x[0])!r},{float(x[1])!r},{lab}")
    p = d / "readings.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture(scope="module")
def bundle(csv_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "model"
    assert main(["train", "robust-zscore", "--data", str(csv_file), "--time-col", "ts", "--value-cols", "a,b",
                 "--series-col", "series", "--label-col", "label", "--window", str(T), "--stride", str(S),
                 "--fpr", "0.01", "--out", str(out)]) == 0
    return out


def test_train_from_a_csv_writes_a_complete_bundle(bundle):
    for f in ("config.json", "weights.safetensors", "anomon.json", "train.json", "report.html"):
        assert (bundle / f).is_file(), f
    b = load_bundle(bundle)
    assert (b.length, b.stride, b.channels) == (T, S, 2)
    info = json.loads((bundle / "train.json").read_text())
    for sid in SCALES:
        sp = info["spans"][sid]
        # the calibration tail follows the training span and does not overlap it
        assert sp["train"][1] <= sp["calibration"][0] and sp["calibration"][1] == N
        assert sp["labelled_readings"] == 4
    assert info["counts"]["labelled_windows_excluded"] > 0
    m = info["labels"]["metrics"][b.components[0]]
    assert m["roc_auc"] > 0.9 and 0 <= m["f1"] <= 1
    html = (bundle / "report.html").read_text()
    assert "<img" in html or "<svg" in html


def test_one_bundle_serves_series_of_different_scales_on_the_real_broker(bundle, broker, fresh_topic,
                                                                         inprocess_daemon):
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_reading

    sink = Sink(KafkaSettings(bootstrap_servers=broker.bootstrap), linger_ms=20)
    for k, (sid, scale) in enumerate(SCALES.items()):
        v = _signal(k, scale)
        for i in range(N):
            x = v[i] + (6 * scale if 300 <= i < 304 else 0.0)
            sink.send(fresh_topic, encode_reading(sid, T0 + 10 * i, [float(x[0]), float(x[1])]), key=sid)
    sink.flush()
    sink.close()
    r = inprocess_daemon(daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, bundle))
    want = len(SCALES) * ((N - T) // S + 1)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=want, timeout_s=60)
    r.stop()
    assert len(set(score_ids(got))) == want == len(got)
    recs = [json.loads(v) for _, v, _ in got]
    for sid in SCALES:
        mine = [x for x in recs if x["series"] == sid]
        burst = [x for x in mine if x["start_ts"] <= T0 + 10 * 303 and x["end_ts"] >= T0 + 10 * 300]
        quiet = [x for x in mine if x["end_ts"] < T0 + 10 * 290]
        # the same model flags the burst of the series at scale 1000 as it does at scale 1, and not the rest
        assert all(x["anomalous"] for x in burst), sid
        assert sum(x["anomalous"] for x in quiet) <= 0.05 * len(quiet), sid


@pytest.mark.parametrize("body,extra,message", [
    ("ts,a\n1,1.0\n2,nan\n3,2\n", [], "row 2 (line 3), column 'a': a missing value (NaN); fill or drop the row"),
    ("ts,a\n1,1.0\n2,inf\n3,2\n", [], "row 2 (line 3), column 'a'"),
    ("ts,a\n1,1.0\n2,abc\n3,2\n", [], "row 2 (line 3), column 'a': 'abc' is not a number"),
    ("ts,a\n1,1.0\n3,2\n2,3\n", [], "row 3 (line 4), column 'ts': time 2 is before the previous row's 3 (series "
                                    "'bad'); pass --sort to sort the rows by time"),
    ("ts,a\n1,1.0\n2,2\n2,3\n", [], "row 3 (line 4), column 'ts': time 2 repeats row 2's (series 'bad'); pass "
                                    "--dedupe to keep the last reading of each time"),
    ("ts,a\n1,1.0\n2,2\n3,3\n", [], "series 'bad' has 3 readings, fewer than one window of 8"),
    ("ts,a\n1,1.0\n2,2\n", ["--value-cols", "a,b"], "bad.csv"),
])
def test_bad_files_fail_with_one_line_naming_file_row_and_column(tmp_path, capsys, body, extra, message):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    rc = main(["train", "robust-zscore", "--data", str(p), "--window", "8", "--out", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("anomon: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert str(p.name) in lines[0] and message in lines[0], lines[0]
    assert not (tmp_path / "m" / "anomon.json").exists()


def test_sort_and_dedupe_fix_the_file_and_report_the_counts(tmp_path, capsys):
    rows = ["ts,a"] + [f"{i},{float(np.sin(i / 3.0))!r}" for i in range(60)]
    rows[10], rows[11] = rows[11], rows[10]
    rows.insert(20, rows[20])
    p = tmp_path / "fixable.csv"
    p.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m"
    assert main(["train", "robust-zscore", "--data", str(p), "--window", "8", "--stride", "2", "--sort", "--dedupe",
                 "--out", str(out)]) == 0
    read = json.loads((out / "train.json").read_text())["data"]["read"]
    assert read["sorted_rows"] >= 1 and read["duplicate_rows_dropped"] == 1
    load_bundle(out)
