"""``anomon run``: consume readings, window them, score micro-batches, emit scores and alerts.

The loop (one thread; rebalance hooks run on kafka-python's IO thread and take the same lock)::

    poll -> decode (bad -> DLQ) -> window per (partition, series) (late/dup -> DLQ)
         -> micro-batch across series (max_batch / max_wait) -> ONE model call per batch
         -> thresholds (calibrated, or SPOT/DSPOT online) -> hysteresis alerts, ADWIN drift
         -> scores topic (one record per window, id = "<series>@<window end µs>"), alerts topic
    every commit_interval_s, on revocation and on SIGTERM:
         score what is pending -> flush scores/alerts/DLQ -> write progress -> flush -> commit

Delivery is at least once. The committed offset of a partition is the oldest reading that its
open windows still need (:meth:`streams.windowing.Windower.committable`), so a new owner (after a
crash, restart or rebalance) replays from there; the progress record written just before each
commit (topic ``<group>.progress``: where each series' next window starts) lets it rebuild the
very same windows, skip the ones already emitted, and emit complete windows only. Windows emitted
after the last commit are emitted again under the same id (recognisable duplicates).

A failed flush (broker gone) rewinds: state is rebuilt from the last commit, and the consumer
seeks back to it, so nothing that was not durably written is skipped.
"""
from __future__ import annotations

import functools
import gc
import json
import logging
import math
import os
import threading
import time
from collections import deque
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from monitor.config import Config
from monitor.explain import make_explainer
from monitor.modelstore import Bundle, ModelWatcher
from monitor.score_records import ScoreRecordEncoder, ms_strings, number_strings, series_json
from monitor.score_records import ms as _ms

log = logging.getLogger("anomon.daemon")
# fields of a batch of ConsumerRecords read by C-level map calls (no Python code per record)
_VALUE, _KEY, _OFFSET, _TIMESTAMP = (attrgetter(f) for f in ("value", "key", "offset", "timestamp"))
_TS_OF = itemgetter(1)  # of a plain reading (series, ts_us, row)

PROGRESS_CHUNK = 2000  # series per progress record
#: the progress record's schema: 1 = {topic, partition, offset, seq, part, parts, series}; 2 adds "v" and
#: "dlq_upto" (dead letters of offsets below it were sent). Version 1 records are still read (no dlq_upto).
PROGRESS_VERSION = 2
#: seconds a parked series state (see ``Daemon._park``) waits for its partition's log to come back
PARK_TTL_S = 300.0
#: bytes of an input record (key + value) copied to the dead-letter topic; larger ones are cut
DLQ_MAX_BYTES = 512 * 1024


