"""The progress record (topic ``<group>.progress``): its schema (:data:`PROGRESS_VERSION`; every
older version is still read), writing a partition's record set and reading the last complete one.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any


PROGRESS_CHUNK = 2000  # series per progress record


#: the progress record's schema: 1 = {topic, partition, offset, seq, part, parts, series}; 2 adds "v" and
#: "dlq_upto" (dead letters of offsets below it were sent); 3 adds, in part 0, "thresholds" (the
#: partition's SPOT/DSPOT state, models.thresholds.StreamThresholds.state) and "adwin" (the last
#: ADWIN_KEEP batch means its drift detector was fed). Versions 1 and 2 are still read (no dlq_upto: -1;
#: no thresholds: they start from the calibration).
PROGRESS_VERSION = 3


class ProgressMixin:
    """Writing and reading the progress records. A part of :class:`monitor.daemon.Daemon`."""

    def _progress_key(self, tp: Any) -> str:
        return f"{tp.topic}:{tp.partition}"

    def _read_progress(self, tps: list, meta: dict | None = None) -> dict[Any, tuple[int, dict]]:
        """The last complete progress snapshot of each partition: {tp: (offset, {series: [ts, skip]})};
        ``meta`` (when given) gets {tp: {"dlq_upto": offset}} of the same records (see :data:`PROGRESS_VERSION`)."""
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
                    slot = parts.setdefault((k, v["seq"]), {"series": {}, "n": 0})
                    slot["series"].update(v["series"])
                    slot["n"] += 1
                    if v.get("part", 0) == 0:  # version 3: the partition's thresholds and drift detector
                        slot["thresholds"], slot["adwin"] = v.get("thresholds"), v.get("adwin")
                    if slot["n"] == v["parts"]:
                        best[k] = (int(v["offset"]), slot["series"])
                        if meta is not None:  # version 1 records have no dlq_upto
                            meta[k] = {"dlq_upto": int(v.get("dlq_upto", -1)), "thresholds": slot.get("thresholds"),
                                       "adwin": slot.get("adwin")}
                        del parts[(k, v["seq"])]
        return best

    def _send_progress(self, tp: Any, offset: int, snap: dict, thr: dict | None = None) -> None:
        items = list(snap.items())
        parts = max(1, math.ceil(len(items) / PROGRESS_CHUNK))
        seq = time.time_ns()
        key = self._progress_key(tp)
        for i in range(parts):
            chunk = dict(items[i * PROGRESS_CHUNK:(i + 1) * PROGRESS_CHUNK])
            v = {"v": PROGRESS_VERSION, "topic": tp.topic, "partition": tp.partition, "offset": offset,
                 "seq": seq, "part": i, "parts": parts, "dlq_upto": self._dlq_mark.get(tp, -1), "series": chunk}
            if i == 0:  # the partition's adaptive state, once per record set
                if thr is not None:
                    v["thresholds"] = thr
                if tp in self._adwin_in:
                    v["adwin"] = list(self._adwin_in[tp])
            self.sink.send(self.cfg.progress_topic, json.dumps(v, separators=(",", ":")).encode(), key=key,
                           partition=tp.partition % self._progress_parts)
