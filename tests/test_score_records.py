"""Score records: the fast encoder writes what json.dumps writes: the same text, or where orjson spells a
number differently (``0.00001`` for ``1e-05``), the same values of the same types once read back."""
from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.score_records import ScoreRecordEncoder, ms


def _typed(x):
    """A JSON value with the type of every number kept and NaN comparable (for equality checks)."""
    if isinstance(x, dict):
        return [(k, _typed(v)) for k, v in x.items()]  # (key order kept)
    if isinstance(x, list):
        return [_typed(v) for v in x]
    if isinstance(x, float):
        return ("float", "nan" if x != x else x)
    return (type(x).__name__, x)


def same_json(got: bytes | list, want: bytes | list) -> bool:
    """Both read back as the same JSON values, numbers of the same types (int 1 is not float 1.0)."""
    if isinstance(got, list):
        return len(got) == len(want) and all(same_json(g, w) for g, w in zip(got, want))
    return _typed(json.loads(got)) == _typed(json.loads(want))


@settings(max_examples=300, deadline=None)
@given(series=st.text(min_size=1, max_size=8), comps=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True),
       data=st.data(), start=st.integers(0, 2**62), end=st.integers(0, 2**62), flag=st.booleans(),
       part=st.integers(0, 1000), now=st.floats(0, 4e12), model=st.text(max_size=5), version=st.text(max_size=5))
def test_encoder_writes_the_json_dumps_values(series, comps, data, start, end, flag, part, now, model, version):
    num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))
    scores = tuple(data.draw(num) for _ in comps)
    thr = {c: data.draw(st.floats(allow_nan=False, allow_infinity=True)) for c in comps}
    rec = {"id": f"{series}@{end}", "series": series, "start_ts": ms(start), "end_ts": ms(end),
           "scores": dict(zip(comps, scores)), "thresholds": thr, "anomalous": flag, "model": model,
           "version": version, "partition": part, "scored_at": round(now, 1)}
    enc = ScoreRecordEncoder(comps, thr, model, version, now)
    got = enc.record(enc.series(series), start, end, scores, flag, part)
    assert same_json(got, json.dumps(rec, separators=(",", ":")).encode())
    back = json.loads(got)
    assert back["id"] == f"{series}@{end}" and back["series"] == series
    for c, v in zip(comps, scores):
        assert (math.isnan(back["scores"][c]) and math.isnan(v)) or back["scores"][c] == v


@settings(max_examples=200, deadline=None)
@given(comps=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True), data=st.data(),
       series=st.text(min_size=1, max_size=8), part=st.integers(0, 1000))
def test_batch_encoding_writes_the_json_dumps_values(comps, data, series, part):
    """records() (whole columns written by one json.dumps call each: number_strings, ms_strings) gives
    json.dumps' values for every window of a run: NaN, infinities, ints, fractional and whole milliseconds."""
    n = data.draw(st.integers(0, 12))
    num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))
    ts = st.one_of(st.integers(0, 2**62), st.integers(0, 2**40).map(lambda x: x * 1000))
    rows = [tuple(data.draw(num) for _ in comps) for _ in range(n)]
    starts, ends = [data.draw(ts) for _ in range(n)], [data.draw(ts) for _ in range(n)]
    flags = [data.draw(st.booleans()) for _ in range(n)]
    thr = {c: 1.5 for c in comps}
    enc = ScoreRecordEncoder(comps, thr, "m%", "v", 1e12)
    want = [json.dumps({"id": f"{series}@{e}", "series": series, "start_ts": ms(s), "end_ts": ms(e),
                        "scores": dict(zip(comps, r)), "thresholds": thr, "anomalous": f, "model": "m%",
                        "version": "v", "partition": part, "scored_at": 1e12}, separators=(",", ":")).encode()
            for s, e, r, f in zip(starts, ends, rows, flags)]
    assert same_json(enc.records(enc.series(series), starts, ends, rows, flags, part), want)


