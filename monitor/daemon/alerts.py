"""Alert state per series: hysteresis (``open_after`` / ``close_after``), start and end events,
stale alerts, and the state carried in a partition's progress record to its next owner.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from monitor.score_records import ms as _ms

log = logging.getLogger("anomon.daemon")


class AlertsMixin:
    """Alert hysteresis, events and hand-over. A part of :class:`monitor.daemon.Daemon`."""

    def _hysteresis(self, series: str, tp: Any, end_us: int, anomalous: bool, score: float) -> None:
        sc = self.cfg.scoring
        st = self._alerts.get(series)
        if st is None:
            if not anomalous:
                return
            st = self._alerts[series] = [0, 0, None, end_us, score, tp]
        self._alert_seen[series] = (self.clock.now(), end_us)
        if anomalous:
            st[0] += 1
            st[1] = 0
            st[4] = max(st[4], score)
            if st[0] == 1 and st[2] is None:
                st[3] = end_us
            if st[2] is None and st[0] >= sc.open_after:
                st[2] = f"{series}@{st[3]}"
                self._emit_alert("start", series, st, end_us)
        else:
            st[1] += 1
            st[0] = 0
            if st[2] is None:
                del self._alerts[series]
                self._alert_seen.pop(series, None)
            elif st[1] >= sc.close_after:
                self._emit_alert("end", series, st, end_us)
                del self._alerts[series]
                self._alert_seen.pop(series, None)

    def _attach_alerts(self, tp: Any, snap: dict) -> None:
        """Add each series' alert state (hysteresis counters, open alert id, start, max score) to its
        progress entry, so that the partition's next owner continues open alerts: one burst keeps one
        alert id and gets its end event, across restarts and rebalances."""
        for sid, a in self._alerts.items():
            if a[5] == tp and sid in snap:
                snap[sid] = [*snap[sid][:2], a[0], a[1], a[2], a[3], round(float(a[4]), 6)]

    def _restore_alerts(self, tp: Any, snap: dict) -> None:
        """The alert states that :meth:`_attach_alerts` wrote into a progress snapshot of ``tp``."""
        for sid, r in snap.items():
            if len(r) >= 7:
                self._alerts[sid] = [int(r[2]), int(r[3]), r[4], int(r[5]), float(r[6]), tp]

    def _emit_alert(self, event: str, series: str, st: list, end_us: int, reason: str | None = None) -> None:
        b = self.bundle
        rec = {"id": st[2], "event": event, "series": series, "start_ts": _ms(st[3]), "ts": _ms(end_us),
               "max_score": round(float(st[4]), 6), "model": b.name, "version": b.version}
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
                self._alert_seen[series] = (now, st[3])
                continue
            if now - seen[0] < limit_s:
                continue
            if st[2] is not None:
                self._emit_alert("end", series, st, seen[1], reason="stale")
                n += 1
            del self._alerts[series]
            del self._alert_seen[series]
        if n:
            log.info("%d open alert(s) ended as stale: no window scored for %g s", n, limit_s)
            self._send_alerts()
            self.sink.wake()
        return n
