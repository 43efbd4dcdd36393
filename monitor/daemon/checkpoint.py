"""The commit order: score what is pending -> flush the sinks -> write each partition's progress
record -> flush -> commit the offsets; and the rewind to the last commit when a flush fails.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("anomon.daemon")


class CheckpointMixin:
    """The commit order and the rewind. A part of :class:`monitor.daemon.Daemon`."""

    def _commit_async(self, offsets: dict) -> None:
        # (a failure is logged by the source; the next commit covers it)
        self.source.commit_async(offsets, on_error=lambda _exc: self.metrics.commit(ok=False))

    def _checkpoint(self, only: set | None = None, in_hook: bool = False, is_async: bool = False) -> bool:
        """Score pending, flush outputs, write progress, flush, commit. False when the flush failed.

        The periodic checkpoints commit asynchronously (the outputs are flushed before either way,
        so a lost asynchronous commit only means more replay); drain and revocation block."""
        from streams.kafka import DeliveryError

        self._score_pending()
        self._finish_inflight()
        tps = [tp for tp in (self._owned if only is None else only) if tp not in self._new]
        try:
            self.sink.flush(timeout_s=30)
        except (DeliveryError, Exception) as exc:  # noqa: BLE001
            self.metrics.commit(ok=False)
            log.error("flushing outputs failed: %s", exc)
            if not in_hook:
                self._rewind()
            return False
        offsets = {}
        dlq_marks: dict = {}
        thr_states: dict = {}
        lik_states: dict = {}
        for tp in tps:
            if tp not in self._dirty and tp in self._last_commit:
                continue
            c = self.windower.committable(tp)
            if c is None:
                continue
            held = self._repart.held_from(tp)  # keyless readings not yet re-sent: read again after a restart
            if held is not None and held < c:
                c = held
            snap = self.windower.snapshot(tp)
            self._attach_alerts(tp, snap)
            dlq_marks[tp] = self._dlq_mark.get(tp, -1)
            thr_states[tp] = self.thresholds.state(tp)
            lik_states[tp] = self._likelihood_checkpoints(snap)
            self._send_progress(tp, c, snap, thr_states[tp], lik_states[tp])
            offsets[tp] = (c, snap)
        if not offsets:
            return True
        try:
            self.sink.flush(timeout_s=30)
            commit = {tp: c for tp, (c, _) in offsets.items()}
            if in_hook or not is_async:
                self.source.commit(commit)  # blocking (asynchronous inside a rebalance hook)
            else:
                self._commit_async(commit)
        except Exception as exc:  # noqa: BLE001 - commit failed: keep the old commit point
            self.metrics.commit(ok=False)
            log.error("commit failed: %s", exc)
            return False
        for tp, (c, snap) in offsets.items():
            self._last_commit[tp] = c
            self._last_snap[tp] = snap
            self._dlq_committed[tp] = dlq_marks[tp]
            self._last_thr[tp] = thr_states[tp]
            self._last_lik[tp] = lik_states[tp]
            self._dirty.discard(tp)
            adopted = self._adopted.get(tp)
            if adopted:  # windows that needed parked readings are out and flushed: no rewind goes back to them
                for sid in [sid for sid, (_, o) in adopted.items() if o < c]:
                    del adopted[sid]
        self.stats["commits"] += 1
        self.metrics.commit(ok=True)
        return True

    def _rewind(self) -> None:
        """Outputs since the last commit may be lost: rebuild state from the last commit and seek back."""
        self.stats["rewinds"] += 1
        self._sink_stale = True
        self._pending.clear()
        self._pending_n = 0
        self._scored, self._scored_n = [], 0
        for tp in list(self._owned):
            self._repart.drop(tp)  # read again from the last commit
            self.windower.assign(tp, self._last_snap.get(tp, {}))
            self.thresholds.drop(tp)  # the windows after the commit are classified again: from its state
            self.thresholds.restore(tp, self._last_thr.get(tp))
            self._restore_likelihood(tp, self._last_snap.get(tp, {}), self._last_lik.get(tp))
            # dead letters since the last commit may be lost with the other outputs: sent again
            self._dlq_mark[tp] = self._dlq_committed.get(tp, -1)
            off = self._last_commit.get(tp)
            for sid, (e, o) in list(self._adopted.get(tp, {}).items()):  # replayed again: adopted again
                if off is None or off <= o:
                    e["at"] = time.monotonic()
                    self._parked[sid] = e
                    del self._adopted[tp][sid]
            try:
                if off is None:
                    self.source.seek_to_beginning([tp])
                else:
                    self.source.seek(tp, off, check=False)
            except Exception as exc:  # noqa: BLE001
                log.warning("seek of %s failed: %s", tp, exc)
        self._alerts.clear()
        for tp in list(self._owned):
            self._restore_alerts(tp, self._last_snap.get(tp, {}))
        log.warning("rewound to the last commit; windows since then are scored again (same ids)")
