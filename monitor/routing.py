"""Many models in one daemon: the ``[[models]]`` entries of the config and the rule that routes a
reading to one of them.

Each entry names a model bundle and says which readings it scores::

    [[models]]
    name = "pumps"
    dir = "models/pumps"
    match = { topic = "plant-a", series = "pump-*" }     # glob; or series_regex = "^pump-[0-9]+$"

    [[models]]
    name = "site-b"
    dir = "models/site-b"
    match = { header = { site = "b" } }                  # a record header's value

    [[models]]
    name = "fallback"
    dir = "models/generic"
    default = true                                       # what no other entry matched

A reading goes to the **first** entry whose rules all hold (topic, series glob or regex, headers),
then to the default entry; one that matches nothing is dead-lettered with reason ``no_model``
(counted, never dropped silently). An entry may set its own window ``stride`` and scoring settings
(``threshold``, ``q``, ``alert_components``, ``open_after``, ``close_after``, ``alert_stale_s``).

Examples
--------
>>> r = Router(parse_models([
...     {"name": "pumps", "dir": "m/p", "match": {"topic": "plant-a", "series": "pump-*"}},
...     {"name": "b", "dir": "m/b", "match": {"header": {"site": "b"}}},
...     {"name": "rest", "dir": "m/r", "default": True}], "example"))
>>> r.route("plant-a", "pump-7"), r.route("plant-b", "pump-7"), r.route("x", "fan", [("site", b"b")])
('pumps', 'rest', 'b')
>>> Router(parse_models([{"name": "only", "dir": "m", "match": {"series_regex": "^fan-"}}], "x")).route("t", "pump") is None
True
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from monitor.errors import ConfigError

#: settings an entry may override (``section.key``)
OVERRIDES = {"stride": "window.stride", "threshold": "scoring.threshold", "q": "scoring.q",
             "alert_components": "scoring.alert_components", "open_after": "scoring.open_after",
             "close_after": "scoring.close_after", "alert_stale_s": "scoring.alert_stale_s",
             "watch_interval_s": "model.watch_interval_s"}
_MATCH_KEYS = ("topic", "series", "series_regex", "header")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class ModelEntry:
    """One ``[[models]]`` entry: a bundle and the readings it scores (see the module docstring)."""

    name: str
    dir: str
    topics: list[str] = field(default_factory=list)  # empty: any topic
    series: list[str] = field(default_factory=list)  # globs; empty: any series
    series_regex: re.Pattern | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    default: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # {"window.stride": 10, ...}
    raw: dict = field(default_factory=dict, repr=False)  # the entry as written (the worker pool passes it on)

    def matches(self, topic: str, series: str, headers: Any = None) -> bool:
        """Whether every rule of this entry holds for a reading (a default entry matches everything)."""
        if self.default:
            return True
        if self.topics and topic not in self.topics:
            return False
        if self.series and not any(fnmatch.fnmatchcase(series, g) for g in self.series):
            return False
        if self.series_regex is not None and self.series_regex.search(series) is None:
            return False
        if self.headers:
            got = dict(headers or ())
            for k, v in self.headers.items():
                h = got.get(k)
                if h is None or (h if isinstance(h, bytes) else str(h).encode()) != v:
                    return False
        return True


def parse_models(raw: Any, where: str) -> list[ModelEntry]:
    """The ``[[models]]`` entries of a config file, validated; errors name the entry and the field."""
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError(f"models: expected an array of tables ([[models]] entries) (from {where})")
    out: list[ModelEntry] = []
    for i, e in enumerate(raw):
        at = f"models[{i}]"

        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{at}.{key}: {msg} (from {where})")

        name = e.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad("name", f"expected a short name of letters, digits, '_', '.' or '-', got {name!r}")
        at = f"models[{i}] ({name})"
        unknown = sorted(set(e) - {"name", "dir", "match", "default", *OVERRIDES})
        if unknown:
            raise bad(unknown[0], f"unknown setting; known: name, dir, match, default, {', '.join(OVERRIDES)}")
        d = e.get("dir")
        if not isinstance(d, str) or not d:
            raise bad("dir", "the model bundle's directory is required")
        default = e.get("default", False)
        if not isinstance(default, bool):
            raise bad("default", f"expected true or false, got {default!r}")
        m = e.get("match", {})
        if not isinstance(m, dict):
            raise bad("match", "expected a table such as { topic = \"t\", series = \"pump-*\" }")
        if default and m:
            raise bad("match", "a default entry takes what no other entry matched: give it no match")
        if not default and not m:
            raise bad("match", "give a match (topic, series, series_regex or header) or default = true")
        extra = sorted(set(m) - set(_MATCH_KEYS))
        if extra:
            raise bad(f"match.{extra[0]}", f"unknown rule; known: {', '.join(_MATCH_KEYS)}")
        topics, series = m.get("topic", []), m.get("series", [])
        topics = [topics] if isinstance(topics, str) else topics
        series = [series] if isinstance(series, str) else series
        for key, v in (("topic", topics), ("series", series)):
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise bad(f"match.{key}", f"expected a string or a list of strings, got {m.get(key)!r}")
        rx = None
        if "series_regex" in m:
            try:
                rx = re.compile(str(m["series_regex"]))
            except re.error as exc:
                raise bad("match.series_regex", f"not a regular expression: {exc}") from None
        hdr = m.get("header", {})
        if not isinstance(hdr, dict) or not all(isinstance(v, (str, int)) for v in hdr.values()):
            raise bad("match.header", "expected a table of header names and values, e.g. { site = \"b\" }")
        overrides = {OVERRIDES[k]: v for k, v in e.items() if k in OVERRIDES}
        out.append(ModelEntry(name=name, dir=d, topics=list(topics), series=list(series), series_regex=rx,
                              headers={k: str(v).encode() for k, v in hdr.items()}, default=default,
                              overrides=overrides, raw=dict(e)))
    names = [x.name for x in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"models: name {dup[0]!r} is given to more than one entry (from {where})")
    if sum(x.default for x in out) > 1:
        raise ConfigError(f"models: more than one entry has default = true (from {where})")
    return out


class Router:
    """Which entry scores a reading: the first whose rules hold, else the default, else None.

    Routes by topic and series (and headers) are cached, so the cost per reading is a dict lookup
    unless some entry matches on a header."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self.entries = list(entries)
        self._ordered = [e for e in self.entries if not e.default] + [e for e in self.entries if e.default]
        self.uses_headers = any(e.headers for e in self.entries)
        self._cache: dict[tuple[str, str], str | None] = {}

    def route(self, topic: str, series: str, headers: Any = None) -> str | None:
        """The name of the entry that scores ``series`` read from ``topic`` (None: no entry matches)."""
        if not self.uses_headers:
            key = (topic, series)
            hit = self._cache.get(key, False)
            if hit is not False:
                return hit
            name = self._first(topic, series, None)
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            self._cache[key] = name
            return name
        return self._first(topic, series, headers)

    def _first(self, topic: str, series: str, headers: Any) -> str | None:
        for e in self._ordered:
            if e.matches(topic, series, headers):
                return e.name
        return None

    def topics_of(self, name: str, all_topics: list[str]) -> list[str]:
        """The input topics whose readings entry ``name`` can match."""
        e = next(x for x in self.entries if x.name == name)
        return [t for t in all_topics if not e.topics or t in e.topics] if not e.default else list(all_topics)

    def dead_letter_owner(self, topic: str, all_topics: list[str]) -> str | None:
        """The entry whose lane dead-letters readings of ``topic`` that match no entry: the first that reads it."""
        for e in self.entries:
            if topic in self.topics_of(e.name, all_topics):
                return e.name
        return None