class _NullMetrics:
    """Used when no metrics object is given: every method is a no-op."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class Thresholds:
    """Per-component thresholds: calibrated (fixed) or online SPOT/DSPOT for the alert components."""

    def __init__(self, bundle: Bundle, mode: str, q: float, depth: int):
        from models.spot import DSPOT, SPOT

        self.fixed = dict(bundle.thresholds)
        self.alert = [c for c in bundle.alert_components]
        self.online: dict[str, Any] = {}
        if mode in ("spot", "dspot"):
            for c in self.alert:
                cal = bundle.calibration.get(c)
                if cal is None or len(cal) < max(60, depth + 12):
                    log.warning("no calibration scores for %s: using its calibrated threshold", c)
                    continue
                try:
                    t = (SPOT(q=q, refit_every=10) if mode == "spot" else DSPOT(q=q, depth=depth, refit_every=10))
                    self.online[c] = t.fit(cal)
                except Exception as exc:  # noqa: BLE001
                    log.warning("cannot start %s for %s (%s): using its calibrated threshold", mode, c, exc)

    def current(self) -> dict[str, float]:
        out = dict(self.fixed)
        for c, t in self.online.items():
            out[c] = float(t.threshold)
        return out

    def classify(self, scores: Any) -> tuple[np.ndarray, dict[str, float]]:
        """Anomalous flags for a batch, and the thresholds in force before it."""
        before = self.current()
        flags = np.zeros(scores.n, dtype=bool)
        for c in self.alert:
            if c in self.online:
                flags |= self.online[c].update(scores[c])
            elif c in self.fixed:
                flags |= scores[c] > self.fixed[c]
        return flags, before


#: model calls shorter than this (moving average) run inline: handing a batch to the scoring thread and
#: back costs up to a GIL switch interval (5 ms) while other Python threads (the Kafka client's) run
INLINE_SCORE_S = 0.002
#: batches scored inline are emitted together, up to this many windows at once
EMIT_WINDOWS = 4096


def _timed_score(bundle: Any, X: np.ndarray) -> tuple[Any, float]:
    """One model call (on the scoring thread): the scores and the seconds it took."""
    t0 = time.perf_counter()
    scores = bundle.score_windows(X)
    return scores, time.perf_counter() - t0


def _child_score(child: Any, bundle: Any, X: np.ndarray) -> tuple[Any, float]:
    """One model call in the scoring child; in this process instead if the child has died (the scores
    are the same: the same bundle, deterministic scoring)."""
    from monitor.score_process import ScoringProcessError

    try:
        return child.score(bundle, X)
    except ScoringProcessError:
        if child.error is None:  # the model itself failed on this batch: as on the thread
            raise
        return _timed_score(bundle, X)


#: the garbage collector's young-generation threshold while a daemon runs (Python's default: 700)
GC_YOUNG_THRESHOLD = 10_000


def _freeze_heap(refreeze: bool = False) -> None:
    """Move every object alive now (modules, the model, clients) out of the garbage collector's view,
    and let the young generation grow to ``GC_YOUNG_THRESHOLD`` objects between collections.

    Measured on a 100-series replay: without the freeze, each full (generation 2) collection walks
    the ~140,000 objects of torch, numpy and the clients, 80 ms of CPU (up to 200 ms on a busy host)
    about once a second, and every window waiting behind it is late; with it, 2 ms. The threshold:
    a poll's records, decoded readings and windows (thousands of tuples and dicts, freed by their
    reference counts, not by the collector) were walked again at every 700 new objects, 6 % of the
    daemon's time at one reading per message (py-spy --native); at 10,000: 502 young collections
    instead of 2,292 on a 400k-record backlog of 100 series at stride 1, and 135.5k -> 139.9k
    records/s (A/B against the commit before, median of 6 pairs). A larger threshold set by the
    embedding program is kept.

    Called once the daemon is set up and again after a model reload (``refreeze`` first lets the
    collector reclaim the old model).
    """
    young, *older = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
    if refreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def create_daemon_topics(cfg: Config, settings: Any) -> None:
    """Create the topics the daemon reads and writes (idempotent): the inputs, scores, alerts and
    dead letters with ``kafka.partitions`` each, and the compacted progress topic."""
    from streams.kafka import create_topics

    n = cfg.kafka.partitions
    create_topics(settings, {t: n for t in cfg.input.topics})
    create_topics(settings, {cfg.output.scores_topic: n, cfg.output.alerts_topic: n, cfg.output.dlq_topic: n})
    create_topics(settings, {cfg.progress_topic: n}, compacted=True)
    if cfg.repartition_topic:
        create_topics(settings, {cfg.repartition_topic: n})


class Daemon:
    """The streaming scorer. ``run()`` blocks until :meth:`stop`; thread-safe ``stop``/``reload``."""

    def __init__(self, cfg: Config, *, bootstrap: str | None = None, model: ModelWatcher | Bundle | None = None,
                 metrics: Any = None, clock: Any = None, name: str | None = None, lane: Any = None):
        from streams.windowing import SystemClock, Windower, WindowSpec

        self.cfg = cfg
        self.settings = cfg.kafka_settings(bootstrap)
        self.name = name or f"anomon-{threading.get_ident() % 100000}"
        if model is None:
            model = ModelWatcher(cfg.model.dir, cfg.model.watch_interval_s)
        self.watcher: ModelWatcher | None = model if isinstance(model, ModelWatcher) else None
        self.bundle: Bundle = model.bundle if isinstance(model, ModelWatcher) else model
        if cfg.window.length and cfg.window.length != self.bundle.length:
            from monitor.errors import ConfigError

            raise ConfigError(f"window.length: {cfg.window.length} differs from the model's window length "
                              f"{self.bundle.length} (from {cfg.sources.get('window.length', 'defaults')})")
        self.metrics = metrics if metrics is not None else _NullMetrics()
        self.clock = clock or SystemClock()
        self.fmt = cfg.input.record_format()
        self.spec = WindowSpec(length=self.bundle.length, stride=cfg.window.stride or self.bundle.stride,
                               channels=self.bundle.channels, lateness_ms=cfg.window.lateness_ms,
                               gap_ms=cfg.window.gap_ms, idle_ttl_s=cfg.window.idle_ttl_s,
                               pack_after_s=cfg.window.pack_after_s,
                               max_series_per_partition=cfg.window.max_series_per_partition)
        self.windower = Windower(self.spec, clock=self.clock)
        self.windower.adopt = self._adopt
        # Series states dropped with their partition, kept in case the broker lost its log (an
        # in-memory broker restarted): {series: {"st", "tp", "pos", "at", "alert", "pending"}}.
        self._parked: dict[str, dict] = {}
        self._adopt_tps: set = set()  # partitions whose log was reset: parked series continue there
        self._adopted: dict[Any, dict[str, tuple[dict, int]]] = {}  # tp -> {series: (parked entry, offset)}
        self._topic_ids: dict[str, str] = {}  # topic -> its id when its partitions were last assigned
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._owned: set = set()
        self._alert_seen: dict[str, tuple[float, int]] = {}  # series -> (clock time, end_us) of its last window
        from monitor.repartition import Repartitioner

        self._repart_topic = cfg.repartition_topic
        self._repart = Repartitioner(max_hold_s=cfg.input.repartition_hold_s)
        #: a monitor.routing.LaneFilter when this daemon is one model's lane of many (``[[models]]``)
        self.lane = lane
        self._unowned_since = time.monotonic()  # since when no partition is owned (while none is)
        self._ever_owned = False
        self._to_drop = set()
        self._reseeked: set = set()
        self._new: set = set()
        self._last_commit: dict[Any, int] = {}
        self._last_snap: dict[Any, dict] = {}
        self._dirty: set = set()
        self._pending: list[tuple[Any, list]] = []  # (window batch, record timestamp ms per window)
        self._pending_n = 0
        self._pending_since = 0.0
        # model call in flight on the scoring thread: (future, take, bundle, thresholds); one at a time
        self._child: Any = None  # monitor.score_process.ScoringProcess of a slow model
        self._inflight: deque = deque()  # (future, windows, bundle, thresholds): at most 2, in order
        self._scored: list = []  # batches scored inline, emitted together (_emit_scored)
        self._scored_n = 0  # their windows
        self._scorer: Any = None  # ThreadPoolExecutor(1), started with the first batch that uses it
        self._score_ewma_s = 0.0  # moving average of the model call's seconds (picks inline or threaded)
        self._alerts: dict[str, list] = {}  # series -> [anom_run, normal_run, alert_id|None, start_us, max, partition]
        self._alerts_out: list[tuple[bytes, bytes]] = []  # alert events of the batch being emitted (key, value)
        self._progress_parts = 1
        self.connected = False
        self.loop_heartbeat = time.monotonic()
        self.started = False
        self.draining = False
        # dead letters were sent below these offsets (the previous owner's, from the progress record, then
        # this daemon's): a replay after a restart does not send them again. _dlq_committed: at the commit.
        self._dlq_mark: dict[Any, int] = {}
        self._dlq_committed: dict[Any, int] = {}
        self.stats = {"records": 0, "windows": 0, "dlq": 0, "dlq_replayed": 0, "unreadable_batches": 0,
                      "repartitioned": 0, "alerts": 0, "batches": 0, "commits": 0, "rewinds": 0, "drift": 0, "suppressed": 0, "score_s": 0.0,
                      "threaded_batches": 0, "child_batches": 0}
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.first_record_at: float | None = None  # monotonic time of the first consumed record (benchmarks)
        self.last_scored_at: float | None = None
        self._setup_model(self.bundle, reload=False)

    # ------------------------------------------------------------------ model
    def _setup_model(self, bundle: Bundle, reload: bool) -> None:
        from river.drift import ADWIN

        sc = self.cfg.scoring
        if sc.alert_components:
            unknown = [c for c in sc.alert_components if c not in bundle.components]
            if unknown:
                from monitor.errors import ConfigError

                raise ConfigError(f"scoring.alert_components: {unknown} not among the model's components "
                                  f"{bundle.components}")
            bundle.alert_components = list(sc.alert_components)
        self.bundle = bundle
        self.thresholds = Thresholds(bundle, sc.threshold, sc.q, sc.dspot_depth)
        self.adwin = ADWIN(delta=sc.drift_delta) if sc.drift else None
        self._explainer = make_explainer(bundle, sc, reload)  # scoring.explain (None when off)
        if sc.child_process:  # a slow model: start its scoring process now, not at the first full batch
            X = np.zeros((8, bundle.length, bundle.channels), dtype=np.float32)
            try:
                _, dt = _timed_score(bundle, X)
            except Exception:  # noqa: BLE001 - the first real batch will tell
                dt = 0.0
            if dt / len(X) * sc.max_batch >= INLINE_SCORE_S:
                self._child_for(bundle)
        self.metrics.model_load(bundle.name, bundle.version, detector=bundle.detector.name, reload=reload,
                                components=bundle.components)
        for c, v in self.thresholds.current().items():
            self.metrics.set_threshold(bundle.name, c, v)

    def request_reload(self) -> None:
        """Reload the model at the next loop turn (SIGHUP)."""
        self._reload.set()

    def _maybe_reload(self) -> None:
        if self.watcher is None:
            return
        if self._reload.is_set():
            self._reload.clear()
            self.watcher.request_reload()
        before = self.watcher.failures
        new = self.watcher.poll()
        if new is not None:
            with self._lock:
                self._score_pending()
                self._finish_inflight()
                self._setup_model(new, reload=True)
            _freeze_heap(refreeze=True)
        elif self.watcher.failures != before:
            self.metrics.model_load_failed(self.bundle.name, still_serving=True)

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Drain and stop (SIGTERM): pending windows are scored, flushed and committed."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.loop_heartbeat < 60.0

    def readiness(self) -> tuple[bool, str]:
        """Ready means owning work: started, connected, writing, and owning partitions (a rebalance
        may take them for up to ``input.ready_timeout_s``)."""
        if not self.started:
            return False, "starting"
        if self.draining:
            return False, "draining"
        if not self.connected:
            return False, "not connected to Kafka"
        if self._sink_stale:
            return False, "writing outputs failed; reconnecting the producer"
        if not self._owned:
            g = self.cfg.input.group_id
            if not self._ever_owned:
                return False, f"no partitions assigned yet (joining group {g})"
            idle = time.monotonic() - self._unowned_since
            if idle >= self.cfg.input.ready_timeout_s:
                return False, (f"no partitions assigned for {idle:.0f}s (group {g} cannot be joined, or has no "
                               "partition for this member)")
        return True, ""

    def _open(self) -> None:
        from streams.kafka import Sink, Source

        cfg = self.cfg
        if cfg.kafka.create_topics:
            create_daemon_topics(cfg, self.settings)
        from streams.kafka import topic_partitions

        self._progress_parts = max(1, len(topic_partitions(self.settings, cfg.progress_topic)))
        self.sink = self._make_sink()
        topics = list(cfg.input.topics) + ([cfg.repartition_topic] if cfg.repartition_topic else [])
        extra = {}
        if cfg.kafka.client == "confluent":
            from streams.kafka_confluent import ConfluentSource as Source  # noqa: F811

            worker = os.environ.get("ANOMON_WORKER_INDEX")  # static membership for --workers
            if worker is not None:
                extra["instance_id"] = f"{cfg.input.group_id}-worker-{worker}"
        self.source = Source(self.settings, topics, cfg.input.group_id,
                             on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost,
                             commit_on_revoke=False, max_poll_records=cfg.input.max_poll_records,
                             session_timeout_ms=cfg.input.session_timeout_ms,
                             heartbeat_interval_ms=cfg.input.heartbeat_interval_ms,
                             fetch_max_wait_ms=cfg.input.fetch_max_wait_ms,
                             consumer_options={"client_id": self.name}, **extra)
        self.source.open()

    def _make_sink(self) -> Any:
        if self.cfg.kafka.client == "confluent":
            from streams.kafka_confluent import ConfluentSink as Sink
        else:
            from streams.kafka import Sink

        return Sink(self.settings, linger_ms=self.cfg.output.linger_ms, batch_size=self.cfg.output.batch_bytes,
                    producer_options={"retries": 2**31 - 1, "max_in_flight_requests_per_connection": 5})

    def _renew_sink(self) -> None:
        """Replace the producer after a failed flush (called once the broker answers again).

        An idempotent producer whose broker lost its state (a restarted in-memory broker) keeps
        failing with UnknownProducerId / InitProducerId errors; a new producer starts clean.
        """
        try:
            new = self._make_sink()
        except Exception as exc:  # noqa: BLE001 - try again at the next loop turn
            log.warning("cannot create a new producer yet (%s)", exc)
            return
        old, self.sink, self._sink_stale = self.sink, new, False
        try:
            old.close(timeout_s=0)
        except Exception:  # noqa: BLE001
            pass
        log.info("producer recreated after a failed flush")

    # ------------------------------------------------------------------ rebalance hooks (IO thread)
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

    _broken = False
    _sink_stale = False
    _to_drop: set = set()

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
        self._last_snap.pop(tp, None)
        self._repart.drop(tp)
        for d in (self._dlq_mark, self._dlq_committed):
            d.pop(tp, None)
        self._dirty.discard(tp)
        self._pending = [(b, t) for b, t in self._pending if b.partition != tp]
        self._pending_n = sum(len(b) for b, _ in self._pending)
        for s in [s for s, a in self._alerts.items() if a[5] == tp]:
            del self._alerts[s]
            self._alert_seen.pop(s, None)

    # ------------------------------------------------------------------ broker log reset (issue 7)
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
                                 "alert": list(alert) if alert is not None and alert[5] == tp else None,
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
            a = list(e["alert"])
            a[5] = tp
            self._alerts[sid] = a
        for b, t in e["pending"]:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((b.with_partition(tp), t))
            self._pending_n += len(b)
        log.info("series %s continues its windows from before the broker reset at %s:%d offset %d", sid,
                 tp.topic, tp.partition, offset)
        return self.windower.copy_series(e["st"])

    # ------------------------------------------------------------------ progress
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
                    if slot["n"] == v["parts"]:
                        best[k] = (int(v["offset"]), slot["series"])
                        if meta is not None:  # version 1 records have no dlq_upto
                            meta[k] = {"dlq_upto": int(v.get("dlq_upto", -1))}
                        del parts[(k, v["seq"])]
        return best

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
            log.info("partition %s:%d resumes at offset %s with %d series in progress", tp.topic, tp.partition,
                     c, len(snap))
        self.metrics.set_assignment((tp.topic, tp.partition) for tp in self._owned)

    # ------------------------------------------------------------------ processing
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

    def _process(self, recs: list) -> None:
        from itertools import groupby
        from operator import attrgetter

        from streams.kafka import TopicPartition

        counts: dict[str, int] = {}
        # records come in partition order: the per-partition bookkeeping is done once per run of them
        for (topic, partition), run in groupby(recs, key=attrgetter("topic", "partition")):
            tp = TopicPartition(topic, partition)
            if tp not in self._owned:
                continue
            run = list(run)
            counts[topic] = counts.get(topic, 0) + len(run)
            self._dirty.add(tp)
            self._process_partition(tp, run)
        self.stats["records"] += len(recs)
        for t, n in counts.items():
            self.metrics.record_consumed(t, n)

    def _process_partition(self, tp: Any, recs: list) -> None:
        """Decode, window and queue the records of one owned partition (in offset order).

        Plain single readings (the common case) take the batch fast path: one C JSON scan per value
        (:func:`~streams.records.decode_plain_readings`) and :meth:`~streams.windowing.Windower.add_values`;
        any other record (chunks, bad input) goes through :func:`~streams.records.decode_record`, in order."""
        from streams.records import decode_plain_readings

        if self.lane is not None and tp.topic != self._repart_topic:
            recs = self._route(tp, recs)
            if not recs:
                return
        fmt, width = self.fmt, self.spec.channels
        now = time.monotonic()
        ahead_s = self.cfg.input.max_future_s
        horizon_us = (time.time() + ahead_s) * 1e6 if ahead_s > 0 else math.inf
        plain = decode_plain_readings(list(map(_VALUE, recs)), list(map(_KEY, recs)), fmt, width)
        if self._repart_topic is not None and tp.topic != self._repart_topic and not all(map(_KEY, recs)):
            recs, plain = self._hold_keyless(tp, recs, plain, now)
            if not recs:
                return
        if recs and None not in plain and max(map(_TS_OF, plain)) <= horizon_us:  # all plain: the common case
            self._window_plain(tp, list(zip(map(_OFFSET, recs), *zip(*plain))), recs, now)
            return
        items: list = []
        item_recs: list = []
        for rec, p in zip(recs, plain):
            if p is not None and p[1] <= horizon_us:
                items.append((rec.offset, p[0], p[1], p[2]))
                item_recs.append(rec)
                continue
            if items:  # keep offset order: the plain readings before this record go first
                self._window_plain(tp, items, item_recs, now)
                items, item_recs = [], []
            self._process_record(tp, rec, horizon_us, now)
        if items:
            self._window_plain(tp, items, item_recs, now)

    def _route(self, tp: Any, recs: list) -> list:
        """The records of this lane's model (``[[models]]``); the others are passed (the commit point may
        move past them) and those no model matches are dead-lettered here (reason ``no_model``) when this
        lane owns the topic's unmatched readings."""
        keep, passed, unmatched = self.lane.split(tp.topic, recs, self.fmt.series_field)
        if passed >= 0:
            self.windower.add_consumed(tp, passed)
        for rec, sid in unmatched:
            self._dlq(rec, "no_model", f"series {sid!r} of topic {tp.topic!r} matches no [[models]] entry "
                      "and no entry is the default")
        return keep

    def _hold_keyless(self, tp: Any, recs: list, plain: list, now: float) -> tuple[list, list]:
        """Take the keyless readings of ``recs`` out (held for the repartition topic, see
        :mod:`monitor.repartition`); returns the other records and their decoded readings. A keyless
        record that does not decode stays (the usual path dead-letters it)."""
        from streams.records import decode_record

        keep, keep_plain = [], []
        fmt, width = self.fmt, self.spec.channels
        for rec, p in zip(recs, plain):
            if rec.key:
                keep.append(rec)
                keep_plain.append(p)
                continue
            if p is not None:
                series, ts = p[0], p[1]
            else:
                try:
                    r = decode_record(rec.value, rec.key, fmt, width)
                    series, ts = r.series, int(r.ts[0])
                except Exception:  # noqa: BLE001 - a RecordError or worse: dead-lettered by the usual path
                    keep.append(rec)
                    keep_plain.append(p)
                    continue
            self._repart.add(tp, rec.offset, series, ts, rec, now=now)
            self.windower.add_consumed(tp, rec.offset)
        return keep, keep_plain

    def _release_keyless(self, everything: bool = False) -> None:
        """Send the held keyless readings whose turn has come to the repartition topic, keyed by series."""
        rp = self._repart
        if not len(rp):
            return
        lagging = set()
        for tp in self._owned:
            if tp.topic == self._repart_topic:
                continue
            try:
                hw = self.source.highwater(tp)
                if hw is None or self.source.position(tp) < hw:
                    lagging.add(tp)
            except Exception:  # noqa: BLE001 - unknown: treat as lagging (max_hold_s bounds the wait)
                lagging.add(tp)
        out = rp.release(lagging, now=time.monotonic(), everything=everything)
        topic = self._repart_topic
        for series, _, rec in out:
            headers = list(rec.headers or []) + [("anomon.origin", f"{rec.topic}:{rec.partition}:{rec.offset}")]
            self.sink.send(topic, rec.value, key=series, headers=headers)
        if out:
            self.stats["repartitioned"] += len(out)

    def _window_plain(self, tp: Any, items: list, item_recs: list, now: float) -> None:
        wins, rejs = self.windower.add_values(tp, items)
        for i, rj in rejs:
            self._dlq(item_recs[i], rj.reason, rj.message, samples=rj.count)
        if wins:
            rec_ts = list(map(_TIMESTAMP, item_recs)).__getitem__
            self._queue([(b, list(map(rec_ts, idx))) for idx, b in wins], now)

    def _process_record(self, tp: Any, rec: Any, horizon_us: float, now: float) -> None:
        """Decode, window and queue one record (any form), dead-lettering what is wrong with it."""
        from streams.records import RecordError, decode_record

        fmt, windower = self.fmt, self.windower
        try:
            r = decode_record(rec.value, rec.key, fmt, self.spec.channels)
        except RecordError as exc:
            windower.add_consumed(tp, rec.offset)
            self._dlq(rec, exc.reason, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not make one record a poison pill
            log.error("unexpected %s decoding %s:%d:%d; sent to the DLQ", type(exc).__name__, rec.topic,
                      rec.partition, rec.offset)
            windower.add_consumed(tp, rec.offset)
            self._dlq(rec, "undecodable", f"decoder error {type(exc).__name__}: {exc}")
            return
        if r.ts[-1] > horizon_us:  # accepted, it would make every later reading of its series "late"
            windower.add_consumed(tp, rec.offset)
            self._dlq(rec, "bad_field", f"field {fmt.ts_field!r}: more than input.max_future_s="
                      f"{self.cfg.input.max_future_s:g} s ahead of this host's clock")
            return
        batches, rejected = windower.add(tp, rec.offset, r)
        if rejected:
            rj = rejected[0]
            self._dlq(rec, rj.reason, rj.message, samples=sum(x.count for x in rejected))
        if batches:
            self._queue([(b, [rec.timestamp] * len(b)) for b in batches], now)

    def _queue(self, batches: list, now: float) -> None:
        """Queue windows for scoring, ``(window batch, record timestamp ms per window)`` each; score
        every full batch (``scoring.max_batch`` windows) at once, the rest waits (``max_wait_ms``)."""
        if not self._pending:
            self._pending_since = now
        self._pending.extend(batches)
        self._pending_n += sum(len(b) for b, _ in batches)
        if self._pending_n >= self.cfg.scoring.max_batch:
            self._score_pending(full_only=True)
            if self._pending:  # what is left came with this call (less than a batch was pending before)
                self._pending_since = now

    def _score_pending(self, full_only: bool = False) -> None:
        """Score what is pending, in batches of ``scoring.max_batch`` windows (one model call each; a
        window batch that straddles two model calls is split): everything, or with ``full_only``
        only full batches."""
        mb = self.cfg.scoring.max_batch
        while self._pending and (not full_only or self._pending_n >= mb):
            pending, i, m = self._pending, 0, len(self._pending)
            take, n = [], 0
            while i < m and n < mb:
                b, ts = pending[i]
                k = len(b)
                if n + k > mb:  # the front part fills the batch, the rest stays first in the queue
                    cut = mb - n
                    take.append((b.take(slice(0, cut)), ts[:cut]))
                    pending[i] = (b.take(slice(cut, k)), ts[cut:])
                    n = mb
                    break
                take.append(pending[i])
                n += k
                i += 1
            # one slice per model call (popping the front one window at a time is quadratic at stride 1)
            self._pending = pending[i:]
            self._pending_n -= n
            self._score(take)
        self._emit_scored()
        if not self._pending:
            self._pending_n = 0

    def _emit_scored(self) -> None:
        """Emit the batches scored inline and not emitted yet (:meth:`_score`), together."""
        if self._scored:
            batches, self._scored, self._scored_n = self._scored, [], 0
            self._emit(batches)

    def _score(self, take: list) -> None:
        """Queue a batch for the model on the scoring thread, then emit the batch before it: the main
        thread goes on polling and decoding while the model runs (torch and numpy release the GIL),
        and the model goes from one batch to the next without waiting for the emission of the
        previous (at most two batches in flight). Outputs keep their order; :meth:`_finish_inflight`
        emits them. A model whose calls take under ``INLINE_SCORE_S`` on average is called inline."""
        bundle = self.bundle
        X = np.concatenate([b.X for b, _ in take]) if len(take) > 1 else take[0][0].X
        if getattr(bundle, "series_norm", None) is not None:  # per-series statistics of `anomon train` (by each window's series)
            X = bundle.normalize_series(X, [sid for b, _ in take for sid in b.window_series()])
        if self._score_ewma_s < INLINE_SCORE_S:  # a cheap model: a thread handoff costs more than it overlaps
            self._finish_inflight()
            scores, dt = _timed_score(bundle, X)
            # emitted with the next ones of this drain of the queue (_score_pending), up to EMIT_WINDOWS
            self._scored.append((take, bundle, self.thresholds, scores, dt))
            self._scored_n += scores.n
            if self._scored_n >= EMIT_WINDOWS:
                self._emit_scored()
            return
        self._emit_scored()  # (they came before this batch)
        if self._scorer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._scorer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-score")
        child = self._child_for(bundle)
        call = _timed_score if child is None else functools.partial(_child_score, child)
        self._inflight.append((self._scorer.submit(call, bundle, X), take, bundle, self.thresholds))
        if child is not None:
            self.stats["child_batches"] += 1
        self.stats["threaded_batches"] += 1
        while len(self._inflight) > 1:
            self._finish_one()

    def _child_for(self, bundle: Any) -> Any:
        """The child process scoring ``bundle`` once it has loaded it (``scoring.child_process``); None
        meanwhile, when off or when the child failed (the scoring thread scores then). A new bundle
        (reload) gets a new child."""
        if not self.cfg.scoring.child_process or getattr(bundle, "path", None) is None:
            return None
        if self._child is not None and self._child.bundle is not bundle:
            self._close_child()
        if self._child is None:
            from monitor.score_process import ScoringProcess

            self._child = ScoringProcess(bundle, blas_threads=self.cfg.scoring.blas_threads)
        return self._child if self._child.ready() else None  # a failed child stays not ready

    def _close_child(self) -> None:
        proc, self._child = self._child, None
        if proc is not None:
            try:
                proc.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping the scoring process failed: %s", exc)

    def _finish_one(self) -> None:
        """Wait for the oldest batch in flight and emit its scores and alerts (it leaves the queue
        even when the model failed: the error propagates)."""
        fut, take, bundle, thresholds = self._inflight.popleft()
        scores, dt = fut.result()
        self._emit([(take, bundle, thresholds, scores, dt)])

    def _finish_inflight(self, done_only: bool = False) -> None:
        """Emit the batches in flight, in order: all of them (waiting for the model), or with
        ``done_only`` those the model has finished."""
        q = self._inflight
        while q and (not done_only or q[0][0].done()):
            self._finish_one()

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
            flags, thr = thresholds.classify(scores)
            thr = {c: round(v, 6) for c, v in thr.items()}
            if thr != enc_thr:
                enc, enc_thr = ScoreRecordEncoder(comps, thr, bundle.name, bundle.version, now_ms), thr
            sids: list[str] = []
            in_part: list[str] = []
            for b, ts in take:
                sids.extend(b.window_series())
                in_part.extend([str(b.partition.partition)] * len(b))
                tps.extend([b.partition] * len(b))
                rec_ts.extend(ts)
            ends = np.concatenate([b.end_ts for b, _ in take]) if len(take) > 1 else take[0][0].end_ts
            starts = np.concatenate([b.start_ts for b, _ in take]) if len(take) > 1 else take[0][0].start_ts
            ends_i, flags_i = ends.tolist(), flags.tolist()
            # every number of the batch's records written as JSON, one C call per column
            values.extend(enc.batch_records(series_json(sids), number_strings(ends_i), ms_strings(starts),
                                            ms_strings(ends), [number_strings(scores[c]) for c in comps], flags_i,
                                            in_part))
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
            self._watch_drift(bundle, primary, scores[primary])
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
        for c, v in batches[-1][2].current().items():
            m.set_threshold(bundle.name, c, v)
        m.observe_series(bundle.name, series_ids, np.asarray(primary_list, dtype=float), component=primary)

    def _watch_drift(self, bundle: Any, component: str, scores: Any) -> None:
        """Feed a batch's mean score to ADWIN (``scoring.drift``); count and log a drift it detects."""
        if self.adwin is None:
            return
        v = float(np.mean(scores))
        if math.isfinite(v):
            self.adwin.update(v)
            if self.adwin.drift_detected:
                self.stats["drift"] += 1
                self.metrics.drift(bundle.name, component)
                log.warning("score drift detected (ADWIN)", extra={"model": bundle.name, "component": component,
                                                                    "mean_score": round(v, 4)})

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

    # ------------------------------------------------------------------ commits
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
            self._send_progress(tp, c, snap)
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
            self._dirty.discard(tp)
            adopted = self._adopted.get(tp)
            if adopted:  # windows that needed parked readings are out and flushed: no rewind goes back to them
                for sid in [sid for sid, (_, o) in adopted.items() if o < c]:
                    del adopted[sid]
        self.stats["commits"] += 1
        self.metrics.commit(ok=True)
        return True

    def _send_progress(self, tp: Any, offset: int, snap: dict) -> None:
        items = list(snap.items())
        parts = max(1, math.ceil(len(items) / PROGRESS_CHUNK))
        seq = time.time_ns()
        key = self._progress_key(tp)
        for i in range(parts):
            chunk = dict(items[i * PROGRESS_CHUNK:(i + 1) * PROGRESS_CHUNK])
            v = {"v": PROGRESS_VERSION, "topic": tp.topic, "partition": tp.partition, "offset": offset,
                 "seq": seq, "part": i, "parts": parts, "dlq_upto": self._dlq_mark.get(tp, -1), "series": chunk}
            self.sink.send(self.cfg.progress_topic, json.dumps(v, separators=(",", ":")).encode(), key=key,
                           partition=tp.partition % self._progress_parts)

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

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Run until :meth:`stop`; returns the stats."""
        from monitor.score_process import limit_blas
        from streams.kafka import TopicPartition  # noqa: F401

        self._open()
        blas = limit_blas(self.cfg.scoring.blas_threads)  # for the run, restored at the end
        _freeze_heap()
        self.started = True
        self.metrics.set_up(True)
        cfg = self.cfg
        max_wait = cfg.scoring.max_wait_ms / 1000.0
        next_commit = time.monotonic() + cfg.output.commit_interval_s
        next_house = time.monotonic() + 1.0
        backoff = 0.0
        log.info("anomon run started", extra={"model": str(self.bundle), "topics": ",".join(cfg.input.topics),
                                               "group": cfg.input.group_id, "stride": self.spec.stride})
        try:
            while not self._stop.is_set():
                self.loop_heartbeat = time.monotonic()
                timeout = 0.2
                if self._pending:
                    timeout = max(0.0, min(timeout, self._pending_since + max_wait - time.monotonic()))
                if self._inflight:  # its outputs go out soon after the model returns
                    timeout = min(timeout, 0.005)
                try:
                    recs = self.source.poll(timeout)
                    self.connected = self._coordinator_known()
                    backoff = 0.0
                    if self._sink_stale and self.connected:
                        self._renew_sink()
                except Exception as exc:  # noqa: BLE001 - broker trouble: back off and retry
                    self.connected = False
                    backoff = min(10.0, max(0.2, backoff * 2))
                    log.warning("poll failed (%s); retrying in %.1fs", exc, backoff)
                    self._stop.wait(backoff)
                    continue
                with self._lock:
                    if self._to_drop:
                        for tp in list(self._to_drop):
                            self._drop(tp)
                        self._to_drop.clear()
                    if self._new:
                        self._reseeked = set()
                        self._init_partitions()
                        if recs and self._reseeked:  # fetched before the seek: they come again
                            recs = [r for r in recs if (r.topic, r.partition) not in
                                    {(t.topic, t.partition) for t in self._reseeked}]
                    if recs:
                        if self.first_record_at is None:
                            self.first_record_at = time.monotonic()
                        self._process(recs)
                    for u in self.source.take_unreadable():
                        self._unreadable(u)
                    if self._repart_topic is not None:
                        self._release_keyless()
                    if self._pending and (time.monotonic() - self._pending_since >= max_wait):
                        self._score_pending()
                    if self._inflight:
                        self._finish_inflight(done_only=True)
                    now = time.monotonic()
                    if now >= next_commit:
                        self._checkpoint(is_async=True)
                        next_commit = now + cfg.output.commit_interval_s
                    if now >= next_house:
                        next_house = now + 1.0
                        self._housekeeping()
                self._maybe_reload()
            self.draining = True
            self.metrics.set_up(False)
            with self._lock:
                if self._new:
                    self._init_partitions()
                if self._repart_topic is not None:
                    self._release_keyless(everything=True)  # the next run windows them
                ok = self._checkpoint()
                log.info("drained", extra={"committed": ok, **self.stats})
        finally:
            self.metrics.set_ready(False)
            if self._scorer is not None:
                self._scorer.shutdown(wait=True, cancel_futures=True)
                self._scorer = None
            self._close_child()
            if blas is not None:
                blas.restore_original_limits()
            try:
                self.source.close(commit=False)
            except Exception:  # noqa: BLE001
                pass
            try:
                self.sink.close()
            except Exception:  # noqa: BLE001
                pass
        return dict(self.stats)

    def _coordinator_known(self) -> bool:
        return self.source.coordinator_known()

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

    def _housekeeping(self) -> None:
        self._end_stale_alerts()
        self._expire_parked()
        n = self.windower.evict_idle()
        if n:
            self.metrics.evicted(n)
        self.windower.pack_idle()
        self.metrics.set_series_state(self.windower.n_series(), self._pending_n)
        self.metrics.set_ready(self.readiness()[0])
        for tp in self._owned:
            try:
                self.metrics.set_position(tp.topic, tp.partition, self.source.position(tp), self.source.highwater(tp),
                                          committed=self._last_commit.get(tp))
            except Exception:  # noqa: BLE001
                pass
        self.metrics.set_active_alerts(self.bundle.name, sum(1 for a in self._alerts.values() if a[2]))

    def lag(self) -> dict[str, int]:
        out = {}
        for tp in list(self._owned):
            try:
                hw = self.source.highwater(tp)
                if hw is not None:
                    out[f"{tp.topic}:{tp.partition}"] = max(0, hw - self.source.position(tp))
            except Exception:  # noqa: BLE001
                pass
        return out