@settings(max_examples=150, deadline=None)
@given(comps=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True), data=st.data())
def test_batch_records_of_many_series_write_the_json_dumps_values(comps, data):
    """batch_records (the daemon's path: one template for a whole scored batch) with a different series
    and partition per window gives json.dumps' values for each."""
    from monitor.score_records import ms_strings, number_strings

    n = data.draw(st.integers(0, 12))
    num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))
    series = [data.draw(st.text(min_size=1, max_size=8)) for _ in range(n)]
    parts = [data.draw(st.integers(0, 1000)) for _ in range(n)]
    rows = [tuple(data.draw(num) for _ in comps) for _ in range(n)]
    starts = [data.draw(st.integers(0, 2**62)) for _ in range(n)]
    ends = [data.draw(st.integers(0, 2**62)) for _ in range(n)]
    flags = [data.draw(st.booleans()) for _ in range(n)]
    thr = {c: 0.25 for c in comps}
    enc = ScoreRecordEncoder(comps, thr, "m%s", "v", 7.5)
    cols = list(zip(*rows)) if rows else [[] for _ in comps]
    got = enc.batch_records([enc.series(s) for s in series], number_strings(ends), ms_strings(starts),
                            ms_strings(ends), [number_strings(list(c)) for c in cols], flags,
                            [str(p) for p in parts])
    want = [json.dumps({"id": f"{sid}@{e}", "series": sid, "start_ts": ms(s), "end_ts": ms(e),
                        "scores": dict(zip(comps, r)), "thresholds": thr, "anomalous": f, "model": "m%s",
                        "version": "v", "partition": p, "scored_at": 7.5}, separators=(",", ":")).encode()
            for sid, s, e, r, f, p in zip(series, starts, ends, rows, flags, parts)]
    assert same_json(got, want)


@settings(max_examples=300, deadline=None)
@given(us=st.lists(st.one_of(st.integers(0, 2**42 * 1000 + 5000), st.integers(2**42 * 1000 - 5000, 2**42 * 1000 + 5000),
                             st.integers(1_600_000_000_000_000, 1_900_000_000_000_000), st.integers(0, 5000),
                             st.integers(-2**62, 2**62)), max_size=20))
def test_ms_strings_write_what_json_dumps_writes(us):
    """ms_strings (integer arithmetic below ~2109, the float repr elsewhere) writes exactly the JSON of
    ms(): epoch milliseconds of today, the first microseconds, both sides of the fast path's bound,
    negative and huge values."""
    from monitor.score_records import ms_strings

    assert ms_strings(us) == [json.dumps(ms(u)) for u in us]


def test_series_json_is_json_dumps_and_remembers():
    from monitor import score_records
    from monitor.score_records import series_json

    ids = ["ecg-1", 'q"uote', "é", "back\\slash", "ecg-1", "%s"]
    assert series_json(ids) == [json.dumps(s) for s in ids]
    assert all(s in score_records._SERIES_JSON for s in ids)
    assert series_json(ids) == [json.dumps(s) for s in ids]  # from the cache


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32),
                                 st.integers(-2**63, 2**63 - 1), st.integers(-10**30, 10**30)), max_size=30),
       as_array=st.sampled_from([None, "float64", "float32"]))
def test_number_strings_read_back_as_the_same_numbers(values, as_array):
    """number_strings (orjson for finite floats and 64-bit ints, json.dumps for a column with NaN,
    infinities or bigger ints): each string reads back as the same number, of the same type; an array
    as its tolist() (a float32 column as the doubles of its values)."""
    import numpy as np

    from monitor.score_records import number_strings

    if as_array is not None:
        with np.errstate(over="ignore"):  # (ints beyond float32: inf)
            arr = np.asarray([float(v) for v in values], dtype=as_array)
        values = arr.tolist()
        got = number_strings(arr)
    else:
        got = number_strings(values)
    assert len(got) == len(values)
    for g, v in zip(got, values):
        back = json.loads(g)
        assert type(back) is type(v), (g, v)
        assert (back != back and v != v) or back == v, (g, v)
        assert "," not in g and " " not in g
