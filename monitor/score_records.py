"""The JSON of score records (one per window), built without ``json.dumps`` per record.

A score record is::

    {"id": "SERIES@END_US", "series": ..., "start_ts": ms, "end_ts": ms, "scores": {component: value},
     "thresholds": {component: value}, "anomalous": bool, "model": ..., "version": ...,
     "partition": int, "scored_at": ms}

:class:`ScoreRecordEncoder` writes the JSON of ``json.dumps(record, separators=(",", ":"))`` (same key
order, same escaping, ``NaN``/``Infinity`` for non-finite scores; a number may be spelled differently,
``0.00001`` for ``1e-05``, and reads back as the same number of the same type), but serialises what a batch
shares (thresholds, model, version, time) once into one record template, and each series id once
(:meth:`ScoreRecordEncoder.series`, remembered): at stride 1 every reading yields a record, and
``json.dumps`` was a tenth of the daemon's time. The daemon uses :meth:`ScoreRecordEncoder.batch_records`,
with the numbers of a whole scored batch written by one ``json.dumps`` call per column
(:func:`number_strings`, :func:`ms_strings`).

>>> enc = ScoreRecordEncoder(["nll"], {"nll": 2.5}, "m", "1", 1700000000000.0)
>>> s = enc.series("ecg-1")
>>> enc.record(s, 1000, 141000, (0.5,), False, 3)
b'{"id":"ecg-1@141000","series":"ecg-1","start_ts":1,"end_ts":141,"scores":{"nll":0.5},"thresholds":{"nll":2.5},"anomalous":false,"model":"m","version":"1","partition":3,"scored_at":1700000000000.0}'
"""
from __future__ import annotations

import json
import math
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

_dumps = json.dumps
_orjson_dumps = orjson.dumps
_OPT_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_float_repr = float.__repr__


def ms(us: int) -> int | float:
    """Microseconds as epoch milliseconds: an int when whole, else a float."""
    return us // 1000 if us % 1000 == 0 else us / 1000.0


def _number(x: Any) -> str:
    """A number as ``json.dumps`` writes it."""
    tx = type(x)
    if tx is int:
        return int.__repr__(x)
    if tx is float:
        if -math.inf < x < math.inf:
            return _float_repr(x)
        return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
    return _dumps(x)


