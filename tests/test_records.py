"""Record decoding: the three forms, keys, field names, timestamp units, and a typed reason for every bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
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
