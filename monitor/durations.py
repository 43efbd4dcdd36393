"""Durations written by people: ``"90s"``, ``"15m"``, ``"24h"``, ``"1d"``, ``"250ms"``, ``"1h30m"``.

One parser for every setting and flag that takes a duration (``[retrain] every`` / ``since``,
``anomon dlq … --since``, ``--time-budget``), so they all accept the same spellings.

>>> parse_duration("1h30m"), parse_duration("2s"), parse_duration("1d"), parse_duration("250ms")
(5400.0, 2.0, 86400.0, 0.25)
>>> parse_duration(45, bare_seconds=True), parse_duration("2.5", bare_seconds=True)
(45.0, 2.5)
>>> parse_duration("10x")
Traceback (most recent call last):
...
ValueError: '10x' is not a duration (90s, 15m, 24h, 1d, 1h30m)
"""
from __future__ import annotations

import re
from typing import Any

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
_WHOLE = re.compile(rf"(?:\s*{_PART})+\s*")
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")


def parse_duration(value: Any, *, bare_seconds: bool = False) -> float:
    """Seconds of a duration: one or more ``<number><unit>`` parts (units ms, s, m, h, d; spaces allowed
    between parts, not inside one); with ``bare_seconds`` also a plain number of seconds.

    Raises ``ValueError`` (with the text and examples) for anything else; a negative duration cannot
    be written."""
    if bare_seconds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).lower()
    if bare_seconds and _NUMBER.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration (90s, 15m, 24h, 1d, 1h30m)")
    return sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, text))