class ScoreRecordEncoder:
    """Score records of one scored batch (see the module docstring)."""

    def __init__(self, components: list[str], thresholds: dict[str, float], model: str, version: str,
                 scored_at_ms: float):
        self.components = list(components)
        # the record template: what the batch shares written once, "%" escaped; the fields are the
        # series id (inside the "id" string, then as JSON), end µs, start and end ms, the scores in
        # component order, the anomalous flag and the input partition
        # the record as constant pieces around its fields: the series id (inside the "id" string, then
        # as JSON), end µs, start and end ms, the scores in component order, the anomalous flag and the
        # input partition. JSON from json.dumps holds no NUL byte (it escapes control characters):
        # batch_records ends every record with one, to split the batch's text into records
        keys = ['"' + _dumps(c)[1:-1] + '":' for c in self.components]
        self._pieces = (['{"id":"', "@", '","series":', ',"start_ts":', ',"end_ts":', ',"scores":{' + keys[0]]
                        + ["," + k for k in keys[1:]]
                        + ["},\"thresholds\":" + _dumps(thresholds, separators=(",", ":")) + ',"anomalous":',
                           ',"model":' + _dumps(model) + ',"version":' + _dumps(version) + ',"partition":',
                           ',"scored_at":' + _number(round(scored_at_ms, 1)) + "}\x00"])
        assert not any("\x00" in x for x in self._pieces[:-1])

    @staticmethod
    def series(series: str) -> str:
        """The series id as a JSON string (pass it to :meth:`record`), remembered (:func:`series_json`)."""
        return series_json([series])[0]

    def record(self, series_json: str, start_us: int, end_us: int, scores: tuple | list, anomalous: bool,
               partition: int) -> bytes:
        """One record's bytes; ``scores`` are the window's scores in the order of ``components``."""
        return self.records(series_json, [start_us], [end_us], [scores], [anomalous], partition)[0]

    def records(self, series_json: str, start_us: list, end_us: list, rows: list, anomalous: list,
                partition: int) -> list[bytes]:
        """The records of a run of one series' windows, ``(start_us[i], end_us[i], rows[i], anomalous[i])``
        each (``rows[i]``: the window's scores in the order of ``components``).

        >>> enc = ScoreRecordEncoder(["a", "b"], {"a": 1.0, "b": 2.0}, "m", "1", 5.0)
        >>> for r in enc.records(enc.series("x"), [1500, 2000], [3000, 4001], [(0.5, float("nan")), (2, 1e300)],
        ...                      [True, False], 0):
        ...     print(r.decode())
        {"id":"x@3000","series":"x","start_ts":1.5,"end_ts":3,"scores":{"a":0.5,"b":NaN},"thresholds":{"a":1.0,"b":2.0},"anomalous":true,"model":"m","version":"1","partition":0,"scored_at":5.0}
        {"id":"x@4001","series":"x","start_ts":2,"end_ts":4.001,"scores":{"a":2,"b":1e+300},"thresholds":{"a":1.0,"b":2.0},"anomalous":false,"model":"m","version":"1","partition":0,"scored_at":5.0}
        """
        cols = list(zip(*rows)) if rows else [[] for _ in self.components]
        n = len(end_us)
        return self.batch_records([series_json] * n, number_strings(list(end_us)), ms_strings(start_us),
                                  ms_strings(end_us), [number_strings(list(c)) for c in cols],
                                  anomalous, [str(int(partition))] * n)

    def batch_records(self, series_json: list[str], end_us: list[str], start_ms: list[str], end_ms: list[str],
                      score_cols: list[list[str]], anomalous: list, partition: list[str]) -> list[bytes]:
        """The records of a scored batch, window i from ``series_json[i]`` (:meth:`series`), its numbers
        already written as JSON (:func:`number_strings`, :func:`ms_strings`: one C call per column;
        ``score_cols``: one column of strings per component) and ``partition[i]`` (a string), whatever
        the series (with 10,000 series a batch holds a window or two of each). The batch is one
        ``str.join`` of its columns interleaved with the record's constant pieces, encoded once and
        split into records: no Python code runs per record (0.42 against 0.66 µs per record for a
        ``%`` format each).

        >>> enc = ScoreRecordEncoder(["a"], {"a": 1.0}, "m", "1", 5.0)
        >>> for r in enc.batch_records([enc.series("x"), enc.series("y%s")], ["3000", "4000"], ["1", "2"],
        ...                            ["3", "4"], [["0.5", "NaN"]], [True, False], ["0", "7"]):
        ...     print(r.decode())
        {"id":"x@3000","series":"x","start_ts":1,"end_ts":3,"scores":{"a":0.5},"thresholds":{"a":1.0},"anomalous":true,"model":"m","version":"1","partition":0,"scored_at":5.0}
        {"id":"y%s@4000","series":"y%s","start_ts":2,"end_ts":4,"scores":{"a":NaN},"thresholds":{"a":1.0},"anomalous":false,"model":"m","version":"1","partition":7,"scored_at":5.0}
        """
        if not end_us:
            return []
        cols = [map(_INNER, series_json), end_us, series_json, start_ms, end_ms, *score_cols,
                map(_FLAG, anomalous), partition]
        text = "".join(chain.from_iterable(zip(*[x for pair in zip(map(repeat, self._pieces), cols) for x in pair],
                                               repeat(self._pieces[-1]))))
        out = text.encode().split(b"\x00")
        out.pop()  # (after the last record's NUL)
        return out


_INNER = itemgetter(slice(1, -1))  # a JSON string without its quotes
_FLAG = ("false", "true").__getitem__


_SERIES_JSON: dict[str, str] = {}
_SERIES_JSON_MAX = 65_536  # (as many as the lru_cache it replaces held)


