"""Emission: score records (thresholds per partition, the anomaly likelihood per series), ADWIN
drift per partition, dead letters (and not sending them twice after a replay), keyed sends.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from typing import Any

import numpy as np

from monitor.score_records import ScoreRecordEncoder, ms_strings, number_strings, series_json

log = logging.getLogger("anomon.daemon")


#: batch means of a partition's ADWIN kept in its progress record and replayed on resume
ADWIN_KEEP = 256


#: the score records' column of the anomaly likelihood (``scoring.likelihood``)
LIKELIHOOD = "anomaly_likelihood"


#: bytes of an input record (key + value) copied to the dead-letter topic; larger ones are cut
DLQ_MAX_BYTES = 512 * 1024


class EmissionMixin:
    """Score records, drift, dead letters. A part of :class:`monitor.daemon.Daemon`."""

    def _replayed_dlq(self, tp: Any, offset: int) -> bool:
        """Whether the dead letter of the record at ``offset`` went out before the last checkpoint of
        this partition (a replay after a restart or a rebalance): then it is counted, not sent again."""
        if offset < self._dlq_mark.get(tp, -1):  # (records of a partition come in offset order: only a
            self.stats["dlq_replayed"] += 1  # seek back brings an offset below the mark again)
            return True
        self._dlq_mark[tp] = offset + 1
        return False

    def _dlq(self, rec: Any, reason: str, message: str, samples: int | None = None) -> None:
        if self._replayed_dlq((rec.topic, rec.partition), rec.offset):
            return
        headers = [("anomon.reason", reason), ("anomon.error", message[:500]),
                   ("anomon.source", f"{rec.topic}:{rec.partition}:{rec.offset}")]
        if samples is not None:
            headers.append(("anomon.samples", str(samples)))
        key, value = rec.key, rec.value
        size = len(key or b"") + len(value or b"")
        if size > DLQ_MAX_BYTES:  # forwarded whole, it would exceed the producer's max_request_size and
            # raise in send(): a poison pill that stops the daemon, again after every restart
            headers.append(("anomon.truncated", f"key + value were {size} bytes; first bytes kept"))
            key = key[:1024] if key else key
            value = value[:DLQ_MAX_BYTES - 1024] if value else value
        self.sink.send(self.cfg.output.dlq_topic, value, key=key, headers=headers)
        self.metrics.dead_letter(reason)
        self.stats["dlq"] += 1

    def _unreadable(self, u: dict) -> None:
        """A record batch the client skipped (failed CRC, missing codec, corrupt): one dead letter naming
        its topic, partition and offsets, counted; its partition's commit point moves past it."""
        from streams.kafka import TopicPartition

        tp = TopicPartition(u["topic"], u["partition"])
        if tp not in self._owned:
            return
        first, last, reason, error = int(u["first_offset"]), int(u["last_offset"]), str(u["reason"]), str(u["error"])
        where = f"{tp.topic}:{tp.partition}:{first}-{last}"
        self.windower.add_consumed(tp, last)  # the commit point moves past it
        self._dirty.add(tp)
        if self._replayed_dlq(tp, last):  # seen before a seek back (or a restart): counted and sent then
            return
        log.error("record batch %s could not be read (%s: %s); skipped, dead-lettered, the partition goes on",
                  where, reason, error)
        self.metrics.unreadable_batch(reason)
        self.stats["unreadable_batches"] += 1
        headers = [("anomon.reason", "unreadable_batch"), ("anomon.error", f"{reason}: {error}"[:500]),
                   ("anomon.source", f"{tp.topic}:{tp.partition}:{first}"), ("anomon.offsets", f"{first}-{last}")]
        value = json.dumps({"topic": tp.topic, "partition": tp.partition, "first_offset": first,
                            "last_offset": last, "reason": reason, "error": error[:500]})
        self.sink.send(self.cfg.output.dlq_topic, value.encode(), key=where.encode(), headers=headers)
        self.metrics.dead_letter("unreadable_batch")
        self.stats["dlq"] += 1

    def _emit(self, batches: list) -> None:
        """Write scored batches out (score records, alerts, metrics), in order: ``(take, bundle,
        thresholds, scores, dt)`` each, ``dt`` the model call's seconds. The batches of one call share
        the records' sending, the producer's wake-up and most metric updates (a cheap model's batches
        of one poll come together: those costs were a sixth of the daemon's time at stride 1); each
        keeps its own thresholds (``classify``, the thresholds its records carry), batch metrics and
        ADWIN update. They share one bundle: a reload drains the queue (and emits it) first."""
        bundle = batches[0][1]
        now_ms = time.time() * 1000.0
        comps = bundle.components
        primary = bundle.alert_components[0]
        out_topic = self.cfg.output.scores_topic
        m = self.metrics
        # per window: series, flag, end, primary score, input partition; record timestamps; records
        series_ids: list[str] = []
        flag_list: list[bool] = []
        end_list: list[int] = []
        primary_list: list[float] = []
        tps: list = []
        rec_ts: list = []
        values: list[bytes] = []
        score_cols: dict[str, list] = {c: [] for c in comps}
        enc, enc_thr = None, None
        n_anom = 0
        for take, _, thresholds, scores, dt in batches:
            self.stats["score_s"] += dt
            self._score_ewma_s += 0.2 * (dt - self._score_ewma_s)
            # each partition's windows are classified by its own thresholds, in order
            segs, lo = [], 0
            for b, _ in take:
                segs.append((lo, lo + len(b), b.partition))
                lo += len(b)
            if len(segs) == 1:
                flags, thr = thresholds.classify(scores, scores.n, segs[0][2])
                seg_thr = [(0, scores.n, {c: round(v, 6) for c, v in thr.items()})]
            else:
                flags = np.empty(scores.n, dtype=bool)
                seg_thr = []
                for a, z, tp in segs:
                    f, thr = thresholds.classify({c: scores[c][a:z] for c in thresholds.alert}, z - a, tp)
                    flags[a:z] = f
                    thr = {c: round(v, 6) for c, v in thr.items()}
                    if seg_thr and seg_thr[-1][2] == thr:
                        seg_thr[-1] = (seg_thr[-1][0], z, thr)
                    else:
                        seg_thr.append((a, z, thr))
            sids: list[str] = []
            in_part: list[str] = []
            for b, ts in take:
                sids.extend(b.window_series())
                in_part.extend([str(b.partition.partition)] * len(b))
                tps.extend([b.partition] * len(b))
                rec_ts.extend(ts)
            ends = np.concatenate([b.end_ts for b, _ in take]) if len(take) > 1 else take[0][0].end_ts
            starts = np.concatenate([b.start_ts for b, _ in take]) if len(take) > 1 else take[0][0].start_ts
            rec_comps, score_strs = comps, [number_strings(scores[c]) for c in comps]
            if self._likelihood is not None:  # scoring.likelihood decides: each series' own score distribution
                ll = self._likelihood_of(sids, scores[primary])
                flags = ll >= self.cfg.scoring.likelihood_threshold
                rec_comps, score_strs = [*comps, LIKELIHOOD], [*score_strs, number_strings(np.round(ll, 6))]
                seg_thr = [(a, z, {**thr, LIKELIHOOD: self.cfg.scoring.likelihood_threshold}) for a, z, thr in seg_thr]
            ends_i, flags_i = ends.tolist(), flags.tolist()
            # every number of the batch's records written as JSON, one C call per column
            cols = (series_json(sids), number_strings(ends_i), ms_strings(starts), ms_strings(ends),
                    score_strs, flags_i, in_part)
            for a, z, thr in seg_thr:  # records carry the thresholds they were classified by
                if thr != enc_thr:
                    enc, enc_thr = ScoreRecordEncoder(rec_comps, thr, bundle.name, bundle.version, now_ms), thr
                if len(seg_thr) == 1:
                    values.extend(enc.batch_records(*cols))
                else:
                    values.extend(enc.batch_records(*(c[a:z] for c in cols[:4]), [c[a:z] for c in cols[4]],
                                                    cols[5][a:z], cols[6][a:z]))
            if self._explainer is not None:  # scoring.explain: the anomalous windows' top channels and span
                self._explainer.annotate(take, flags, sids, ends_i, values)
            anom = int(flags.sum())
            n_anom += anom
            series_ids.extend(sids)
            flag_list.extend(flags_i)
            end_list.extend(ends_i)
            primary_list.extend(scores[primary].tolist())
            for c in comps:
                score_cols[c].append(scores[c])
            m.observe_batch(bundle.name, len(sids), dt, anom)
            if self._adwin_new is not None:
                col = scores[primary]
                for a, z, tp in segs:
                    self._watch_drift(bundle, primary, col[a:z], tp)
        if self._alerts or n_anom:  # hysteresis, in window order, for series with alert state or an anomalous window
            watch = set(self._alerts)
            watch.update(series_ids[j] for j in np.flatnonzero(flag_list).tolist())
            for j in np.flatnonzero(list(map(watch.__contains__, series_ids))).tolist():
                self._hysteresis(series_ids[j], tps[j], end_list[j], flag_list[j], primary_list[j])
            self._send_alerts()
        n = len(series_ids)
        self._send_keyed(out_topic, list(map(str.encode, series_ids)), values)
        self.sink.wake()  # once: the sender drains every partition's new records in one request
        ts_a = np.asarray(rec_ts, dtype=float)  # (None, no timestamp: NaN)
        lat = (now_ms - ts_a[ts_a > 0]) / 1000.0
        if lat.size:
            self.latencies.extend(lat.tolist())
        self.stats["windows"] += n
        self.last_scored_at = time.monotonic()
        self.stats["batches"] += len(batches)
        m.record_produced(out_topic, n)
        if lat.size:
            m.observe_latency(bundle.name, lat)
        for c in comps:
            col = score_cols[c]
            m.observe_scores(bundle.name, c, np.concatenate(col) if len(col) > 1 else col[0])
        for c, v in batches[-1][2].current().items():  # the highest of the partitions'
            m.set_threshold(bundle.name, c, v)
        m.observe_series(bundle.name, series_ids, np.asarray(primary_list, dtype=float), component=primary)

    def _likelihood_of(self, sids: list[str], scores: Any) -> np.ndarray:
        """The log anomaly likelihood of each window's primary score under its series' own history
        (``scoring.likelihood``), learning each score after it is judged."""
        lp, seen, now = self._likelihood, self._likelihood_seen, time.monotonic()
        out = np.empty(len(sids), dtype=np.float64)
        for i, (sid, v) in enumerate(zip(sids, np.asarray(scores, dtype=np.float64).tolist())):
            al = lp[sid]
            if math.isfinite(v):
                out[i] = al.log_score_one(v)
                al.learn_one(v)
            else:
                out[i] = 1.0
            seen[sid] = now
        return out

    def _adwin_of(self, tp: Any) -> Any:
        ad = self._adwins.get(tp)
        if ad is None:
            ad = self._adwins[tp] = self._adwin_new()
            self._adwin_in[tp] = deque(maxlen=ADWIN_KEEP)
        return ad

    def _restore_adwin(self, tp: Any, means: Any) -> None:
        """A partition's ADWIN from its progress record: the batch means it was last fed, replayed."""
        self._adwins.pop(tp, None)
        if self._adwin_new is None or not isinstance(means, list):
            return
        ad = self._adwin_of(tp)
        for v in means[-ADWIN_KEEP:]:
            if isinstance(v, (int, float)) and math.isfinite(v):
                ad.update(float(v))
                self._adwin_in[tp].append(float(v))

    def _watch_drift(self, bundle: Any, component: str, scores: Any, tp: Any) -> None:
        """Feed the mean score of a partition's windows of a batch to its ADWIN (``scoring.drift``);
        count and log a drift it detects."""
        v = float(np.mean(scores))
        if math.isfinite(v):
            ad = self._adwin_of(tp)
            ad.update(v)
            self._adwin_in[tp].append(round(v, 6))
            if ad.drift_detected:
                self.stats["drift"] += 1
                if self.retrainer is not None:
                    self.retrainer.note_drift()
                self.metrics.drift(bundle.name, component)
                log.warning("score drift detected (ADWIN)", extra={"model": bundle.name, "component": component,
                                                                    "mean_score": round(v, 4)})

    def _send_keyed(self, topic: str, keys: list, values: list) -> None:
        """Queue records ``(keys[i], values[i])``, in order, as one record batch per output partition (the
        partition the producer's partitioner gives each key; a partitioner of the user's places each
        record itself), without waking the producer's sender (:meth:`streams.kafka.Sink.wake`)."""
        parts = self.sink.key_partitions(topic, keys)
        if parts is None:
            self.sink.send_batch(topic, None, list(zip(keys, values)), wake=False)
            return
        if parts.count(parts[0]) == len(parts):
            self.sink.send_batch(topic, parts[0], list(zip(keys, values)), wake=False)
            return
        order = np.argsort(parts, kind="stable")  # grouped by partition, in order within each
        for run in np.split(order, np.flatnonzero(np.diff(np.asarray(parts)[order])) + 1):
            idx = run.tolist()
            self.sink.send_batch(topic, parts[idx[0]], list(zip(map(keys.__getitem__, idx),
                                                                 map(values.__getitem__, idx))), wake=False)
