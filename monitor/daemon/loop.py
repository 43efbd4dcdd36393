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

import gc
import logging
import math
import os
import threading
import time
from collections import deque
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from models.thresholds import StreamThresholds
from monitor.config import Config
from monitor.daemon import scoring
from monitor.daemon.alerts import AlertsMixin, AlertState
from monitor.daemon.checkpoint import CheckpointMixin
from monitor.daemon.emission import EmissionMixin
from monitor.daemon.partitions import PartitionsMixin
from monitor.daemon.progress import ProgressMixin
from monitor.daemon.scoring import ScoringMixin, _timed_score
from monitor.explain import make_explainer
from monitor.modelstore import Bundle, ModelWatcher

log = logging.getLogger("anomon.daemon")
# fields of a batch of ConsumerRecords read by C-level map calls (no Python code per record)
_VALUE, _KEY, _OFFSET, _TIMESTAMP = (attrgetter(f) for f in ("value", "key", "offset", "timestamp"))
_TS_OF = itemgetter(1)  # of a plain reading (series, ts_us, row)


class _NullMetrics:
    """Used when no metrics object is given: every method is a no-op."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


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


class Daemon(PartitionsMixin, ProgressMixin, CheckpointMixin, ScoringMixin, EmissionMixin, AlertsMixin):
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
        self._alerts: dict[str, AlertState] = {}  # series -> its hysteresis state (monitor.daemon.alerts)
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
        self._last_thr: dict[Any, dict | None] = {}  # each partition's threshold state at its last commit
        self._last_lik: dict[Any, dict | None] = {}  # and its series' likelihood checkpoints
        self.stats = {"records": 0, "windows": 0, "dlq": 0, "dlq_replayed": 0, "unreadable_batches": 0,
                      "repartitioned": 0, "alerts": 0, "batches": 0, "commits": 0, "rewinds": 0, "drift": 0, "suppressed": 0, "score_s": 0.0,
                      "threaded_batches": 0, "child_batches": 0}
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.first_record_at: float | None = None  # monotonic time of the first consumed record (benchmarks)
        self.last_scored_at: float | None = None
        self._setup_model(self.bundle, reload=False)
        #: retraining from inside the daemon (``[retrain]``, a child process; see monitor.retrain_schedule)
        self.retrainer: Any = None
        if cfg.retrain.enabled:
            from monitor.retrain_schedule import RetrainScheduler

            self.retrainer = RetrainScheduler(
                cfg.retrain, model_dir=cfg.model.dir, settings=self.settings, topics=list(cfg.input.topics),
                fmt=self.fmt, lateness_ms=cfg.window.lateness_ms, gap_ms=cfg.window.gap_ms, lane=lane,
                metrics=self.metrics, on_promoted=self.request_reload, label=self.bundle.name)

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
        # thresholds and drift detectors per input partition, resumed from its progress record
        self.thresholds = StreamThresholds(bundle.thresholds, bundle.alert_components, bundle.calibration,
                                           sc.threshold, sc.q, sc.dspot_depth, model=f"{bundle.name} {bundle.version}",
                                           log=log)
        self._adwin_new = (lambda: ADWIN(delta=sc.drift_delta)) if sc.drift else None
        self._likelihood: Any = None  # scoring.likelihood: series -> AnomalyLikelihood (new scores, new history)
        self._likelihood_seen: dict[str, float] = {}
        if sc.likelihood:
            from models.anomaly_likelihood import LikelihoodPerSeries

            self._likelihood = LikelihoodPerSeries(
                learning_period=sc.likelihood_learning, historic_window=sc.likelihood_window,
                estimation_samples=min(100, sc.likelihood_window), reestimation_period=min(100, sc.likelihood_window))
        self._adwins: dict[Any, Any] = {}  # tp -> ADWIN
        self._adwin_in: dict[Any, deque] = {}  # tp -> the last ADWIN_KEEP batch means it was fed (its progress)
        self._explainer = make_explainer(bundle, sc, reload)  # scoring.explain (None when off)
        if sc.child_process:  # a slow model: start its scoring process now, not at the first full batch
            X = np.zeros((8, bundle.length, bundle.channels), dtype=np.float32)
            try:
                _, dt = _timed_score(bundle, X)
            except Exception:  # noqa: BLE001 - the first real batch will tell
                dt = 0.0
            if dt / len(X) * sc.max_batch >= scoring.INLINE_SCORE_S:
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
            from streams.kafka.confluent import ConfluentSource as Source  # noqa: F811

            worker = os.environ.get("ANOMON_WORKER_INDEX")  # static membership for --workers (run.static_membership)
            if worker is not None and cfg.run.static_membership:
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
            from streams.kafka.confluent import ConfluentSink as Sink
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

    _broken = False
    _sink_stale = False
    _to_drop: set = set()

    # ------------------------------------------------------------------ broker log reset (issue 7)

    # ------------------------------------------------------------------ progress

    # ------------------------------------------------------------------ processing

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

    # ------------------------------------------------------------------ commits

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
            if self.retrainer is not None:
                self.retrainer.close()
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

    def _housekeeping(self) -> None:
        self._end_stale_alerts()
        if self._likelihood_seen:  # the likelihood state of series idle for window.idle_ttl_s goes
            cut = time.monotonic() - self.cfg.window.idle_ttl_s
            for sid in [s for s, t in self._likelihood_seen.items() if t < cut]:
                del self._likelihood_seen[sid]
                self._likelihood.forget(sid)
        if self.retrainer is not None:
            self.retrainer.tick()
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
        self.metrics.set_active_alerts(self.bundle.name, sum(1 for a in self._alerts.values() if a.alert_id))

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
