"""Per-(partition, series) sliding windows in event-time order, with committable offsets.

A :class:`Windower` receives decoded readings (:class:`streams.records.Readings`) with the
Kafka partition and offset they came from, and returns complete windows of ``length`` T
readings every ``stride`` S readings, per series, as numpy batches (:class:`WindowBatch`).

* **Order and lateness.** Readings are released in timestamp order. With ``lateness_ms = 0``
  a reading older than the last released one of its series is ``late`` (the same timestamp is a
  ``duplicate``); with a positive lateness, readings wait in a small per-series reorder buffer
  until the series' watermark (max timestamp seen - lateness) passes them.
* **Gaps.** A gap longer than ``gap_ms`` between consecutive readings restarts the window.
* **Idle series** are evicted after ``idle_ttl_s`` seconds of processing time without data. The
  clock is injected (:class:`SystemClock`, :class:`ManualClock`), never read inside the logic.
* **Committable offsets.** Each window carries the Kafka offset of its newest reading; the state
  keeps, per block of S readings, the smallest offset. :meth:`Windower.committable` returns, per
  partition, the smallest offset that open windows (and the reorder buffer) still need, or the
  next offset when nothing is open: committing it never loses a window.
* **Resume.** :meth:`Windower.snapshot` gives, per series, where the next window starts
  (``[ts_floor_us, skip]``); :meth:`Windower.assign` with that snapshot makes a new owner that
  replays from the committed offset rebuild exactly the same windows (same ends, same ids),
  silently skipping readings of windows already emitted.

State per series is light: a preallocated ``float32`` ring of T x C values and a ring of
``ceil(T/S) + 1`` block entries (start timestamp, smallest offset). A series idle for longer than
``pack_after_s`` is **packed** by :meth:`Windower.pack_idle` (the daemon's housekeeping runs it):
block entries delta-encoded, the smallest offsets coarsened to groups of 16 blocks (only ever
earlier, never past what was committable: commits stay safe and never go back), everything
zlib-compressed into one ``bytes``; the next reading unpacks it. A regularly sampled idle series
at T = 140 then costs under 1 KiB even at stride 1 (which otherwise needs 141 block entries).

Examples
--------
>>> import numpy as np
>>> from streams.records import Readings
>>> w = Windower(WindowSpec(length=4, stride=2, channels=1), clock=ManualClock())
>>> r = Readings("a", np.arange(6, dtype=np.int64) * 1000, np.arange(6.0)[:, None])
>>> batches, rejected = w.add(0, 10, r)
>>> [b.X[:, :, 0].tolist() for b in batches]
[[[0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]]]
>>> batches[0].end_ts.tolist(), w.committable(0)
([3000, 5000], 10)
"""
from __future__ import annotations

import math
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streams.records import Readings

# --------------------------------------------------------------------------- clocks


class SystemClock:
    """Processing time from :func:`time.monotonic`."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock tests move by hand.

    >>> c = ManualClock(); c.advance(5); c.now()
    5.0
    """

    def __init__(self, t: float = 0.0):
        self.t = float(t)

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# --------------------------------------------------------------------------- spec and outputs