def series_json(ids: list[str]) -> list[str]:
    """Each series id as a JSON string, remembered (up to 65,536 ids, then forgotten at once): a dict
    lookup per window instead of a ``json.dumps`` call.

    >>> series_json(["ecg-1", "ecg-2", "ecg-1"])
    ['"ecg-1"', '"ecg-2"', '"ecg-1"']
    """
    cache = _SERIES_JSON
    out = list(map(cache.get, ids))
    if None in out:
        if len(cache) > _SERIES_JSON_MAX:
            cache.clear()
        for i, j in enumerate(out):
            if j is None:
                out[i] = cache[ids[i]] = _dumps(ids[i])
    return out


def number_strings(values: Any) -> list[str]:
    """Each number (a list, or a numpy array) as JSON: read back, the same number of the same type
    (int or float; ``NaN`` and ``Infinity`` as ``json.dumps`` writes them), in one C call.

    Finite floats and 64-bit ints are written by orjson (0.04 µs per float against 0.4 for
    ``json.dumps``; the shortest decimal that reads back as the same double, spelled ``0.00001``
    where ``json.dumps`` writes ``1e-05``); a column holding a non-finite or larger number goes
    through ``json.dumps``. A float32 array is written as the doubles of its values, as its
    ``tolist()`` would be.

    >>> number_strings([1, 0.1, 2.5e-08, 1e300])
    ['1', '0.1', '2.5e-8', '1e+300']
    >>> number_strings([1, 0.1, float("nan"), -float("inf"), 10**20])
    ['1', '0.1', 'NaN', '-Infinity', '100000000000000000000']
    >>> number_strings(np.array([0.5, 3.0], dtype=np.float32))
    ['0.5', '3.0']
    """
    if isinstance(values, np.ndarray):
        a = values.ravel()
        if a.dtype.kind == "f":
            a = a.astype(np.float64, copy=False)
            if not len(a):
                return []
            if np.isfinite(a).all():
                return _orjson_dumps(a, option=_OPT_NUMPY)[1:-1].decode().split(",")
        values = a.tolist()
    if not values:
        return []
    try:
        out = _orjson_dumps(values)
    except TypeError:  # an int beyond 64 bits
        out = b"null"
    if b"null" in out:  # (a list of numbers: null only for NaN and the infinities)
        return _dumps(values)[1:-1].split(", ")
    return out[1:-1].decode().split(",")


#: below this (epoch µs, ~ year 2109), ``us / 1000.0`` is written as the decimal ``W.fff`` itself:
#: doubles under 2**42 are less than 0.0005 apart, so no shorter decimal reads back as the same double
_DECIMAL_MS_BELOW_US = 2**42 * 1000


def ms_strings(us: Any) -> list[str]:
    """Microsecond timestamps as the JSON of :func:`ms` (whole milliseconds as ints).

    Timestamps from 0 to ~2109 are written by one orjson call over ``us / 1000.0`` (its shortest
    decimal is ``W.fff`` there): 0.05 µs each against 0.6 for the float repr; others through the float.

    >>> ms_strings([1_000, 2_500]), ms_strings([1_732_280_000_123_457, 1_732_280_000_123_000])
    (['1', '2.5'], ['1732280000123.457', '1732280000123'])
    """
    a = np.asarray(us, dtype=np.int64)
    if not len(a):
        return []
    if a.min() >= 0 and a.max() < _DECIMAL_MS_BELOW_US:
        # orjson writes the shortest decimal of each double, here that ``W.fff`` (0.05 µs each), and
        # ``W.0`` for whole milliseconds, which ms() writes as ints
        out = _orjson_dumps(a / 1000.0, option=_OPT_NUMPY)[1:-1].decode().split(",")
        whole = a % 1000 == 0
        if whole.any():
            for i in np.flatnonzero(whole).tolist():
                out[i] = out[i][:-2]
        return out
    whole = a % 1000 == 0
    if whole.all():
        return number_strings((a // 1000).tolist())
    frac = number_strings((a / 1000.0).tolist())  # what us / 1000.0 gives (|us| < 2**53: exact as a float)
    if not whole.any():
        return frac
    return [i if w else f for i, f, w in zip(number_strings((a // 1000).tolist()), frac, whole.tolist())]
