"""Alert state per series: hysteresis (``open_after`` / ``close_after``), start and end events,
stale alerts, and the state carried in a partition's progress record to its next owner.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from monitor.score_records import ms as _ms

log = logging.getLogger("anomon.daemon")


@dataclass(slots=True)
class AlertState:
    """The hysteresis state of one series (``Daemon._alerts[series]``), while it has anomalous windows
    in a row or an open alert.

    >>> st = AlertState(start_us=5, max_score=9.5, partition=None)
    >>> st.anomalous_run, st.alert_id is None, st.to_progress([7, 0])
    (0, True, [7, 0, 0, 0, None, 5, 9.5])
    >>> AlertState.from_progress([7, 0, 2, 0, "s@5", 5, 9.5], "t:0")
    AlertState(anomalous_run=2, normal_run=0, alert_id='s@5', start_us=5, max_score=9.5, partition='t:0')
    """

    #: anomalous windows in a row (counts towards ``scoring.open_after``)
    anomalous_run: int = 0
    #: normal windows in a row (counts towards ``scoring.close_after`` while an alert is open)
    normal_run: int = 0
    #: the open alert's id (``<series>@<start µs>``), None while none is open
    alert_id: str | None = None
    #: end (µs) of the window that started the run / the alert
    start_us: int = 0
    #: the highest primary score since it started
    max_score: float = 0.0
    #: the input partition of the series' windows (its state goes with the partition)
    partition: Any = None

    def to_progress(self, entry: list) -> list:
        """A series' progress entry (``[ts, skip]``) with this state appended (the record's positions 2-6)."""
        return [*entry[:2], self.anomalous_run, self.normal_run, self.alert_id, self.start_us,
                round(float(self.max_score), 6)]

    @classmethod
    def from_progress(cls, entry: list, partition: Any) -> AlertState:
        return cls(int(entry[2]), int(entry[3]), entry[4], int(entry[5]), float(entry[6]), partition)


class AlertsMixin:
    """Alert hysteresis, events and hand-over. A part of :class:`monitor.daemon.Daemon`."""

    def _hysteresis(self, series: str, tp: Any, end_us: int, anomalous: bool, score: float) -> None:
        sc = self.cfg.scoring
        st = self._alerts.get(series)
        if st is None:
            if not anomalous:
                return
            st = self._alerts[series] = AlertState(start_us=end_us, max_score=score, partition=tp)
        self._alert_seen[series] = (self.clock.now(), end_us)
        if anomalous:
            st.anomalous_run += 1
            st.normal_run = 0
            st.max_score = max(st.max_score, score)
            if st.anomalous_run == 1 and st.alert_id is None:
                st.start_us = end_us
            if st.alert_id is None and st.anomalous_run >= sc.open_after:
                st.alert_id = f"{series}@{st.start_us}"
                self._emit_alert("start", series, st, end_us)
        else:
            st.normal_run += 1
            st.anomalous_run = 0
            if st.alert_id is None:
                del self._alerts[series]
                self._alert_seen.pop(series, None)
            elif st.normal_run >= sc.close_after:
                self._emit_alert("end", series, st, end_us)
                del self._alerts[series]
                self._alert_seen.pop(series, None)

    def _attach_alerts(self, tp: Any, snap: dict) -> None:
        """Add each series' alert state (hysteresis counters, open alert id, start, max score) to its
        progress entry, so that the partition's next owner continues open alerts: one burst keeps one
        alert id and gets its end event, across restarts and rebalances."""
        for sid, a in self._alerts.items():
            if a.partition == tp and sid in snap:
                snap[sid] = a.to_progress(snap[sid])

    def _restore_alerts(self, tp: Any, snap: dict) -> None:
        """The alert states that :meth:`_attach_alerts` wrote into a progress snapshot of ``tp``."""
        for sid, r in snap.items():
            if len(r) >= 7:
                self._alerts[sid] = AlertState.from_progress(r, tp)

    def _emit_alert(self, event: str, series: str, st: AlertState, end_us: int, reason: str | None = None) -> None:
        b = self.bundle
        rec = {"id": st.alert_id, "event": event, "series": series, "start_ts": _ms(st.start_us), "ts": _ms(end_us),
               "max_score": round(float(st.max_score), 6), "model": b.name, "version": b.version}
        if event == "end":  # "recovered": close_after normal windows; "stale": the series went quiet
            rec["reason"] = reason or "recovered"
        elif self._explainer is not None:  # the opening window's explanation (scoring.explain)
            rec.update(self._explainer.for_alert(series, end_us))
        self._alerts_out.append((series.encode(), json.dumps(rec, separators=(",", ":")).encode()))
        self.metrics.alert(b.name, event if reason != "stale" else "stale")
        self.stats["alerts"] += event == "start"

    def _send_alerts(self) -> None:
        """Queue the alert events of the batch being emitted, in order, as one record batch per output
        partition (keyed by series; a record per ``send`` was 3 % of the daemon's time at stride 1)."""
        out, self._alerts_out = self._alerts_out, []
        if out:  # (the scores' wake follows)
            self._send_keyed(self.cfg.output.alerts_topic, [k for k, _ in out], [v for _, v in out])
            self.metrics.record_produced(self.cfg.output.alerts_topic, len(out))

    def _end_stale_alerts(self) -> int:
        """End the open alerts of series with nothing scored for ``scoring.alert_stale_s`` (reason "stale")."""
        limit_s = self.cfg.scoring.alert_stale_s
        if limit_s <= 0 or not self._alerts:
            return 0
        now = self.clock.now()
        n = 0
        for series in list(self._alerts):
            st = self._alerts[series]
            seen = self._alert_seen.get(series)
            if seen is None:  # restored from a progress record: the clock starts now
                self._alert_seen[series] = (now, st.start_us)
                continue
            if now - seen[0] < limit_s:
                continue
            if st.alert_id is not None:
                self._emit_alert("end", series, st, seen[1], reason="stale")
                n += 1
            del self._alerts[series]
            del self._alert_seen[series]
        if n:
            log.info("%d open alert(s) ended as stale: no window scored for %g s", n, limit_s)
            self._send_alerts()
            self.sink.wake()
        return n