@dataclass(frozen=True)
class WindowSpec:
    """Window length and stride (in readings), channels, lateness, gap limit, TTL, bounds."""

    length: int = 140
    stride: int = 10
    channels: int = 1
    lateness_ms: float = 0.0
    #: A gap longer than this (ms) restarts the window; None = never.
    gap_ms: float | None = None
    idle_ttl_s: float = 600.0
    #: Series idle longer than this (s) have their state packed (compressed) until data comes; None = never.
    pack_after_s: float | None = 10.0
    max_series_per_partition: int = 100_000
    #: Bound of the reorder buffer per series (samples) when lateness_ms > 0.
    max_pending: int = 10_000

    def __post_init__(self) -> None:
        for name in ("length", "stride", "channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"window {name} must be a positive integer, got {v!r}")
        if self.lateness_ms < 0:
            raise ValueError("window lateness_ms must be >= 0")
        if self.gap_ms is not None and self.gap_ms <= 0:
            raise ValueError("window gap_ms must be > 0 (or unset)")
        if self.pack_after_s is not None and self.pack_after_s < 0:
            raise ValueError("window pack_after_s must be >= 0 (or unset)")


class _Windows:
    """Complete windows of one partition: ``X`` (k, T, C) float32, start and end times in µs, end offsets;
    ``series``: their series (:class:`WindowBatch`: one; :class:`MultiSeriesBatch`: one per window)."""

    __slots__ = ("series", "partition", "X", "start_ts", "end_ts", "end_offset")

    def __init__(self, series: Any, partition: Any, X: np.ndarray, start_ts: np.ndarray, end_ts: np.ndarray,
                 end_offset: np.ndarray):
        self.series = series
        self.partition = partition
        self.X = X
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.end_offset = end_offset

    def __len__(self) -> int:
        return len(self.end_ts)

    def _series_at(self, sel: Any) -> Any:
        raise NotImplementedError

    def take(self, sel: Any) -> Any:
        """The windows ``sel`` selects (a slice or a list of indices), in that order, as a batch of this kind."""
        return type(self)(self._series_at(sel), self.partition, self.X[sel], self.start_ts[sel], self.end_ts[sel],
                          self.end_offset[sel])

    def with_partition(self, partition: Any) -> Any:
        """The same windows, tagged with another partition."""
        return type(self)(self.series, partition, self.X, self.start_ts, self.end_ts, self.end_offset)


class WindowBatch(_Windows):
    """Complete windows of one series: ``X`` (k, T, C) float32, times in µs, end offsets."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"WindowBatch(series={self.series!r}, partition={self.partition!r}, k={len(self)})"

    def window_series(self) -> list[str]:
        """The series of each window."""
        return [self.series] * len(self.end_ts)

    def _series_at(self, sel: Any) -> str:
        return self.series


class MultiSeriesBatch(_Windows):
    """Complete windows of several series of one partition, in the order they completed: window i
    (``X[i]``, times in µs, end offset) belongs to ``series[i]``; each series' windows are in order.

    :meth:`Windower.add_values` returns the windows of many single readings as one such batch: at
    stride 1 with 10,000 series, a batch of one series would hold one window.

    >>> b = MultiSeriesBatch(["a", "b", "a"], 0, np.zeros((3, 2, 1), np.float32), np.array([0, 0, 1]),
    ...                      np.array([1, 1, 2]), np.array([5, 6, 7]))
    >>> b, b.take([0, 2]).end_ts.tolist(), b.take(slice(1, 3)).window_series()
    (MultiSeriesBatch(partition=0, k=3, series=2), [1, 2], ['b', 'a'])
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"MultiSeriesBatch(partition={self.partition!r}, k={len(self)}, series={len(set(self.series))})"

    def window_series(self) -> list[str]:
        """The series of each window."""
        return self.series

    def _series_at(self, sel: Any) -> list[str]:
        return self.series[sel] if isinstance(sel, slice) else [self.series[j] for j in sel]


@dataclass
class Rejection:
    """Samples of one record that were not windowed, and why."""

    reason: str
    count: int
    message: str


# --------------------------------------------------------------------------- per-series state


class _Reorder:
    """The reorder buffer of a series (only with a positive lateness): pending samples and the max ts."""

    __slots__ = ("ts", "off", "vals", "max_ts")

    def __init__(self) -> None:
        self.ts = self.off = self.vals = None
        self.max_ts = -1


#: packed state: header (smallest offset still needed or -1, start ts of the next window or -1), then zlib
_PACK_HEAD = struct.Struct("<qq")
try:  # the fast path of Windower.add_values in C (streams/_speedups.c), where the install built it
    from streams._speedups import add_plain as _c_add_plain
except ImportError:  # pragma: no cover - a machine without a C compiler
    _c_add_plain = None
if sys.byteorder != "little":  # (it writes the state's int64 and float32 in the machine's order)
    _c_add_plain = None
#: what the fast path of add_values says of the item it stopped at (the C loop and its Python twin)
_DONE, _SLOW, _DUPLICATE, _LATE = 0, 1, 2, 3

#: one block entry of the state buffer (start ts, smallest offset), and one int64 of it
_BLOCK = struct.Struct("<qq")
_Q = struct.Struct("<q")
#: blocks whose smallest offsets are merged (to their minimum) when a series is packed
_PACK_GROUP = 16


def _rejection(duplicate: bool, sid: str) -> Rejection:
    """The Rejection of one reading at or before its series' last timestamp."""
    if duplicate:
        return Rejection("duplicate", 1, f"timestamp already seen for series {sid!r}")
    return Rejection("late", 1, f"older than the last reading for series {sid!r}")


class _Series:
    # Kept small: an idle series costs one object, one bytearray and its dict entry (~1 KiB at T=140);
    # packed (see Windower.pack_idle), ``buf`` is an immutable ``bytes`` instead.
    __slots__ = ("buf", "n", "w_next", "last_ts", "seen", "resume_ts", "resume_skip", "late")

    def __init__(self, spec: WindowSpec, nb: int, now: float):
        # one bytearray (57 bytes of header against an ndarray's 112): (start ts, min offset) int64
        # per block of S readings, then the T x C float32 ring; numpy views are made on use
        self.buf = bytearray(nb * 16 + spec.length * spec.channels * 4)
        self.n = 0  # readings in the current run
        self.w_next = 0  # index of the next window to emit in this run
        self.last_ts = -1  # last released timestamp (µs)
        self.seen = now
        self.resume_ts = -1
        self.resume_skip = 0
        self.late: _Reorder | None = None  # reorder buffer (only with lateness)

    def blocks(self, nb: int) -> np.ndarray:
        return np.frombuffer(self.buf, np.int64, 2 * nb).reshape(nb, 2)

    def ring(self, nb: int, T: int) -> np.ndarray:
        return np.frombuffer(self.buf, np.float32, offset=nb * 16).reshape(T, -1)


class Windower:
    """Sliding windows per (partition, series); see the module docstring."""

    def __init__(self, spec: WindowSpec, clock: Any = None):
        self.spec = spec
        self.clock = clock or SystemClock()
        self._nb = math.ceil(spec.length / spec.stride) + 1
        self._pack_row = struct.Struct(f"<{spec.channels}f").pack_into  # one reading into the ring
        self._row_bytes = 4 * spec.channels
        self._lat_us = int(round(spec.lateness_ms * 1000))
        self._gap_us = None if spec.gap_ms is None else int(round(spec.gap_ms * 1000))
        self._parts: dict[Any, dict[str, _Series]] = {}  # insertion order = least recently seen first
        self._next_off: dict[Any, int] = {}
        self._resume: dict[Any, dict[str, list[int]]] = {}
        self.evicted = 0
        #: Optional hook ``adopt(partition, series, offset) -> series state | None``, asked when a series
        #: is first seen on a partition: a state it returns (from :meth:`detach`) continues there.
        self.adopt: Any = None

    # ---- partitions
    def assign(self, partition: Any, resume: dict[str, list[int]] | None = None) -> None:
        """Start (empty) state for a partition; ``resume`` is a :meth:`snapshot` of the previous owner."""
        self._parts[partition] = {}
        self._next_off.pop(partition, None)
        self._resume[partition] = dict(resume or {})

    def revoke(self, partition: Any) -> None:
        """Drop the state of a partition (its new owner rebuilds it from the committed offset)."""
        self._parts.pop(partition, None)
        self._next_off.pop(partition, None)
        self._resume.pop(partition, None)

    def detach(self, partition: Any) -> tuple[dict[str, _Series], int | None]:
        """Like :meth:`revoke`, but return the per-series states that still hold readings open windows
        need (``{series: state}``), and the partition's next offset (None when nothing was consumed)."""
        series_map = self._parts.get(partition, {})
        nxt = self._next_off.get(partition)
        held = {sid: st for sid, st in series_map.items() if self._needed(st) is not None}
        self.revoke(partition)
        return held, nxt

    @staticmethod
    def copy_series(st: _Series) -> _Series:
        """An independent copy of a series state (from :meth:`detach`)."""
        new = _Series.__new__(_Series)
        for name in _Series.__slots__:
            setattr(new, name, getattr(st, name))
        new.buf = st.buf if type(st.buf) is bytes else bytearray(st.buf)  # packed bytes are immutable
        if st.late is not None:
            new.late = _Reorder()
            for name in _Reorder.__slots__:
                v = getattr(st.late, name)
                setattr(new.late, name, v.copy() if isinstance(v, np.ndarray) else v)
        return new

    def _adopted(self, st: _Series, offset: int, now: float) -> _Series:
        """A detached state continuing at ``offset`` of another log: the readings it holds are not in
        that log, so they count as needing ``offset`` (committing it never skips a window)."""
        if type(st.buf) is bytes:
            self._unpack(st)
        blocks = st.blocks(self._nb)
        blocks[:, 1] = offset
        if st.late is not None and st.late.off is not None:
            st.late.off[:] = offset
        st.seen = now
        return st

    @property
    def partitions(self) -> list[Any]:
        return list(self._parts)

    def n_series(self, partition: Any = None) -> int:
        if partition is not None:
            return len(self._parts.get(partition, ()))
        return sum(len(s) for s in self._parts.values())

    # ---- input
    def add_consumed(self, partition: Any, offset: int) -> None:
        """Note a record that was consumed but not windowed (dead-lettered): it is never needed again."""
        self._next_off[partition] = max(self._next_off.get(partition, 0), offset + 1)

    def add(self, partition: Any, offset: int, readings: Any) -> tuple[list[WindowBatch], list[Rejection]]:
        """Add the readings of the record at ``offset``; returns complete windows and rejected samples."""
        series_map = self._parts.get(partition)
        if series_map is None:
            self.assign(partition)
            series_map = self._parts[partition]
        self._next_off[partition] = max(self._next_off.get(partition, 0), offset + 1)
        spec = self.spec
        rejected: list[Rejection] = []
        if not readings.n:
            return [], rejected
        vals = readings.values
        if vals.shape[1] != spec.channels:
            return [], [Rejection("wrong_width", readings.n, f"{vals.shape[1]} channel(s), windows have {spec.channels}")]
        now = self.clock.now()
        sid = readings.series
        st = series_map.get(sid)
        if st is None:
            if len(series_map) >= spec.max_series_per_partition:
                self.evict_idle()
                if len(series_map) >= spec.max_series_per_partition:
                    return [], [Rejection("series_limit", readings.n,
                                          f"partition {partition} holds {len(series_map)} series (max_series_per_partition)")]
            got = self.adopt(partition, sid, offset) if self.adopt is not None else None
            if got is not None:
                st = self._adopted(got, offset, now)
                res = self._resume.get(partition)
                if res:
                    res.pop(sid, None)
            else:
                st = _Series(spec, self._nb, now)
                res = self._resume.get(partition)
                if res:
                    r = res.pop(sid, None)
                    if r is not None:
                        st.resume_ts, st.resume_skip = int(r[0]), int(r[1])
            series_map[sid] = st
        else:
            if type(st.buf) is bytes:
                self._unpack(st)
            if st.seen != now:
                st.seen = now
                del series_map[sid]  # re-insert: dicts keep insertion order, so the front is the idlest
                series_map[sid] = st
        ts = readings.ts
        out: list[WindowBatch] = []
        if self._lat_us == 0 and len(ts) == 1 and st.resume_ts < 0:
            t = int(ts[0])
            rj = self._admit_one(st, sid, t)
            if rj is not None:
                return out, [rj]
            b = self._append_one(st, sid, partition, t, vals[0], offset)
            if b is not None:
                out.append(b)
            return out, rejected
        if self._lat_us == 0:
            if ts[0] <= st.last_ts:
                late = ts <= st.last_ts
                ndup = int(np.count_nonzero(ts == st.last_ts)) if ts[-1] >= st.last_ts else 0
                nlate = int(np.count_nonzero(late)) - ndup
                if nlate:
                    rejected.append(Rejection("late", nlate, f"older than the last reading of series {sid!r}"))
                if ndup:
                    rejected.append(Rejection("duplicate", ndup, f"timestamp already seen for series {sid!r}"))
                keep = ~late
                ts, vals = ts[keep], vals[keep]
            if len(ts) > 1 and np.any(np.diff(ts) <= 0):
                ts, vals, nbad = self._sorted_unique(ts, vals)
                if nbad:
                    rejected.append(Rejection("duplicate", nbad, "timestamps repeated or out of order within the record"))
            if len(ts):
                self._release(st, sid, partition, ts, vals.astype(np.float32, copy=False),
                              np.full(len(ts), offset, dtype=np.int64), out)
        else:
            self._add_lateness(st, sid, partition, offset, ts, vals, out, rejected)
        return out, rejected

    def add_values(self, partition: Any, items: list) -> tuple[list, list]:
        """Add single readings, in offset order: ``items`` holds ``(offset, series, ts_us, row)`` with
        ``row`` a tuple of ``channels`` floats. The result is what :meth:`add` gives for each of them
        as a one-reading :class:`~streams.records.Readings`: windows as ``[(idx, batch)]``, ``idx``
        the index of the item that completed each window of ``batch``, and ``[(i, Rejection)]``.
        The common case (a known, unpacked series, no lateness, no resume point) runs without numpy
        temporaries per reading, and the windows of a run of such items come as one
        :class:`MultiSeriesBatch` in the order they completed, whatever their series; the other items
        go through :meth:`add` in between (so the windows stay in item order).

        >>> w = Windower(WindowSpec(length=2, stride=1), clock=ManualClock())
        >>> _ = w.add_values(0, [(0, "a", 1000, (1.0,)), (1, "b", 1000, (5.0,))])  # new series: through add()
        >>> items = [(2, "a", 2000, (2.0,)), (3, "b", 2000, (6.0,)), (4, "a", 2000, (3.0,)), (5, "c", 1000, (9.0,)),
        ...          (6, "a", 3000, (4.0,))]
        >>> wins, rej = w.add_values(0, items)
        >>> [(idx, b.window_series(), b.X[:, :, 0].tolist(), b.end_offset.tolist()) for idx, b in wins]
        [([0, 1], ['a', 'b'], [[1.0, 2.0], [5.0, 6.0]], [2, 3]), ([4], ['a'], [[2.0, 4.0]], [6])]
        >>> [(i, r.reason) for i, r in rej]
        [(2, 'duplicate')]
        """
        wins: list = []
        rejs: list = []
        if not items:
            return wins, rejs
        series_map = self._parts.get(partition)
        if series_map is None:
            self.assign(partition)
            series_map = self._parts[partition]
        spec = self.spec
        T, S, C, nb = spec.length, spec.stride, spec.channels, self._nb
        gap = -1 if self._gap_us is None else self._gap_us
        now = self.clock.now()
        last_off = self._next_off.get(partition, 0)
        acc: tuple = (bytearray(), [], [], [], [], [])  # windows: float32 bytes, starts, ends, offsets, series, items
        fast = self._lat_us == 0  # (with lateness every reading goes through add())
        c_loop = _c_add_plain if fast else None
        i, n = 0, len(items)
        while i < n:
            code = _SLOW
            if c_loop is not None:
                i, last_off, code = c_loop(series_map, items, i, now, T, S, C, nb, gap, last_off, *acc)
                if code == _DONE:
                    break
            if code == _SLOW and fast:  # (the Python loop: an item the C loop leaves may still be plain)
                i, last_off, code = self._add_plain(series_map, items, i, n if c_loop is None else i + 1, now,
                                                    last_off, *acc)
                if code == _DONE:
                    continue
            sid = items[i][1]
            if code != _SLOW:
                rejs.append((i, _rejection(code == _DUPLICATE, sid)))
            else:  # through add(), after the windows so far (they stay in item order)
                if acc[1]:
                    wins.append(self._acc_batch(partition, acc))
                    acc = (bytearray(), [], [], [], [], [])
                off, _, t, row = items[i]
                b, r = self.add(partition, off, Readings(sid, np.array([t], dtype=np.int64),
                                                         np.array([row], dtype=np.float64)))
                wins.extend(([i] * len(x), x) for x in b)
                rejs.extend((i, x) for x in r)
            i += 1
        if acc[1]:
            wins.append(self._acc_batch(partition, acc))
        if last_off > self._next_off.get(partition, 0):
            self._next_off[partition] = last_off
        return wins, rejs

    def _add_plain(self, series_map: dict, items: list, i: int, end: int, now: float, last_off: int,
                   out: bytearray, starts: list, ends: list, offs: list, sids: list, idx: list) -> tuple[int, int, int]:
        """The fast path of :meth:`add_values` over ``items[i:end]`` (the C loop's Python twin: the same
        accumulators, result and stop codes): a known, unpacked series without a resume point and a row
        of ``channels`` numbers; stops at the first other item, or a duplicate or late one."""
        C = self.spec.channels
        admit, append = self._admit_one, self._append_raw
        while i < end:
            off, sid, t, row = items[i]
            st = series_map.get(sid)
            if st is None or type(st.buf) is bytes or st.resume_ts >= 0 or len(row) != C:
                return i, last_off, _SLOW
            if off >= last_off:
                last_off = off + 1
            if st.seen != now:
                st.seen = now
                del series_map[sid]  # re-insert: dicts keep insertion order, so the front is the idlest
                series_map[sid] = st
            rj = admit(st, sid, t)
            if rj is not None:
                return i, last_off, _DUPLICATE if rj.reason == "duplicate" else _LATE
            x = append(st, t, row, off)
            if x is not None:
                out += x[0]
                starts.append(x[1])
                ends.append(t)
                offs.append(off)
                sids.append(sid)
                idx.append(i)
            i += 1
        return i, last_off, _DONE

    def _acc_batch(self, partition: Any, acc: tuple) -> tuple[list, MultiSeriesBatch]:
        """The windows :meth:`add_values` collected (``(bytes, starts, ends, offsets, series, items)``, in
        completion order) as ``(item indices, MultiSeriesBatch)``."""
        out, starts, ends, offs, sids, idx = acc
        return idx, self._raw_batch(MultiSeriesBatch, sids, partition, out, starts, ends, offs)

    @staticmethod
    def _sorted_unique(ts, vals):
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        keep = np.ones(len(ts), dtype=bool)
        keep[1:] = np.diff(ts) > 0
        return ts[keep], vals[keep], int(len(keep) - keep.sum())

    def _add_lateness(self, st, sid, partition, offset, ts, vals, out, rejected) -> None:
        spec = self.spec
        late = ts <= st.last_ts
        if late.any():
            n = int(late.sum())
            rejected.append(Rejection("late", n, f"older than the watermark of series {sid!r} "
                                      f"(lateness {spec.lateness_ms} ms)"))
            keep = ~late
            ts, vals = ts[keep], vals[keep]
            if not len(ts):
                return
        offs = np.full(len(ts), offset, dtype=np.int64)
        vals = vals.astype(np.float32, copy=False)
        if st.late is None:
            st.late = _Reorder()
        p = st.late
        if p.ts is not None and len(p.ts):
            ts = np.concatenate([p.ts, ts])
            offs = np.concatenate([p.off, offs])
            vals = np.concatenate([p.vals, vals])
        order = np.argsort(ts, kind="stable")
        ts, offs, vals = ts[order], offs[order], vals[order]
        keep = np.ones(len(ts), dtype=bool)
        keep[1:] = np.diff(ts) > 0
        if not keep.all():
            rejected.append(Rejection("duplicate", int(len(keep) - keep.sum()), f"timestamp already seen for series {sid!r}"))
            ts, offs, vals = ts[keep], offs[keep], vals[keep]
        p.max_ts = max(p.max_ts, int(ts[-1]))
        cut = int(np.searchsorted(ts, p.max_ts - self._lat_us, side="right"))
        # bound the buffer: release the oldest beyond max_pending
        cut = max(cut, len(ts) - spec.max_pending)
        if cut:
            self._release(st, sid, partition, ts[:cut], vals[:cut], offs[:cut], out)
        if cut < len(ts):
            p.ts, p.off, p.vals = ts[cut:].copy(), offs[cut:].copy(), vals[cut:].copy()
        else:
            p.ts = p.off = p.vals = None

    # ---- the core: append strictly increasing samples
    def _release(self, st: _Series, sid: str, partition: Any, ts: np.ndarray, vals: np.ndarray, offs: np.ndarray,
                 out: list[WindowBatch]) -> None:
        if st.resume_ts >= 0:
            k = int(np.searchsorted(ts, st.resume_ts, side="left"))
            if k < len(ts):  # reached the resume point: skip what remains of the emitted window's stride
                extra = min(st.resume_skip, len(ts) - k)
                st.resume_skip -= extra
                k += extra
                if st.resume_skip == 0:
                    st.resume_ts = -1
            if k:
                st.last_ts = int(ts[k - 1])
                ts, vals, offs = ts[k:], vals[k:], offs[k:]
            if not len(ts):
                return
        if self._gap_us is not None:
            prev = np.empty_like(ts)
            prev[0] = st.last_ts if st.n else ts[0]
            prev[1:] = ts[:-1]
            cuts = np.flatnonzero(ts - prev > self._gap_us)
            start = 0
            for c in cuts.tolist():
                if c > start:
                    self._extend(st, sid, partition, ts[start:c], vals[start:c], offs[start:c], out)
                st.n = 0
                st.w_next = 0
                start = c
            if start:
                ts, vals, offs = ts[start:], vals[start:], offs[start:]
        self._extend(st, sid, partition, ts, vals, offs, out)

    def _admit_one(self, st: _Series, sid: str, t: int) -> Rejection | None:
        """Whether one reading (no lateness, no resume point) may be appended: a Rejection when it is late
        or a duplicate; a gap longer than ``gap_ms`` restarts the series' run."""
        last = st.last_ts
        if t <= last:
            return _rejection(t == last, sid)
        if self._gap_us is not None and st.n and t - last > self._gap_us:
            st.n = st.w_next = 0
        return None

    def _append_one(self, st: _Series, sid: str, partition: Any, t: int, row: Any, off: int) -> WindowBatch | None:
        """:meth:`_extend` for one reading (``row``: C numbers): the window it completes, if any."""
        x = self._append_raw(st, t, row, off)
        return None if x is None else self._raw_batch(WindowBatch, sid, partition, bytearray(x[0]), [x[1]], [t], [off])

    def _raw_batch(self, cls: type, series: Any, partition: Any, buf: bytearray, starts: Any, ends: Any,
                   offs: Any) -> Any:
        """A ``cls`` batch (:class:`WindowBatch`, :class:`MultiSeriesBatch`) of the windows whose float32
        bytes (as :meth:`_append_raw` returns them) follow one another in ``buf``; the batch's array is a
        view of ``buf``."""
        X = np.frombuffer(buf, np.float32).reshape(len(starts), self.spec.length, self.spec.channels)
        return cls(series, partition, X, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64),
                   np.array(offs, dtype=np.int64))

    def _append_raw(self, st: _Series, t: int, row: Any, off: int) -> tuple[bytes, int] | None:
        """Append one reading to the series' state buffer with ``struct`` (no numpy temporaries); return
        the window it completes, if any, as ``(float32 bytes in time order, start time)``."""
        T, S, nb = self.spec.length, self.spec.stride, self._nb
        buf = st.buf
        n0 = st.n
        ring_off = nb * 16
        rb = self._row_bytes
        self._pack_row(buf, ring_off + rb * (n0 % T), *row)
        w = st.w_next
        if n0 >= w * S:  # this reading is needed by the next window: keep its block's start and min offset
            k = 16 * ((n0 // S) % nb)
            if n0 % S == 0:
                _BLOCK.pack_into(buf, k, t, off)
            elif off < _Q.unpack_from(buf, k + 8)[0]:
                _Q.pack_into(buf, k + 8, off)
        st.n = n0 + 1
        st.last_ts = t
        if n0 != w * S + T - 1:
            return None
        # a window completes: the ring from its oldest row on, then from its start
        st.w_next = w + 1
        start = t if T == 1 else _Q.unpack_from(buf, 16 * (w % nb))[0]
        j = ring_off + rb * ((n0 + 1) % T)
        end = ring_off + rb * T
        return (buf[j:end] if j == ring_off else buf[j:end] + buf[ring_off:j]), start

    def _extend(self, st: _Series, sid: str, partition: Any, ts: np.ndarray, vals: np.ndarray, offs: np.ndarray,
                out: list[WindowBatch]) -> None:
        T, S, nb = self.spec.length, self.spec.stride, self._nb
        ring, blocks = st.ring(nb, T), st.blocks(nb)
        n0, m = st.n, len(ts)
        n1 = n0 + m
        # windows completed by these samples: w*S + T - 1 in [n0, n1)
        w0 = st.w_next
        w_end = (n1 - T) // S + 1 if n1 >= T else 0  # windows w < w_end are complete
        if w_end > w0:
            ws = np.arange(w0, w_end, dtype=np.int64)
            r = min(n0, T - 1)
            base = n0 - r
            if r:
                held = ring[np.arange(base, n0) % T]
                buf = np.concatenate([held, vals])
            else:
                buf = vals
            view = sliding_window_view(buf, T, axis=0)  # (len-T+1, C, T)
            X = np.ascontiguousarray(view[ws * S - base].transpose(0, 2, 1))
            starts = ws * S
            start_ts = np.empty(len(ws), dtype=np.int64)
            inside = starts >= n0
            if inside.any():
                start_ts[inside] = ts[starts[inside] - n0]
            if not inside.all():
                start_ts[~inside] = blocks[ws[~inside] % nb, 0]
            ends = starts + T - 1 - n0
            out.append(WindowBatch(sid, partition, X, start_ts, ts[ends], offs[ends]))
            st.w_next = w_end
        # blocks still needed: from block w_next on
        first = max(n0, st.w_next * S)
        if first < n1:
            old_min = int(blocks[(first // S) % nb, 1]) if first > (first // S) * S else 0
            seqs = np.arange(first, n1, dtype=np.int64)
            ks = seqs // S
            uk, idx = np.unique(ks, return_index=True)
            mins = np.minimum.reduceat(offs[first - n0:], idx)
            slots = uk % nb
            blocks[slots, 1] = mins
            here = uk * S >= n0
            blocks[slots[here], 0] = ts[uk[here] * S - n0]
            if not here[0]:  # the block began in an earlier record: keep its start, combine the minimum
                blocks[slots[0], 1] = min(int(mins[0]), old_min)
        # ring of the last T values
        k = min(m, T)
        ring[np.arange(n1 - k, n1) % T] = vals[m - k:]
        st.n = n1
        st.last_ts = int(ts[-1])

    # ---- offsets, progress, eviction
    def _needed(self, st: _Series) -> int | None:
        """The smallest offset the series' open windows still need (None: none).

        Without lateness, readings are released in offset order, so the blocks' smallest offsets
        never decrease along a run (packing keeps that: it takes minima over consecutive blocks) and
        the first block of the next window holds the answer: one ``struct`` read per series, which
        keeps a checkpoint of 10,000 series at a few ms. Packed, or with lateness, :meth:`_needed_scan`."""
        if self._lat_us or type(st.buf) is bytes:
            return self._needed_scan(st)
        S = self.spec.stride
        if st.n > st.w_next * S:
            return _BLOCK.unpack_from(st.buf, (st.w_next % self._nb) * 16)[1]
        return None

    def _needed_scan(self, st: _Series) -> int | None:
        """:meth:`_needed` for any series: the minimum over all the blocks of its open windows and
        its reorder buffer."""
        if type(st.buf) is bytes:
            need = _PACK_HEAD.unpack_from(st.buf)[0]
            return None if need < 0 else need
        S, nb = self.spec.stride, self._nb
        best = None
        if st.n > st.w_next * S:
            k0, k1 = st.w_next, (st.n - 1) // S
            ks = np.arange(k0, k1 + 1) % nb
            best = int(st.blocks(nb)[ks, 1].min())
        if st.late is not None and st.late.off is not None and len(st.late.off):
            m = int(st.late.off.min())
            best = m if best is None else min(best, m)
        return best

    def committable(self, partition: Any) -> int | None:
        """The offset to commit for ``partition``: nothing that open windows need lies before it.

        None when nothing was consumed from the partition yet.
        """
        nxt = self._next_off.get(partition)
        if nxt is None:
            return None
        best = nxt
        for st in self._parts.get(partition, {}).values():
            m = self._needed(st)
            if m is not None and m < best:
                best = m
        return best

    def snapshot(self, partition: Any) -> dict[str, list[int]]:
        """Where each series' next window starts: ``{series: [ts_floor_us, skip]}`` (see :meth:`assign`)."""
        S = self.spec.stride
        snap: dict[str, list[int]] = {}
        for sid, st in self._parts.get(partition, {}).items():
            if st.resume_ts >= 0:
                snap[sid] = [st.resume_ts, st.resume_skip]
            elif st.n > st.w_next * S:
                if type(st.buf) is bytes:
                    snap[sid] = [_PACK_HEAD.unpack_from(st.buf)[1], 0]
                else:
                    snap[sid] = [_BLOCK.unpack_from(st.buf, (st.w_next % self._nb) * 16)[0], 0]
            elif st.n or st.last_ts >= 0:
                snap[sid] = [st.last_ts + 1, st.w_next * S - st.n]
        # series not seen again since the resume keep their resume point
        for sid, r in self._resume.get(partition, {}).items():
            snap.setdefault(sid, list(r))
        return snap

    def evict_idle(self, ttl_s: float | None = None) -> int:
        """Drop series idle for longer than the TTL; returns how many were evicted."""
        ttl = self.spec.idle_ttl_s if ttl_s is None else ttl_s
        limit = self.clock.now() - ttl
        n = 0
        for series_map in self._parts.values():
            while series_map:
                sid, st = next(iter(series_map.items()))
                if st.seen > limit:
                    break
                del series_map[sid]
                n += 1
        self.evicted += n
        return n

    def pack_idle(self, idle_s: float | None = None) -> int:
        """Pack the state of series idle for longer than ``idle_s`` (default ``spec.pack_after_s``).

        Returns how many were packed now. Packing is transparent: windows, snapshots and the
        committable offset at the time of packing are unchanged; the smallest offsets of later
        blocks become their group's minimum, so a commit after more data may be a little earlier
        than without packing (a longer replay after a restart, never a lost window).
        """
        after = self.spec.pack_after_s if idle_s is None else idle_s
        if after is None:
            return 0
        limit = self.clock.now() - after
        n = 0
        for series_map in self._parts.values():
            for st in series_map.values():  # least recently seen first
                if st.seen > limit:
                    break
                if type(st.buf) is not bytes:
                    self._pack(st)
                    n += 1
        return n

    def _pack(self, st: _Series) -> None:
        nb, S = self._nb, self.spec.stride
        need = self._needed(st)
        blocks = st.blocks(nb).copy()
        used = np.zeros(nb, dtype=bool)
        snap_ts = -1
        if st.n > st.w_next * S:
            ks = np.arange(st.w_next, (st.n - 1) // S + 1) % nb  # from the next window's first block on
            snap_ts = int(blocks[ks[0], 0])
            offs = blocks[ks, 1]
            starts = np.arange(0, len(ks), _PACK_GROUP)
            blocks[ks, 1] = np.repeat(np.minimum.reduceat(offs, starts), np.diff(np.r_[starts, len(ks)]))
            used[ks] = True
        blocks[~used] = 0  # slots no window needs any more: rewritten before they are read again
        deltas = blocks.copy()
        deltas[1:] -= blocks[:-1]
        ring = memoryview(st.buf)[nb * 16:]
        st.buf = _PACK_HEAD.pack(-1 if need is None else need, snap_ts) + zlib.compress(deltas.tobytes() + ring, 1)

    def _unpack(self, st: _Series) -> None:
        nb = self._nb
        buf = bytearray(zlib.decompress(memoryview(st.buf)[_PACK_HEAD.size:]))
        blocks = np.frombuffer(buf, np.int64, 2 * nb).reshape(nb, 2)
        np.cumsum(blocks, axis=0, out=blocks)
        st.buf = buf

    def memory_bytes(self) -> int:
        """Approximate bytes held by the per-series state (numpy buffers + objects + dict entries)."""
        total = 0
        for series_map in self._parts.values():
            for sid, st in series_map.items():
                total += _series_bytes(sid, st)
        return total


def _series_bytes(sid: str, st: _Series) -> int:
    b = sys.getsizeof(st) + sys.getsizeof(sid) + sys.getsizeof(st.buf) + 60  # 60: dict entry
    p = st.late
    if p is not None:
        b += sys.getsizeof(p)
        if p.ts is not None:
            b += p.ts.nbytes + p.off.nbytes + p.vals.nbytes + 3 * 112
    return b
