"""Replay: datasets become keyed records of both forms, in event-time order, labels in headers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from streams.records import RecordFormat, decode_record
from streams.replay import ReplaySeries, load_replay_series, replay


def _collect(series, **kw):
    out = []
    replay(series, lambda t, v, k, h: out.append((k, v, dict(h))), "t", t0_ms=1_000, **kw)
    return out


@pytest.mark.parametrize("form", ["single", "chunk"])
def test_round_trip_both_forms_in_event_time_order(form):
    a = ReplaySeries("a", np.arange(10.0), 5.0, labels=np.r_[np.zeros(5), np.ones(5)].astype(int))
    b = ReplaySeries("b", np.arange(7.0) * 2, 2.5)
    out = _collect([a, b], form=form, chunk=3)
    fmt = RecordFormat()
    got: dict[str, list] = {"a": [], "b": []}
    last = -1
    for k, v, h in out:
        r = decode_record(v, k, fmt)
        assert r.ts[0] >= last  # merged in event time
        last = r.ts[0]
        got[r.series] += list(zip(r.ts.tolist(), r.values[:, 0].tolist()))
    assert [v for _, v in got["a"]] == list(np.arange(10.0))
    assert [t for t, _ in got["b"]] == [1_000_000 + 2500 * i for i in range(7)]
    labelled = sum(int(h.get("anomon.labels", b"0")) for k, _, h in out if k == b"a")
    assert labelled == 5


def test_rate_is_respected():
    import time

    s = ReplaySeries("a", np.zeros(200), 1.0)
    t = time.monotonic()
    _collect([s], form="chunk", chunk=10, rate=1000)
    assert time.monotonic() - t >= 0.15  # 200 readings at 1000/s: ~0.2 s (a lower bound only)


def test_mitdb_beats_travel_in_headers(data_dir):
    s = load_replay_series("mitdb:106", 2, data_dir, start_s=600, duration_s=300)
    assert [x.series for x in s] == ["mitdb-106-0", "mitdb-106-1"] and s[0].period_ms == pytest.approx(1000 / 360)
    out = _collect(s[:1], form="chunk", chunk=360)
    beats = [b for _, _, h in out if "anomon.beats" in h for b in json.loads(h["anomon.beats"])]
    assert len(beats) == len(s[0].beats) > 10
    assert {sym for _, sym in beats} >= {"N", "V"}


def test_other_datasets_load(data_dir):
    e = load_replay_series("ecg5000", 5, data_dir)
    assert len(e) == 5 and e[0].labels.sum() > 0 and len(e[0]) % 140 == 0
    for name in ("kpi", "yahoo", "ucr-anomaly"):
        (s,) = load_replay_series(name, None, data_dir)
        assert len(s) > 1000 and s.labels.sum() > 0
    with pytest.raises(FileNotFoundError, match="unknown dataset"):
        load_replay_series("nope", None, data_dir)


def test_csv_through_the_generic_loader(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("time,v1,v2,label\n" + "\n".join(f"{1700000000 + i},{i},{-i},{int(i == 3)}" for i in range(6)))
    (s,) = load_replay_series(str(p), None, csv_timestamp="time", csv_label="label")
    assert s.values.shape == (6, 2) and s.period_ms == pytest.approx(1000.0) and s.labels.tolist()[3] == 1