class LaneFilter:
    """What one model's lane of the daemon keeps of a partition's records (see :mod:`monitor.lanes`).

    ``split`` returns the records routed to ``lane``, the highest offset of the others (read, never
    needed again: the commit point may pass them) and the records that match no entry and that this
    lane dead-letters (the lane that owns topic ``t``'s unmatched readings, see
    :meth:`Router.dead_letter_owner`). A keyless record is routed by the series field of its value;
    one whose value does not parse goes to the owner lane, whose decoder dead-letters it.

    >>> import collections
    >>> R = collections.namedtuple("R", "offset key value headers")
    >>> router = Router(parse_models([{"name": "a", "dir": "m", "match": {"series": "a*"}},
    ...                               {"name": "b", "dir": "m", "match": {"series": "b*"}}], "x"))
    >>> f = LaneFilter(router, "a", ["t"])
    >>> recs = [R(0, b"a1", b"{}", []), R(1, b"b1", b"{}", []), R(2, None, b'{"series":"zz"}', [])]
    >>> keep, passed, unmatched = f.split("t", recs, "series")
    >>> [r.offset for r in keep], passed, [(r.offset, s) for r, s in unmatched]
    ([0], 2, [(2, 'zz')])
    """

    def __init__(self, router: Router, lane: str, all_topics: list[str]):
        self.router = router
        self.lane = lane
        self.dlq_topics = {t for t in all_topics if router.dead_letter_owner(t, all_topics) == lane}

    def split(self, topic: str, recs: list, series_field: str) -> tuple[list, int, list]:
        route, lane = self.router.route, self.lane
        owner = topic in self.dlq_topics
        headers = self.router.uses_headers
        keep: list = []
        unmatched: list = []
        passed = -1
        for rec in recs:
            key = rec.key
            if key:
                sid = key.decode("utf-8", "replace")
            else:
                sid = _series_of(rec.value, series_field)
                if sid is None:  # not decodable: the owner's decoder dead-letters it with the reason
                    if owner:
                        keep.append(rec)
                    elif rec.offset > passed:
                        passed = rec.offset
                    continue
            name = route(topic, sid, rec.headers if headers else None)
            if name == lane:
                keep.append(rec)
                continue
            if rec.offset > passed:
                passed = rec.offset
            if name is None and owner:
                unmatched.append((rec, sid))
        return keep, passed, unmatched


def _series_of(value: Any, field_name: str) -> str | None:
    import json

    try:
        v = json.loads(value)
        s = v.get(field_name) if isinstance(v, dict) else None
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return s if isinstance(s, str) and s else None
