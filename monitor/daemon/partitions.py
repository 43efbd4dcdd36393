"""Partition assignment: the rebalance hooks (assign, revoke, lose), dropping and parking a
partition's state, adopting parked series after a broker log reset, and setting up newly
assigned partitions from their progress records.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

log = logging.getLogger("anomon.daemon")


#: seconds a parked series state (see ``Daemon._park``) waits for its partition's log to come back
PARK_TTL_S = 300.0


class PartitionsMixin:
    """Partition assignment and the state that goes with it. A part of :class:`monitor.daemon.Daemon`."""

    def _on_assign(self, tps: set) -> None:
        self._to_drop -= set(tps)
        self._new |= set(tps)
        self._owned |= set(tps)
        if tps:
            self._ever_owned = True
        self.metrics.rebalance("assigned")
        log.info("partitions assigned", extra={"partitions": sorted(f"{t.topic}:{t.partition}" for t in tps),
                                               "model": self.bundle.name, "group": self.cfg.input.group_id})

    def _on_revoke(self, tps: set) -> None:
        self.metrics.rebalance("revoked")
        got = self._lock.acquire(timeout=10.0)
        try:
            if got and not self._broken:
                try:
                    self._checkpoint(only=set(tps) & self._owned, in_hook=True)
                except Exception as exc:  # noqa: BLE001 - the next owner replays from the last commit
                    log.warning("checkpoint on revocation failed (%s); the next owner replays from the last commit", exc)
                for tp in tps:
                    self._drop(tp)
            else:  # the main thread holds the lock: it drops the state at its next turn
                self._disown(tps)
                self._to_drop |= set(tps)
        finally:
            if got:
                self._lock.release()
        log.info("partitions revoked", extra={"partitions": sorted(f"{t.topic}:{t.partition}" for t in tps),
                                              "model": self.bundle.name, "group": self.cfg.input.group_id})

    def _on_lost(self, tps: set) -> None:
        self.metrics.rebalance("lost")
        with self._lock:
            for tp in tps:
                self._drop(tp)

    def _disown(self, tps: Any) -> None:
        had = bool(self._owned)
        self._owned.difference_update(tps)
        if had and not self._owned:
            self._unowned_since = time.monotonic()

    def _drop(self, tp: Any) -> None:
        while self._inflight:
            try:
                self._finish_one()  # its windows are emitted (at least once) before the state goes
            except Exception as exc:  # noqa: BLE001 - not committed: the next owner replays those windows
                log.error("scoring a batch in flight failed while dropping %s:%d (%s); its windows are replayed "
                          "from the last commit", tp.topic, tp.partition, exc)
        self._disown((tp,))
        self._new.discard(tp)
        self._park(tp)
        self._last_commit.pop(tp, None)
        gone = self._last_snap.pop(tp, None) or {}
        if self._likelihood is not None:  # the partition's next owner resumes them from its progress
            for sid in gone:
                self._likelihood.forget(sid)
                self._likelihood_seen.pop(sid, None)
        self._repart.drop(tp)
        for d in (self._dlq_mark, self._dlq_committed, self._last_thr, self._last_lik, self._adwins, self._adwin_in):
            d.pop(tp, None)
        self.thresholds.drop(tp)
        self._dirty.discard(tp)
        self._pending = [(b, t) for b, t in self._pending if b.partition != tp]
        self._pending_n = sum(len(b) for b, _ in self._pending)
        for s in [s for s, a in self._alerts.items() if a.partition == tp]:
            del self._alerts[s]
            self._alert_seen.pop(s, None)

    def _park(self, tp: Any) -> None:
        """Drop the windowing state of ``tp``, keeping the series that hold readings of open windows.

        Normally the next owner rebuilds them from the committed offset and these are discarded at
        the next assignment. But a broker that restarts with in-memory storage loses the log, the
        committed offsets and the progress: if ``tp`` comes back to this process with its log reset
        (see :meth:`_log_reset`), the parked series continue there, so windows straddling the
        restart come out complete, under the same ids."""
        self._adopt_tps.discard(tp)
        self._adopted.pop(tp, None)
        held, nxt = self.windower.detach(tp)
        if nxt is None:
            return
        now = time.monotonic()
        for sid, st in held.items():
            alert = self._alerts.get(sid)
            self._parked[sid] = {"st": st, "tp": tp, "pos": nxt, "at": now, "tid": self._topic_ids.get(tp.topic),
                                 "alert": replace(alert) if alert is not None and alert.partition == tp else None,
                                 "pending": self._pending_of(tp, sid)}

    def _pending_of(self, tp: Any, sid: str) -> list:
        """The pending windows of series ``sid`` from partition ``tp``, as ``(WindowBatch, record timestamps)``."""
        out = []
        for b, ts in self._pending:
            if b.partition == tp:
                idx = [j for j, s in enumerate(b.window_series()) if s == sid]
                if idx:
                    out.append((b.take(idx), [ts[j] for j in idx]))
        return out

    def _expire_parked(self) -> None:
        limit = time.monotonic() - PARK_TTL_S
        for sid in [sid for sid, e in self._parked.items() if e["at"] < limit]:
            del self._parked[sid]

    def _log_reset(self, new: list, committed: dict, prog: dict) -> set:
        """The partitions of ``new`` whose log was reset under this process (parked series continue there).

        A reset needs: no committed offset for any newly assigned partition, every assigned
        partition that parked series came from either shorter than the position this process had
        read there or in a topic with a new id (deleted and created again: librdkafka assigns it
        back only once it exists again, by then the new log may be as long as the old one), and no
        progress record for the others. Anything else discards the parked series: the replay from
        the committed offset rebuilds the windows."""
        from streams.kafka import partition_ends, topic_ids

        self._expire_parked()
        if not self._parked:
            return set()
        reset: set = set()
        if all(c is None for c in committed.values()):
            pos: dict[Any, int] = {}
            tid: dict[Any, str | None] = {}
            for e in self._parked.values():
                pos[e["tp"]] = max(pos.get(e["tp"], 0), e["pos"])
                tid[e["tp"]] = e.get("tid")
            check = [tp for tp in new if tp in pos]
            try:
                ends = partition_ends(self.settings, check) if check else {}
                ids = topic_ids(self.settings, {tp.topic for tp in check}) if check else {}
            except Exception as exc:  # noqa: BLE001 - cannot tell: the normal path
                log.warning("cannot read partition ends or topic ids (%s); parked window state discarded", exc)
                ends, ids = None, {}
            if ends is not None:
                for tp in new:
                    if tp in pos:
                        renewed = tid[tp] is not None and ids.get(tp.topic) not in (None, tid[tp])
                        if tp in ends and (ends[tp] < pos[tp] or renewed) and tp not in prog:
                            reset.add(tp)
                    elif tp not in prog:
                        reset.add(tp)
                if any(tp in pos and tp not in reset for tp in new):
                    reset = set()  # a log this process read from is still there: no reset
        if not reset:
            self._parked.clear()
            return set()
        log.warning("broker log reset detected (no committed offsets, partitions shorter than what was read): "
                    "%d series in progress continue in the new log", len(self._parked),
                    extra={"partitions": sorted(f"{t.topic}:{t.partition}" for t in reset)})
        return reset

    def _adopt(self, tp: Any, sid: str, offset: int) -> Any:
        """Windower hook: the parked state of ``sid`` when it first shows up on a reset partition."""
        if tp not in self._adopt_tps:
            return None
        e = self._parked.pop(sid, None)
        if e is None:
            return None
        self._adopted.setdefault(tp, {})[sid] = (e, offset)
        if e["alert"] is not None and sid not in self._alerts:
            self._alerts[sid] = replace(e["alert"], partition=tp)
        for b, t in e["pending"]:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((b.with_partition(tp), t))
            self._pending_n += len(b)
        log.info("series %s continues its windows from before the broker reset at %s:%d offset %d", sid,
                 tp.topic, tp.partition, offset)
        return self.windower.copy_series(e["st"])

    def _init_partitions(self) -> None:
        """Set up state for newly assigned partitions (main thread: blocking calls are fine here)."""
        new = [tp for tp in list(self._new) if tp in self._owned]
        self._new -= set(new)
        if not new:
            return
        meta: dict = {}
        try:
            prog = self._read_progress(new, meta)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read progress topic (%s): windows already emitted will be emitted again", exc)
            prog = {}
        committed = {}
        for tp in new:
            try:
                committed[tp] = self.source.committed(tp)
            except Exception:  # noqa: BLE001
                committed[tp] = None
        self._adopt_tps |= self._log_reset(new, committed, prog)
        try:  # the topics' ids now: a later reset (a topic created again) shows as a new id
            from streams.kafka import topic_ids

            self._topic_ids.update(topic_ids(self.settings, {tp.topic for tp in new}))
        except Exception as exc:  # noqa: BLE001 - then only a shorter log tells a reset
            log.debug("cannot read topic ids (%s)", exc)
        for tp in new:
            off, snap = prog.get(tp, (None, {}))
            floor = meta.get(tp, {}).get("dlq_upto", -1)
            self._dlq_mark[tp] = self._dlq_committed[tp] = floor
            thr = meta.get(tp, {}).get("thresholds")
            self.thresholds.drop(tp)
            resumed = self.thresholds.restore(tp, thr)
            self._last_thr[tp] = thr if resumed else None
            self._restore_adwin(tp, meta.get(tp, {}).get("adwin"))
            self._last_lik[tp] = meta.get(tp, {}).get("likelihood")
            self._restore_likelihood(tp, snap, self._last_lik[tp])
            self.windower.assign(tp, snap)
            self._restore_alerts(tp, snap)
            c = committed[tp]
            # Replay from the committed offset. kafka-python keeps the old position of a partition
            # that is revoked and assigned again to the same member, which would skip readings
            # the rebuilt windows need.
            try:
                if c is not None:
                    self.source.seek(tp, c, check=False)
                    self._last_commit[tp] = c
                else:
                    self.source.seek_to_beginning([tp])
            except Exception as exc:  # noqa: BLE001
                log.warning("cannot seek %s:%d to its committed offset: %s", tp.topic, tp.partition, exc)
            self._last_snap[tp] = snap
            self._reseeked.add(tp)
            log.info("partition %s:%d resumes at offset %s with %d series in progress%s", tp.topic, tp.partition,
                     c, len(snap), ", thresholds resumed" if resumed else "")
        self.metrics.set_assignment((tp.topic, tp.partition) for tp in self._owned)
