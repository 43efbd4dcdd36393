"""Record decoding: the three forms, keys, field names, timestamp units, and a typed reason for every bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streams.records import REASONS, RecordError, RecordFormat, decode_record, encode_chunk, encode_reading

FMT = RecordFormat()


def test_single_multivariate_and_chunk_forms():
    r = decode_record(b'{"series": "a", "ts": 1500, "value": 2}', None, FMT)
    assert (r.series, r.ts.tolist(), r.values.tolist()) == ("a", [1_500_000], [[2.0]])
    r = decode_record(b'{"series": "a", "ts": 1500, "values": [1, 2, 3]}', None, FMT)
    assert r.values.shape == (1, 3)
    r = decode_record(b'{"series": "a", "ts": 0, "period_ms": 2.7777777, "values": [[1], [2], [3]]}', None, FMT)
    assert r.ts.tolist() == [0, 2778, 5556] and r.values.shape == (3, 1)
    r = decode_record(b'{"ts": 0, "period_ms": 1, "values": [1, 2]}', b"key-series", FMT)
    assert r.series == "key-series" and r.values.shape == (2, 1)


def test_key_wins_over_series_field_and_empty_key_falls_back():
    v = b'{"series": "field", "ts": 1, "value": 0}'
    assert decode_record(v, b"key", FMT).series == "key"
    assert decode_record(v, b"", FMT).series == "field"


def test_configurable_fields_and_timestamp_units():
    fmt = RecordFormat(series_field="sensor", ts_field="time", value_field="v", ts_unit="s")
    r = decode_record(b'{"sensor": 7, "time": 1.5, "v": 3}', None, fmt)
    assert r.series == "7" and r.ts.tolist() == [1_500_000]
    fmt = RecordFormat(ts_unit="iso")
    r = decode_record(b'{"series": "a", "ts": "2024-11-22T12:00:00.250Z", "value": 1}', None, fmt)
    assert r.ts[0] == 1732276800250000
    with pytest.raises(RecordError, match="'ts'") as e:
        decode_record(b'{"series": "a", "ts": 12, "value": 1}', None, fmt)
    assert e.value.reason == "bad_field"


@pytest.mark.parametrize("value,reason,field", [
    (b"\xff\xfe", "undecodable", None),
    (b"[1, 2]", "undecodable", None),
    (b'{"series": "a", "value": 1}', "missing_field", "ts"),
    (b'{"ts": 1, "value": 1}', "missing_field", "series"),
    (b'{"series": "a", "ts": 1}', "missing_field", "value"),
    (b'{"series": "a", "ts": "x", "value": 1}', "bad_field", "ts"),
    (b'{"series": "a", "ts": 1, "value": true}', "bad_field", "value"),
    (b'{"series": "a", "ts": 1, "value": "1"}', "bad_field", "value"),
    (b'{"series": "a", "ts": 1, "values": [1, null]}', "bad_field", "values"),
    (b'{"series": "a", "ts": 1, "values": ["1"]}', "bad_field", "values"),
    (b'{"series": "a", "ts": 1, "values": [[1, 2], [3]], "period_ms": 1}', "bad_field", "values"),
    (b'{"series": "a", "ts": 1, "values": [1], "period_ms": -1}', "bad_field", "period_ms"),
    (b'{"series": "a", "ts": 1, "values": []}', "empty", "values"),
    (b'{"series": "a", "ts": 1, "value": NaN}', "nan_or_inf", "value"),
    (b'{"series": "a", "ts": 1, "values": [1, Infinity]}', "nan_or_inf", "values"),
    (b'{"series": "a", "ts": 1, "value": 1e999}', "nan_or_inf", "value"),
    (b'{"series": "a", "ts": -5, "value": 1}', "bad_field", "ts"),
    (b'{"series": "", "ts": 1, "value": 1}', "bad_field", "series"),
])
def test_bad_records_have_a_typed_reason_naming_the_field(value, reason, field):
    with pytest.raises(RecordError) as e:
        decode_record(value, None, FMT)
    assert e.value.reason == reason
    if field:
        assert repr(field) in str(e.value)


def test_bounds_are_enforced():
    fmt = RecordFormat(max_message_bytes=100, max_samples=4, max_channels=2, max_series_len=5)
    with pytest.raises(RecordError) as e:
        decode_record(b'{"series": "a", "ts": 1, "value": 1}' + b" " * 100, None, fmt)
    assert e.value.reason == "too_large"
    with pytest.raises(RecordError) as e:
        decode_record(b'{"series": "a", "ts": 1, "period_ms": 1, "values": [1,2,3,4,5]}', None, fmt)
    assert e.value.reason == "too_large"
    with pytest.raises(RecordError) as e:
        decode_record(b'{"series": "a", "ts": 1, "values": [1,2,3]}', None, fmt)
    assert e.value.reason == "too_large"
    with pytest.raises(RecordError) as e:
        decode_record(b'{"series": "abcdefgh", "ts": 1, "value": 1}', None, fmt)
    assert e.value.reason == "too_large"
    with pytest.raises(RecordError) as e:
        decode_record(b'{"series": "a", "ts": 1, "values": [1, 2]}', None, FMT, width=1)
    assert e.value.reason == "wrong_width"


def test_encoders_round_trip():
    v = np.random.default_rng(0).normal(size=(5, 2))
    r = decode_record(encode_chunk("s", 1000, 2.5, v), None, FMT)
    assert np.allclose(r.values, v) and r.ts.tolist() == [1_000_000 + 2500 * i for i in range(5)]
    r = decode_record(encode_reading("s", 7, [1.0, 2.0]), None, FMT)
    assert r.values.tolist() == [[1.0, 2.0]]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(["series", "ts", "value", "values", "period_ms", "x"]), kids, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(obj=json_values, key=st.one_of(st.none(), st.binary(max_size=6)))
def test_any_json_either_decodes_or_gives_a_known_reason(obj, key):
    raw = json.dumps(obj).encode()
    try:
        r = decode_record(raw, key, FMT)
    except RecordError as e:
        assert e.reason in REASONS and str(e)
    else:
        assert r.values.ndim == 2 and len(r.ts) == len(r.values) >= 1
        assert np.isfinite(r.values).all() and r.series


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(raw):
    try:
        decode_record(raw, None, FMT)
    except RecordError as e:
        assert e.reason in REASONS


_PLAIN_CASES = [
    (b'{"series":"a","ts":1732280000123,"value":0.42}', None),
    (b'{"series":"a","ts":1732280000123,"value":3}', b"key-1"),
    (b'{"series":"a","ts":1732280000123.5,"value":-1e-3}', None),
    (b'{"ts":1732280000123,"value":1.0}', b"k"),
    (b'{"ts":1732280000123,"value":1.0}', None),  # no series anywhere
    (b'{"series":"","ts":1,"value":1.0}', None),
    (b'{"series":7,"ts":1,"value":1.0}', None),  # int series: the slow path's str()
    (b'{"series":"a","ts":1,"value":true}', None),
    (b'{"series":"a","ts":true,"value":1}', None),
    (b'{"series":"a","ts":1,"value":NaN}', None),
    (b'{"series":"a","ts":1,"value":Infinity}', None),
    (b'{"series":"a","ts":1,"value":1e39}', None),
    (b'{"series":"a","ts":1,"value":100000000000000000000000000000000000000000}', None),
    (b'{"series":"a","ts":-5,"value":1}', None),
    (b'{"series":"a","ts":99999999999999999999999,"value":1}', None),
    (b'{"series":"a","ts":"2024-01-01","value":1}', None),
    (b'{"series":"a","ts":1,"value":"1"}', None),
    (b'{"series":"a","ts":1,"value":1,"value":2}', None),  # repeated key
    (b'{"series":"a","ts":1,"value":1,"value" :2}', None),  # repeated key, whitespace before its colon
    (b'{"series":"b","ts":2,"value":3,"ts":4}', None),
    (b'{"series":"a\\":","ts":1,"value":1}', None),  # '":' inside a string: a key count that over-counts
    (b'{"series":"a","ts":1,"values":[1,2.5]}', None),
    (b'{"series":"a","ts":1,"values":[1,true]}', None),
    (b'{"series":"a","ts":1,"values":[1,[2]]}', None),
    (b'{"series":"a","ts":1,"values":[]}', None),
    (b'{"series":"a","ts":1,"values":[100000000000000000000000000000]}', None),  # beyond int64: numpy's object
    (b'{"series":"a","ts":1,"values":[9223372036854775808, 1]}', None),
    (b'{"series":"a","ts":1,"values":[9223372036854775807, 1]}', None),
    (b'{"series":"a","ts":1,"values":[-3, 1e38]}', None),
    (b'{"series":"a","ts":1,"values":[1,2],"period_ms":2}', None),  # a chunk
    (b'{"series":"a","ts":1,"values":[[1],[2]],"period_ms":2}', None),
    (b'{"series":"period_ms","ts":1,"value":1}', None),  # names the period field: left to decode_record
    (b'{"series":"a","ts":1,"value":1} ', None),  # trailing space: valid JSON, slow path
    (b'{"series":"a","ts":1,"value":1}x', None),
    (b'{"series":"a","ts":1,"value":1', None),
    (b'[1,2]', None),
    (b'\xff\xfe', None),
    (b'{"series":"a","ts":1,"value":1}', b'\xff'),
    (b'{"series":"\xc3\xa9t\xc3\xa9","ts":1,"value":1}', None),
    (b'{"series":"a","ts":1,"value":1,"extra":{"x":1}}', None),
    (None, b"k"),
]


@pytest.mark.parametrize("width", [1, 2, None])
@pytest.mark.parametrize("unit", ["ms", "s", "us", "iso"])
def test_plain_reading_fast_path_agrees_with_decode_record(width, unit):
    """decode_plain_readings accepts only what decode_record accepts, with the same series, time and
    values; everything else is left to decode_record; a batch gives what single calls give."""
    from streams.records import decode_plain_readings

    fmt = RecordFormat(ts_unit=unit)
    values = [v for v, _ in _PLAIN_CASES]
    keys = [k for _, k in _PLAIN_CASES]
    batch = decode_plain_readings(values, keys, fmt, width)
    accepted = 0
    for (v, k), got in zip(_PLAIN_CASES, batch):
        assert decode_plain_readings([v], [k], fmt, width) == [got], v
        if got is None:
            continue
        accepted += 1
        r = decode_record(v, k, fmt, width)
        assert (r.series, int(r.ts[0]), tuple(r.values[0].tolist())) == got, v
        assert r.n == 1
    if unit == "ms":
        assert accepted >= (5 if width in (1, None) else 1)
    elif unit == "iso":
        assert accepted == 0


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b", "é", "a" * 255]), st.integers(0, 7 * 10**9),
                               st.one_of(st.integers(-10**9, 10**9), st.floats(-1e9, 1e9))), min_size=1, max_size=40),
       by_key=st.booleans(), unit=st.sampled_from(["ms", "us", "s"]), spaced=st.booleans(),
       ts_type=st.sampled_from(["int", "float", "both"]),
       spoil=st.one_of(st.none(), st.tuples(st.integers(0, 39), st.sampled_from(["ts", "value", "series"]),
                                            st.sampled_from([-1, 7_258_118_400_000_001, 2**63, 2**63 - 1, 2**70,
                                                             9.3e18, 1e300, 3.0e38, True, None, "1", "", "a" * 256]))))
def test_a_batch_decoded_by_columns_is_what_each_record_gives(rows, by_key, unit, spaced, ts_type, spoil):
    """decode_plain_readings reads a batch of plain readings column by column (_plain_columns) when
    every record qualifies: exactly what the record-by-record loop (_plain_each) gives, and what
    decode_record gives for each; one spoilt field anywhere sends the batch record by record."""
    from streams.records import _plain_columns, _plain_each, decode_plain_readings

    fmt = RecordFormat(ts_unit=unit)
    objs = [{"series": s, "ts": t + 0.25 if ts_type == "float" or ts_type == "both" and i % 2 else t, "value": v}
            for i, (s, t, v) in enumerate(rows)]
    if spoil is not None:
        objs[spoil[0] % len(objs)][spoil[1]] = spoil[2]
    keys = [o.pop("series").encode() if by_key and type(o["series"]) is str else None for o in objs]
    values = [json.dumps(o, separators=None if spaced else (",", ":")).encode() for o in objs]
    each = _plain_each(values, keys, fmt, 1)
    assert decode_plain_readings(values, keys, fmt, 1) == each
    cols = _plain_columns(values, keys, fmt, 1)
    event(f"by columns: {cols is not None}")
    if cols is not None:
        assert cols == each and None not in cols
    elif None not in each:  # every record plain, yet not read by columns: mixed types of a field do that
        assert len({type(o["ts"]) for o in objs}) == 2 or len({type(o["value"]) for o in objs}) == 2 or None in keys
    for v, k, got in zip(values, keys, each):
        if got is not None:
            r = decode_record(v, k, fmt, 1)
            assert (r.series, int(r.ts[0]), tuple(r.values[0].tolist())) == got


_scalar = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.none(), st.text(max_size=3), st.sampled_from([1732280000123, 0, -1, 2**63, 3.0e38, 4e38]))
_field = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.lists(st.lists(_scalar, max_size=2), max_size=2))


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(st.sampled_from(["series", "ts", "value", "values", "period_ms", "x"]), _field, max_size=5),
       key=st.sampled_from([None, b"", b"k", b"\xff"]), width=st.sampled_from([1, 2]))
def test_plain_reading_fast_path_agrees_with_decode_record_on_any_object(obj, key, width):
    """Any object of the reading's fields, written with json.dumps' spaces and without them."""
    from streams.records import decode_plain_readings

    for v in (json.dumps(obj).encode(), json.dumps(obj, separators=(",", ":")).encode()):
        got = decode_plain_readings([v], [key], RecordFormat(), width)[0]
        if got is not None:
            r = decode_record(v, key, RecordFormat(), width)
            assert (r.series, int(r.ts[0]), tuple(r.values[0].tolist())) == got
