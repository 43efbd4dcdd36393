"""Decoding of reading records: JSON values (and Kafka keys) to numpy arrays.

Three JSON forms are accepted (field names are configurable, see :class:`RecordFormat`):

* a single reading: ``{"series": "ecg-106", "ts": 1732280000123, "value": 0.42}``;
* a multivariate reading: ``{"series": "m1", "ts": 1732280000123, "values": [0.4, 1.2]}``;
* a chunk of regularly sampled readings: ``{"series": "ecg-106", "ts": 1732280000000,
  "period_ms": 2.7778, "values": [[0.4], [0.41], ...]}`` (or ``"values": [0.4, 0.41, ...]``
  for one channel), where ``ts`` is the time of the first sample.

The Kafka key, when present and not empty, is the series id; otherwise the ``series`` field is.
Timestamps are epoch milliseconds by default (``ts_unit="s"`` or ``"iso"`` for other forms) and
are kept internally as integer **microseconds** (``int64``), so chunks above 1 kHz keep distinct times.

Every bad record raises :class:`RecordError` with a typed ``reason`` (one of :data:`REASONS`)
and a message that names the field.

Examples
--------
>>> fmt = RecordFormat()
>>> r = decode_record(b'{"series": "a", "ts": 1000, "value": 0.5}', None, fmt)
>>> r.series, r.ts.tolist(), r.values.tolist()
('a', [1000000], [[0.5]])
>>> r = decode_record(b'{"ts": 0, "period_ms": 2, "values": [[1, 2], [3, 4]]}', b"k", fmt)
>>> r.series, r.ts.tolist(), r.values.shape
('k', [0, 2000], (2, 2))
>>> try:
...     decode_record(b'{"series": "a", "ts": 1, "value": NaN}', None, fmt)
... except RecordError as e:
...     print(e.reason, "-", e)
nan_or_inf - field 'value': NaN or inf at sample 0
"""
from __future__ import annotations

import json
import json.scanner
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import Any

import numpy as np
import orjson

#: Every reason a record can be dead-lettered for (decoding, windowing and scoring).
REASONS = (
    "undecodable",  # not UTF-8 / not JSON / not a JSON object
    "missing_field",  # a required field is absent
    "bad_field",  # a field has the wrong type or an impossible value
    "nan_or_inf",  # a value is NaN or infinite
    "wrong_width",  # the number of channels differs from the model's
    "too_large",  # message bytes, samples or channels over the configured bounds
    "empty",  # no samples
    "late",  # older than the bounded lateness allows (windowing)
    "duplicate",  # same series and timestamp seen already (windowing)
    "series_limit",  # too many live series in a partition (windowing)
)


