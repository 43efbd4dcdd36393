"""Keyless readings, routed by series (the repartition step of Kafka Streams).

A producer that sends readings without a key spreads one series over every partition of the topic
(round-robin or sticky batches), while windows are built per partition and series: 0 of 7 windows
of such a series came out before this step. The daemon re-sends each keyless reading to the
repartition topic (``<group_id>.repartition``) keyed by its series, so one partition holds the whole
series, in order, and the windower sees it as if the producer had keyed it.

Order: the readings of one series come from several partitions that are consumed at different
paces (a backlog is fetched partition by partition). :class:`Repartitioner` holds each reading until
every partition that still lags (has records beyond what was read) has reached its timestamp -- the
partitions' watermarks --, and releases readings in timestamp order; a partition that is caught up
does not hold the others back, and nothing is held longer than ``max_hold_s`` or beyond
``max_held`` readings. The input offsets it holds are not committed (:meth:`held_from`).

>>> r = Repartitioner(max_hold_s=5.0)
>>> r.add("p0", 0, "s", 10, b"a", now=0.0); r.add("p0", 1, "s", 30, b"c", now=0.0)
>>> r.add("p1", 0, "s", 20, b"b", now=0.0)
>>> [v for _, _, v in r.release(lagging={"p0", "p1"}, now=0.0)]  # p1 reached 20, p0 30: up to 20
[b'a', b'b']
>>> r.held_from("p0"), r.held_from("p1")
(1, None)
>>> [v for _, _, v in r.release(lagging=set(), now=0.0)]  # every partition caught up
[b'c']
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any


class Repartitioner:
    """Hold keyless readings until the partitions' watermarks pass them; release them in timestamp order.

    Parameters
    ----------
    max_hold_s : float
        A reading held longer than this (processing time, s) is released whatever the watermarks.
    max_held : int
        At most this many readings are held; beyond, the oldest are released.
    """

    def __init__(self, max_hold_s: float = 5.0, max_held: int = 200_000) -> None:
        self.max_hold_s = max_hold_s
        self.max_held = max_held
        self._heap: list = []  # (ts, seq, tp, offset, series, value, added_at)
        self._seq = itertools.count()
        self._wm: dict[Any, int] = {}  # per input partition: the largest timestamp read from it
        self._held: dict[Any, dict[int, int]] = {}  # per input partition: {offset: count held}

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, tp: Any, offset: int, series: str, ts: int, value: Any, *, now: float) -> None:
        """Hold the keyless reading at ``offset`` of ``tp`` (series ``series``, timestamp ``ts``)."""
        heapq.heappush(self._heap, (ts, next(self._seq), tp, offset, series, value, now))
        if ts > self._wm.get(tp, -1 << 62):
            self._wm[tp] = ts
        held = self._held.setdefault(tp, {})
        held[offset] = held.get(offset, 0) + 1

    def release(self, lagging: set, *, now: float, everything: bool = False) -> list[tuple[str, int, Any]]:
        """The readings that may go on, ``(series, ts, value)`` in timestamp order.

        ``lagging``: the input partitions that have records not read yet; a reading is released once
        every lagging partition that carries keyless readings has read up to its timestamp."""
        bound = None
        for tp in lagging:
            wm = self._wm.get(tp)
            if wm is not None and (bound is None or wm < bound):
                bound = wm
        out = []
        heap = self._heap
        while heap:
            ts, _, tp, offset, series, value, added = heap[0]
            if not (everything or bound is None or ts <= bound or now - added >= self.max_hold_s
                    or len(heap) > self.max_held):
                break
            heapq.heappop(heap)
            held = self._held[tp]
            if held[offset] == 1:
                del held[offset]
            else:
                held[offset] -= 1
            out.append((series, ts, value))
        return out

    def held_from(self, tp: Any) -> int | None:
        """The smallest input offset of ``tp`` still held (not to be committed past), or None."""
        held = self._held.get(tp)
        return min(held) if held else None

    def drop(self, tp: Any) -> int:
        """Forget what was held of ``tp`` (revoked: its next owner reads it again); returns how many."""
        n = sum(self._held.pop(tp, {}).values())
        self._wm.pop(tp, None)
        if n:
            self._heap = [e for e in self._heap if e[2] != tp]
            heapq.heapify(self._heap)
        return n
