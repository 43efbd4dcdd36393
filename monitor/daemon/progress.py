"""The progress record (topic ``<group>.progress``): its schema (:data:`PROGRESS_VERSION`; every
older version is still read), writing a partition's record set and reading the last complete one.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("anomon.daemon")


PROGRESS_CHUNK = 2000  # series per progress record, at most
PROGRESS_CHUNK_BYTES = 512 * 1024  # and about this many bytes of series entries per record


#: the progress record's schema: 1 = {topic, partition, offset, seq, part, parts, series}; 2 adds "v" and
#: "dlq_upto" (dead letters of offsets below it were sent); 3 adds, in part 0, "thresholds" (the
#: partition's SPOT/DSPOT state, models.thresholds.StreamThresholds.state) and "adwin" (the last
#: ADWIN_KEEP batch means its drift detector was fed); 4 writes each series' entry with named fields
#: (:func:`entry_to_record`: ``ts``, ``skip``, ``alert``, ``likelihood``) where 1-3 wrote a positional
#: list ``[ts, skip]`` or ``[ts, skip, anomalous_run, normal_run, alert_id, start_us, max_score]``.
#: Versions 1-3 are still read (no dlq_upto: -1; no thresholds: they start from the calibration; no
#: likelihood: it learns again).
PROGRESS_VERSION = 4

#: the alert fields of a version-4 entry, in the order of the positional form (positions 2-6)
_ALERT_FIELDS = ("anomalous_run", "normal_run", "id", "start_us", "max_score")


class ProgressRecordError(ValueError):
    """A progress record's series entry that this version cannot read."""


def entry_to_record(entry: list, likelihood: dict | None = None) -> dict:
    """A series' entry of a version-4 progress record, from the daemon's in-memory form.

    ``entry`` is ``[ts, skip]`` (where the series' next window starts: the windower's snapshot) or that
    with the alert state appended (:meth:`monitor.daemon.alerts.AlertState.to_progress`);
    ``likelihood`` the series' anomaly-likelihood checkpoint (``scoring.likelihood``), if any.

    >>> entry_to_record([7, 0])
    {'ts': 7, 'skip': 0}
    >>> entry_to_record([7, 0, 2, 0, "s@5", 5, 9.5])["alert"]
    {'anomalous_run': 2, 'normal_run': 0, 'id': 's@5', 'start_us': 5, 'max_score': 9.5}
    """
    rec: dict = {"ts": int(entry[0]), "skip": int(entry[1])}
    if len(entry) >= 7:
        rec["alert"] = dict(zip(_ALERT_FIELDS, entry[2:7]))
    if likelihood is not None:
        rec["likelihood"] = likelihood
    return rec