class RecordError(ValueError):
    """A record that cannot be used. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RecordFormat:
    """Field names, timestamp format and size bounds of the input records."""

    series_field: str = "series"
    ts_field: str = "ts"
    value_field: str = "value"
    values_field: str = "values"
    period_field: str = "period_ms"
    #: "ms" (epoch milliseconds), "s" (epoch seconds), "us" (epoch microseconds) or "iso" (ISO 8601 string)
    ts_unit: str = "ms"
    max_message_bytes: int = 1_048_576
    max_samples: int = 100_000
    max_channels: int = 1024
    max_series_len: int = 256

    def __post_init__(self) -> None:
        if self.ts_unit not in _TS_SCALE and self.ts_unit != "iso":
            raise ValueError(f"ts_unit must be one of ms, s, us, iso; got {self.ts_unit!r}")


_TS_SCALE = {"ms": 1_000.0, "s": 1_000_000.0, "us": 1.0}
# Timestamps must lie between 1970 and 2200 (in microseconds): catches unit mistakes early.
_TS_MAX_US = 7_258_118_400_000_000


class Readings:
    """Decoded samples of one record: one series, ``ts`` (n,) int64 µs, ``values`` (n, C) float64."""

    __slots__ = ("series", "ts", "values")

    def __init__(self, series: str, ts: np.ndarray, values: np.ndarray):
        self.series = series
        self.ts = ts
        self.values = values

    @property
    def n(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        return f"Readings(series={self.series!r}, n={self.n}, channels={self.values.shape[1]})"


def _parse_ts(raw: Any, fmt: RecordFormat, field: str) -> float:
    """Timestamp in microseconds (float)."""
    if fmt.ts_unit == "iso":
        if not isinstance(raw, str):
            raise RecordError("bad_field", f"field {field!r}: expected an ISO 8601 string, got {type(raw).__name__}")
        try:
            d = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError("bad_field", f"field {field!r}: not an ISO 8601 time: {raw[:40]!r}") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        us = d.timestamp() * 1e6
    else:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise RecordError("bad_field", f"field {field!r}: expected a number (epoch {fmt.ts_unit}), got {type(raw).__name__}")
        try:
            us = float(raw) * _TS_SCALE[fmt.ts_unit]
        except OverflowError:  # an integer beyond float range
            raise RecordError("bad_field", f"field {field!r}: timestamp is outside 1970..2200 (unit {fmt.ts_unit})") from None
    if not math.isfinite(us):
        raise RecordError("nan_or_inf", f"field {field!r}: NaN or inf")
    if not 0 <= us <= _TS_MAX_US:
        raise RecordError("bad_field", f"field {field!r}: timestamp {raw!r} is outside 1970..2200 (unit {fmt.ts_unit})")
    return us


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return d


# One decoder, built once: strict UTF-8 in, objects with a repeated key rejected (which of the
# two values would count is parser-dependent), at the cost of json.loads.
_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)
_PLAIN = json.JSONDecoder()
#: a JSON object key: a string followed by a colon. Counting these over-counts (a string value may
#: hold '":'), never under-counts, so "as many as the decoded object's keys" proves no key repeats.
_KEY = re.compile(r'"\s*:')


def _loads(text: str) -> Any:
    """``json.loads`` that rejects an object with a repeated key, at the speed of plain json.loads
    for flat records: the strict (slower, Python-hooked) decoder runs only when the key count is not
    conclusive (nested objects, or '":' inside strings)."""
    obj = _PLAIN.decode(text)
    if isinstance(obj, dict) and len(_KEY.findall(text)) != len(obj):
        obj = _JSON.decode(text)
    return obj


def _has_bool(raw: Any) -> bool:
    stack = [raw]
    while stack:
        x = stack.pop()
        if x is True or x is False:
            return True
        if isinstance(x, list):
            stack.extend(x)
    return False


def _as_float_array(raw: Any, field: str) -> np.ndarray:
    """Numbers (possibly nested lists) to a float64 array; strings, bools, nulls and ragged lists are rejected."""
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError):
        raise RecordError("bad_field", f"field {field!r}: ragged or non-numeric array") from None
    if arr.dtype.kind not in "if":
        if arr.dtype.kind == "O":
            # None or big ints, or ragged lists
            raise RecordError("bad_field", f"field {field!r}: holds a non-number (null, nested or huge value)")
        raise RecordError("bad_field", f"field {field!r}: expected numbers, got {arr.dtype.kind!r}-typed values")
    return arr.astype(np.float64, copy=False)


def _series(key: bytes | str | None, obj: dict, fmt: RecordFormat) -> str:
    if key:
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordError("undecodable", "Kafka key is not UTF-8") from None
        s = key
    else:
        s = obj.get(fmt.series_field)
        if s is None:
            raise RecordError("missing_field", f"field {fmt.series_field!r} missing and the Kafka key is empty")
        if isinstance(s, bool) or not isinstance(s, (str, int)):
            raise RecordError("bad_field", f"field {fmt.series_field!r}: expected a string, got {type(s).__name__}")
        s = str(s)
    if not s:
        raise RecordError("bad_field", f"field {fmt.series_field!r}: empty series id")
    if len(s) > fmt.max_series_len:
        raise RecordError("too_large", f"field {fmt.series_field!r}: series id longer than {fmt.max_series_len} characters")
    return s


def decode_record(value: bytes | str | None, key: bytes | str | None, fmt: RecordFormat,
                  width: int | None = None) -> Readings:
    """Decode one Kafka record to :class:`Readings`.

    Parameters
    ----------
    value, key
        The Kafka record's value and key.
    fmt
        Field names, timestamp unit and bounds.
    width
        When given, the number of channels every sample must have (``wrong_width`` otherwise).
    """
    if value is None:
        raise RecordError("undecodable", "empty record value (tombstone)")
    if len(value) > fmt.max_message_bytes:
        raise RecordError("too_large", f"record value is {len(value)} bytes, over max_message_bytes={fmt.max_message_bytes}")
    try:
        obj = _loads(value if isinstance(value, str) else value.decode("utf-8"))
    except _DuplicateKey as exc:
        raise RecordError("bad_field", f"field {str(exc)[:60]!r} given more than once") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError("undecodable", f"value is not JSON: {str(exc)[:80]}") from None
    except RecursionError:
        raise RecordError("undecodable", "value is not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise RecordError("undecodable", f"value is JSON {type(obj).__name__}, expected an object")
    series = _series(key, obj, fmt)

    if fmt.ts_field not in obj:
        raise RecordError("missing_field", f"field {fmt.ts_field!r} missing")
    t0 = _parse_ts(obj[fmt.ts_field], fmt, fmt.ts_field)

    if fmt.values_field in obj:
        field = fmt.values_field
        raw = obj[field]
        if not isinstance(raw, list):
            raise RecordError("bad_field", f"field {field!r}: expected a list, got {type(raw).__name__}")
        if len(raw) == 0:
            raise RecordError("empty", f"field {field!r}: empty list")
        if len(raw) > max(fmt.max_samples, fmt.max_channels):
            raise RecordError("too_large", f"field {field!r}: {len(raw)} entries, over the bound")
        chunk = fmt.period_field in obj
        arr = _as_float_array(raw, field)
        if (b"true" in value or b"false" in value) if isinstance(value, bytes) else ("true" in value or "false" in value):
            if _has_bool(raw):  # numpy turns [true, 2] into [1, 2]: a bool is not a reading
                raise RecordError("bad_field", f"field {field!r}: holds true/false, expected numbers")
        if chunk:
            period = obj[fmt.period_field]
            if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0.001 <= period <= 1e300:
                raise RecordError("bad_field", f"field {fmt.period_field!r}: expected a positive number of milliseconds "
                                  "(at least 0.001)")
            if arr.ndim == 1:
                arr = arr[:, None]
            elif arr.ndim != 2:
                raise RecordError("bad_field", f"field {field!r}: a chunk is a list of samples (list of lists of numbers)")
            n = arr.shape[0]
            if n > fmt.max_samples:
                raise RecordError("too_large", f"field {field!r}: {n} samples, over max_samples={fmt.max_samples}")
            step = float(period) * 1000.0
            if t0 + step * (n - 1) > _TS_MAX_US:  # checked before the int64 cast, which would wrap
                raise RecordError("bad_field", f"field {fmt.period_field!r}: chunk runs past year 2200")
            ts = np.rint(t0 + step * np.arange(n)).astype(np.int64)
        else:
            if arr.ndim != 1:
                raise RecordError("bad_field", f"field {field!r}: a multivariate reading is a flat list of numbers "
                                  f"(add {fmt.period_field!r} for a chunk)")
            arr = arr[None, :]
            ts = np.array([int(round(t0))], dtype=np.int64)
    elif fmt.value_field in obj:
        field = fmt.value_field
        v = obj[field]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RecordError("bad_field", f"field {field!r}: expected a number, got {type(v).__name__}")
        try:
            fv = float(v)
        except OverflowError:
            raise RecordError("nan_or_inf", f"field {field!r}: number too large") from None
        # fast path (one reading): plain-float checks instead of numpy reductions
        if not math.isfinite(fv):
            raise RecordError("nan_or_inf", f"field {field!r}: NaN or inf at sample 0")
        if abs(fv) > 3.0e38:
            raise RecordError("nan_or_inf", f"field {field!r}: value too large for float32")
        if width is not None and width != 1:
            raise RecordError("wrong_width", f"field {field!r}: 1 channel(s) per sample, the model expects {width}")
        return Readings(series, np.array([int(round(t0))], dtype=np.int64), np.array([[fv]]))
    else:
        raise RecordError("missing_field", f"neither {fmt.value_field!r} nor {fmt.values_field!r} present")

    c = arr.shape[1]
    if c == 0:
        raise RecordError("empty", f"field {field!r}: samples have no channels")
    if c > fmt.max_channels:
        raise RecordError("too_large", f"field {field!r}: {c} channels, over max_channels={fmt.max_channels}")
    if width is not None and c != width:
        raise RecordError("wrong_width", f"field {field!r}: {c} channel(s) per sample, the model expects {width}")
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argwhere(~finite)[0][0])
        raise RecordError("nan_or_inf", f"field {field!r}: NaN or inf at sample {i}")
    if np.abs(arr).max() > 3.0e38:
        raise RecordError("nan_or_inf", f"field {field!r}: value too large for float32")
    return Readings(series, ts, arr)


_SCAN = json.scanner.make_scanner(_PLAIN)  # the C scanner: one call per value, no wrapper
_KEY_BYTES = re.compile(rb'"\s*:')


def _count_keys(text: bytes) -> int:
    """``len(_KEY_BYTES.findall(text))`` for values accepted as JSON (joined by NUL bytes): where
    ``text`` holds no JSON whitespace at all (a memchr each), every key is followed by its colon
    directly and a byte count does (5x as fast, and no list of matches); else the regex.

    >>> _count_keys(b'{"a":1,"b":"x\\":"}'), _count_keys(b'{"a" :1,"b":2}')
    (3, 2)
    """
    if b" " in text or b"\n" in text or b"\t" in text or b"\r" in text:
        return len(_KEY_BYTES.findall(text))
    return text.count(b'":')


#: orjson reads an integer beyond 64 bits as a float (json: as an int): a number at least this large
#: (2**63) is left to decode_record, which gives ints their own treatment
_ORJSON_BIG = 9_223_372_036_854_775_808.0
_orjson_loads = orjson.loads
_F32_MAX = 3.0e38


def _plain_number(x: Any) -> float | None:
    """``x`` as a float when it is an int or float that :func:`decode_record` accepts unchanged, else None."""
    tx = type(x)
    if tx is float:
        return x if -_F32_MAX <= x <= _F32_MAX else None  # False for NaN
    if tx is int and -_F32_MAX <= x <= _F32_MAX:
        return float(x)
    return None


def _plain_element(x: Any) -> float | None:
    """:func:`_plain_number` for an element of a ``values`` list: there numpy decides, and an int
    beyond int64 makes an object (or unsigned) array that :func:`decode_record` rejects."""
    if type(x) is int and not -9_223_372_036_854_775_808 <= x <= 9_223_372_036_854_775_807:
        return None
    return _plain_number(x)


def decode_plain_readings(values: list, keys: list, fmt: RecordFormat, width: int | None = None) -> list:
    """Fast path of :func:`decode_record` for a batch of records holding one reading each.

    For each record, ``(series, ts_us, row)`` (``row`` a tuple of ``width`` floats) when it is a plain
    single reading (``"value"``, or ``"values"`` as one flat multivariate sample) that
    :func:`decode_record` accepts, with exactly the result it would give; ``None`` for anything
    else (chunks, other types, bad input, ISO timestamps), which the caller then decodes with
    :func:`decode_record` (that also gives the error). Skips the per-record Python wrappers of
    ``json.loads``: one orjson call per value (a number of 2**63 or more is left to
    :func:`decode_record`: orjson reads integers beyond 64 bits as floats), and one key count for the
    whole batch.

    >>> decode_plain_readings([b'{"series":"a","ts":5,"value":1.5}', b'{"ts":1}'], [None, b"k"], RecordFormat(), 1)
    [('a', 5000, (1.5,)), None]
    """
    n = len(values)
    unit = fmt.ts_unit
    if unit not in _TS_SCALE or width is not None and width < 1:
        return [None] * n
    if n:
        cols = _plain_columns(values, keys, fmt, width)
        if cols is not None:
            return cols
    return _plain_each(values, keys, fmt, width)


def _plain_columns(values: list, keys: list, fmt: RecordFormat, width: int | None) -> list | None:
    """:func:`decode_plain_readings` for a batch of which every record is a plain single ``"value"``
    reading with the same field types (the common case: one producer's records): column by column,
    with C-level ``map`` calls and numpy, no Python code per record (0.74 µs a record against 1.18 for
    :func:`_plain_each`). None as soon as any record is anything else (the caller then decodes the
    batch record by record): the checks are :func:`_plain_each`'s, so the results are the same."""
    if width is not None and width != 1:
        return None
    tf, vf = fmt.ts_field, fmt.value_field
    try:
        if set(map(type, values)) != {bytes} or max(map(len, values)) > fmt.max_message_bytes:
            return None
        if not all(map(bytes.endswith, values, repeat(b"}"))):
            return None
        text = b"\x00".join(values)
        if json.dumps(fmt.period_field).encode() in text:
            return None
        objs = list(map(_orjson_loads, values))
    except ValueError:  # (orjson.JSONDecodeError) any record that is not JSON orjson reads
        return None
    if set(map(type, objs)) != {dict} or any(map(dict.__contains__, objs, repeat(fmt.values_field))):
        return None
    ts = list(map(dict.get, objs, repeat(tf)))
    vs = list(map(dict.get, objs, repeat(vf)))
    t_types, v_types = set(map(type, ts)), set(map(type, vs))
    if not v_types <= {float, int} or t_types not in ({int}, {float}):  # (bool, None: not plain)
        return None
    try:
        if t_types == {int}:
            if min(ts) < 0 or max(ts) > _TS_MAX_US:  # (bounds the int before it becomes a float)
                return None
            t = np.array(ts, dtype=np.int64)
        else:
            t = np.array(ts, dtype=np.float64)
            if not (t < _ORJSON_BIG).all():
                return None
        x = np.array(vs, dtype=np.float64)  # as float(v) each (OverflowError beyond the doubles)
    except OverflowError:
        return None
    us = t * _TS_SCALE[fmt.ts_unit]
    if not ((us >= 0.0) & (us <= _TS_MAX_US)).all() or not (np.abs(x) < _ORJSON_BIG).all():
        return None
    max_sid = fmt.max_series_len
    if all(keys):  # the Kafka key names the series
        if set(map(type, keys)) != {bytes}:
            return None
        names = {}
        for k in set(keys):
            try:
                sid = k.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if len(sid) > max_sid:
                return None
            names[k] = sid
        sids = list(map(names.__getitem__, keys))
    elif not any(keys):  # the series field does
        sids = list(map(dict.get, objs, repeat(fmt.series_field)))
        if set(map(type, sids)) != {str} or not min(map(len, sids)) or max(map(len, sids)) > max_sid:
            return None
    else:
        return None
    # a repeated key is not a plain reading (see _plain_each)
    if _count_keys(text) != sum(map(len, objs)):
        return None
    return list(zip(sids, np.rint(us).astype(np.int64).tolist(), zip(x.tolist())))


def _plain_each(values: list, keys: list, fmt: RecordFormat, width: int | None) -> list:
    """:func:`decode_plain_readings` record by record."""
    n = len(values)
    out: list = [None] * n
    scale = _TS_SCALE[fmt.ts_unit]
    max_bytes, max_sid = fmt.max_message_bytes, fmt.max_series_len
    sf, tf, vf, vsf, pf = fmt.series_field, fmt.ts_field, fmt.value_field, fmt.values_field, fmt.period_field
    number = _plain_number
    # a value naming the period field is (most likely) a chunk, never a plain reading: left to
    # decode_record without being parsed here first (a chunk of 140 samples was parsed twice)
    chunk_mark = json.dumps(pf).encode()
    loads = _orjson_loads
    n_keys = 0
    for i in range(n):
        v = values[i]
        if type(v) is not bytes or len(v) > max_bytes or chunk_mark in v or v[-1:] != b"}":
            continue  # (an object, with nothing after it)
        try:
            obj = loads(v)  # 2.7x as fast as json's C scanner
        except ValueError:  # (orjson.JSONDecodeError): NaN, bad UTF-8, a lone surrogate ...: the slow path
            continue
        if type(obj) is not dict:
            continue
        t = obj.get(tf)
        if type(t) is int:
            if not 0 <= t <= _TS_MAX_US:  # (bounds the int before it becomes a float; any unit)
                continue
            us = t * scale
        elif type(t) is float and t < _ORJSON_BIG:
            us = t * scale
        else:
            continue
        if not 0.0 <= us <= _TS_MAX_US:  # False for NaN
            continue
        if vsf in obj:
            raw = obj[vsf]
            if pf in obj or type(raw) is not list or not raw or (width is not None and len(raw) != width):
                continue
            row = tuple(map(_plain_element, raw))
            if None in row or max(map(abs, row)) >= _ORJSON_BIG:
                continue
        elif vf in obj:
            if width is not None and width != 1:
                continue
            x = number(obj[vf])
            if x is None or not -_ORJSON_BIG < x < _ORJSON_BIG:
                continue
            row = (x,)
        else:
            continue
        k = keys[i]
        if k:
            if type(k) is bytes:
                try:
                    sid = k.decode("utf-8")
                except UnicodeDecodeError:
                    continue
            else:
                sid = k
        else:
            sid = obj.get(sf)
            if type(sid) is not str:
                continue
        if not sid or len(sid) > max_sid:
            continue
        out[i] = (sid, int(round(us)), row)
        n_keys += len(obj)
    # a repeated key is not a plain reading: count the keys of every accepted value at once (the count
    # over-counts when a string holds '":', never under-counts: equal counts prove no key repeats)
    if n_keys and _count_keys(b"\x00".join(values[i] for i in range(n) if out[i] is not None)) != n_keys:
        for i in range(n):
            if out[i] is not None and len(_KEY_BYTES.findall(values[i])) != len(_SCAN(values[i].decode(), 0)[0]):
                out[i] = None
    return out


def encode_reading(series: str, ts_ms: float, value: float | list[float], fmt: RecordFormat | None = None) -> bytes:
    """JSON of a single reading (the replay tool's single-reading form).

    >>> encode_reading("a", 5, 1.5)
    b'{"series":"a","ts":5,"value":1.5}'
    """
    fmt = fmt or RecordFormat()
    key = fmt.values_field if isinstance(value, (list, tuple, np.ndarray)) else fmt.value_field
    v = [float(x) for x in value] if key == fmt.values_field else float(value)
    return json.dumps({fmt.series_field: series, fmt.ts_field: ts_ms, key: v}, separators=(",", ":")).encode()


def encode_chunk(series: str, ts_ms: float, period_ms: float, values: np.ndarray, fmt: RecordFormat | None = None) -> bytes:
    """JSON of a chunk: ``values`` (n,) or (n, C).

    >>> encode_chunk("a", 0, 2.5, np.array([1.0, 2.0]))
    b'{"series":"a","ts":0,"period_ms":2.5,"values":[[1.0],[2.0]]}'
    """
    fmt = fmt or RecordFormat()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    return json.dumps({fmt.series_field: series, fmt.ts_field: ts_ms, fmt.period_field: period_ms,
                       fmt.values_field: v.tolist()}, separators=(",", ":")).encode()