def entry_from_record(value: object, where: str = "") -> tuple[list, dict | None]:
    """The in-memory form of a series' entry of any version (a list for 1-3, named fields for 4), and its
    likelihood checkpoint (None when it has none).

    >>> entry_from_record({"ts": 7, "skip": 0, "alert": {"anomalous_run": 2, "normal_run": 0, "id": "s@5",
    ...                    "start_us": 5, "max_score": 9.5}})
    ([7, 0, 2, 0, 's@5', 5, 9.5], None)
    >>> entry_from_record([7, 0])
    ([7, 0], None)
    >>> entry_from_record({"skip": 0}, "p:0 series 'a'")
    Traceback (most recent call last):
    ...
    monitor.daemon.progress.ProgressRecordError: progress entry of p:0 series 'a': missing field 'ts'
    """
    if isinstance(value, list):  # versions 1-3
        return value, None
    if not isinstance(value, dict):
        raise ProgressRecordError(f"progress entry of {where}: expected an object, got {type(value).__name__}")
    try:
        entry = [int(value["ts"]), int(value["skip"])]
        a = value.get("alert")
        if a is not None:
            entry += [int(a["anomalous_run"]), int(a["normal_run"]), a["id"], int(a["start_us"]),
                      float(a["max_score"])]
    except KeyError as exc:
        raise ProgressRecordError(f"progress entry of {where}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ProgressRecordError(f"progress entry of {where}: {exc}") from None
    lik = value.get("likelihood")
    return entry, lik if isinstance(lik, dict) else None


class ProgressMixin:
    """Writing and reading the progress records. A part of :class:`monitor.daemon.Daemon`."""

    def _progress_key(self, tp: Any) -> str:
        return f"{tp.topic}:{tp.partition}"

    def _read_progress(self, tps: list, meta: dict | None = None) -> dict[Any, tuple[int, dict]]:
        """The last complete progress snapshot of each partition: {tp: (offset, {series: [ts, skip, ...]})}
        (the in-memory form, whatever the record's version); ``meta`` (when given) gets
        {tp: {"dlq_upto": offset, "thresholds": ..., "adwin": ..., "likelihood": {series: checkpoint}}}
        of the same records (see :data:`PROGRESS_VERSION`)."""
        from streams.kafka import KafkaConsumer, TopicPartition, partition_ends

        topic = self.cfg.progress_topic
        want = {self._progress_key(tp): tp for tp in tps}
        ptps = sorted({TopicPartition(topic, tp.partition % self._progress_parts) for tp in tps})
        ends = partition_ends(self.settings, ptps)
        out: dict[Any, tuple[int, dict]] = {}
        cons = KafkaConsumer(**self.settings.to_kafka_python(), enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=8 * 1024 * 1024)
        try:
            for ptp in ptps:
                end = ends.get(ptp, 0)
                begin = cons.beginning_offsets([ptp])[ptp]
                span = 512
                found: dict[str, tuple[int, dict]] = {}
                keys = {k for k, tp in want.items() if tp.partition % self._progress_parts == ptp.partition}
                while True:
                    start = max(begin, end - span)
                    found_meta: dict[str, dict] = {}
                    found = self._scan_progress(cons, ptp, start, end, keys, found_meta)
                    if set(found) >= keys or start <= begin:
                        break
                    span *= 8
                for k, v in found.items():
                    out[want[k]] = v
                    if meta is not None and k in found_meta:
                        meta[want[k]] = found_meta[k]
        finally:
            cons.close()
        return out

    @staticmethod
    def _scan_progress(cons: Any, ptp: Any, start: int, end: int, keys: set[str],
                       meta: dict | None = None) -> dict[str, tuple[int, dict]]:
        if end <= start:
            return {}
        cons.assign([ptp])
        cons.seek(ptp, start)
        parts: dict[tuple[str, int], dict] = {}
        best: dict[str, tuple[int, dict]] = {}
        pos = start
        deadline = time.monotonic() + 30
        while pos < end and time.monotonic() < deadline:
            for recs in cons.poll(timeout_ms=500).values():
                for r in recs:
                    pos = r.offset + 1
                    k = r.key.decode() if r.key else ""
                    if k not in keys:
                        continue
                    try:
                        v = json.loads(r.value)
                    except ValueError:
                        continue
                    slot = parts.setdefault((k, v["seq"]), {"series": {}, "n": 0, "likelihood": {}})
                    try:
                        for sid, e in v["series"].items():
                            entry, lik = entry_from_record(e, f"{k} series {sid!r}")
                            slot["series"][sid] = entry
                            if lik is not None:
                                slot["likelihood"][sid] = lik
                    except ProgressRecordError as exc:  # a record this version cannot read: an older set is used
                        log.warning("skipping progress record at %s:%d offset %d: %s", ptp.topic, ptp.partition,
                                    r.offset, exc)
                        del parts[(k, v["seq"])]
                        continue
                    slot["n"] += 1
                    if v.get("part", 0) == 0:  # version 3: the partition's thresholds and drift detector
                        slot["thresholds"], slot["adwin"] = v.get("thresholds"), v.get("adwin")
                    if slot["n"] == v["parts"]:
                        best[k] = (int(v["offset"]), slot["series"])
                        if meta is not None:  # version 1 records have no dlq_upto
                            meta[k] = {"dlq_upto": int(v.get("dlq_upto", -1)), "thresholds": slot.get("thresholds"),
                                       "adwin": slot.get("adwin"), "likelihood": slot["likelihood"]}
                        del parts[(k, v["seq"])]
        return best

    def _likelihood_checkpoints(self, snap: dict) -> dict | None:
        """The likelihood checkpoint of each series of ``snap`` that has one (``scoring.likelihood``)."""
        lp = self._likelihood
        if lp is None:
            return None
        out = {}
        for sid in snap:
            c = lp.checkpoint(sid)
            if c is not None:
                out[sid] = c
        return out

    def _restore_likelihood(self, tp: Any, snap: dict, states: dict | None) -> None:
        """Give the series of ``snap`` (a partition's progress) their likelihood checkpoints; a series
        without one (or with one this version cannot read) learns its score distribution again."""
        lp = self._likelihood
        if lp is None:
            return
        states = states or {}
        bad = 0
        now = time.monotonic()
        for sid in snap:
            d = states.get(sid)
            if d is None:
                lp.forget(sid)
                continue
            try:
                lp.resume(sid, d)
                self._likelihood_seen[sid] = now
            except ValueError as exc:
                lp.forget(sid)
                bad += 1
                if bad == 1:
                    log.warning("%s:%d series %r: %s; its likelihood learns again", tp.topic, tp.partition, sid, exc)
        if states:
            log.info("%s:%d: the anomaly likelihood of %d series resumed", tp.topic, tp.partition, len(states) - bad)

    def _send_progress(self, tp: Any, offset: int, snap: dict, thr: dict | None = None,
                       likelihood: dict | None = None) -> None:
        """Write ``tp``'s record set: the series entries ``snap`` (in-memory form) with their
        ``likelihood`` checkpoints ({series: checkpoint}), in parts of at most :data:`PROGRESS_CHUNK`
        series and about :data:`PROGRESS_CHUNK_BYTES`."""
        lik = likelihood or {}
        chunks: list[dict] = [{}]
        size = 0
        for sid, e in snap.items():
            rec = entry_to_record(e, lik.get(sid))
            n = len(sid) + 40 + (0 if sid not in lik else 16 * (6 + len(lik[sid].get("recent", ()))))
            if chunks[-1] and (len(chunks[-1]) >= PROGRESS_CHUNK or size + n > PROGRESS_CHUNK_BYTES):
                chunks.append({})
                size = 0
            chunks[-1][sid] = rec
            size += n
        parts = len(chunks)
        seq = time.time_ns()
        key = self._progress_key(tp)
        for i, chunk in enumerate(chunks):
            v = {"v": PROGRESS_VERSION, "topic": tp.topic, "partition": tp.partition, "offset": offset,
                 "seq": seq, "part": i, "parts": parts, "dlq_upto": self._dlq_mark.get(tp, -1), "series": chunk}
            if i == 0:  # the partition's adaptive state, once per record set
                if thr is not None:
                    v["thresholds"] = thr
                if tp in self._adwin_in:
                    v["adwin"] = list(self._adwin_in[tp])
            self.sink.send(self.cfg.progress_topic, json.dumps(v, separators=(",", ":")).encode(), key=key,
                           partition=tp.partition % self._progress_parts)
