"""Prometheus metrics of the anomon daemon.

Everything is registered on a :class:`~prometheus_client.CollectorRegistry` passed in by the
caller -- never on prometheus_client's global registry -- so several daemons (and tests) can
live in one process. All names start with ``anomon_`` except the standard ``process_*`` /
``python_*`` collectors, which are registered on the same injected registry.

Cardinality rules
-----------------
Labels only take values from small, bounded sets: topic, partition, model name, score
component, dead-letter reason (at most :data:`MAX_DLQ_REASONS` distinct values, the rest
are counted as ``other``) and alert event (``start``/``end``).
**A series id is never a label**, with exactly two documented, bounded exceptions:

* ``anomon_top_series_score{model,series}`` -- the top-K most anomalous series per model
  (K = ``top_k``, default 10), i.e. at most K series per model at any time; series that
  leave the top-K are removed from the registry.
* ``anomon_series_score{model,component,series}`` -- only series named in the user-configured
  ``series_allowlist`` (at most :data:`MAX_ALLOWLIST` entries).

Usage (the daemon calls these methods; each one is cheap and thread-safe):

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> import numpy as np
>>> reg = CollectorRegistry()
>>> m = AnomonMetrics(reg, top_k=2, process_collector=False)
>>> m.record_consumed("ecg", 5)
>>> m.observe_batch("vrae", n_windows=3, seconds=0.012)
>>> m.observe_scores("vrae", "total", np.array([0.1, 0.5, 9.0]))
>>> m.set_threshold("vrae", "total", 4.2)
>>> m.observe_series("vrae", ["a", "b", "c"], np.array([0.1, 0.5, 9.0]))
>>> sorted(m.top_series("vrae"))
[('b', 0.5), ('c', 9.0)]
>>> m.dead_letter("late")
>>> reg.get_sample_value("anomon_windows_scored_total", {"model": "vrae"})
3.0
>>> reg.get_sample_value("anomon_threshold", {"model": "vrae", "component": "total"})
4.2
>>> b"anomon_records_consumed_total" in generate_latest(reg)
True
"""
from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily


class _TopSeriesCollector:
    """``anomon_top_series_score{model,series}``, computed when scraped from the candidates that
    :meth:`AnomonMetrics.observe_series` keeps (at most ``top_k`` series per model)."""

    def __init__(self, name: str, documentation: str, metrics: "AnomonMetrics") -> None:
        self.name, self.documentation, self._metrics = name, documentation, metrics

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=["model", "series"])

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        fam = self._family()
        m = self._metrics
        with m._lock:
            models = list(m._top)
        for model in models:
            for s, v in m.top_series(model):
                fam.add_metric([model, s], v)
        yield fam


_SCORE_OF = itemgetter(1)  # of a (series, score) pair

#: Prefix of every anomon metric.
NAMESPACE = "anomon"
#: At most this many distinct dead-letter reasons get their own label value; the rest -> "other".
MAX_DLQ_REASONS = 32
#: At most this many series may be allow-listed for per-series score gauges.
MAX_ALLOWLIST = 100
#: Upper bound for ``top_k``.
MAX_TOP_K = 100

#: Batch scoring latency buckets (seconds): 1 ms .. 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: produce -> score latency buckets (seconds): 5 ms .. 2 min (includes windowing wait).
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Windows per scoring batch.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def default_score_buckets() -> tuple[float, ...]:
    """Score histogram buckets: 0 (catches scores <= 0), then 4 per decade from 1e-3 to 1e6.

    Scores of different detectors live on very different scales (reconstruction error,
    negative log-likelihood, distances), so the buckets are log-spaced and wide. (No negative
    buckets: prometheus_client then drops ``_sum``.)

    >>> b = default_score_buckets()
    >>> b[:3], b[-1], len(b)
    ((0.0, 0.001, 0.001778), 1000000.0, 38)
    """
    pos = [float(f"{10 ** (e / 4):.4g}") for e in range(-12, 25)]
    return (0.0, *pos)


class AnomonMetrics:
    """All metrics of one daemon, on an injected registry.

    Parameters
    ----------
    registry:
        where to register; required (the global registry is never used).
    top_k:
        how many of the most anomalous series per model ``anomon_top_series_score`` keeps
        (default 10, at most :data:`MAX_TOP_K`; 0 disables it).
    top_k_window_s:
        a series' top-K score is its maximum score over about this many seconds.
    series_allowlist:
        series ids that get their own ``anomon_series_score`` gauges (at most
        :data:`MAX_ALLOWLIST`).
    score_buckets:
        buckets of the ``anomon_score`` histogram (default :func:`default_score_buckets`).
    process_collector:
        also register the standard process / platform / GC collectors on ``registry``.
    dlq_reasons:
        dead-letter reasons to export at 0 from the start (so rates and alert rules have
        data before the first bad record).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        top_k: int = 10,
        top_k_window_s: float = 300.0,
        series_allowlist: Iterable[str] = (),
        score_buckets: Sequence[float] | None = None,
        process_collector: bool = True,
        dlq_reasons: Iterable[str] = (),
    ) -> None:
        if registry is None:
            raise ValueError("AnomonMetrics needs an explicit CollectorRegistry")
        allow = tuple(dict.fromkeys(str(s) for s in series_allowlist))
        if len(allow) > MAX_ALLOWLIST:
            raise ValueError(f"series_allowlist has {len(allow)} entries; at most {MAX_ALLOWLIST} are allowed")
        if not 0 <= int(top_k) <= MAX_TOP_K:
            raise ValueError(f"top_k must be in 0..{MAX_TOP_K}, got {top_k}")
        self.registry = registry
        self.top_k = int(top_k)
        self.top_k_window_s = float(top_k_window_s)
        self.series_allowlist = frozenset(allow)
        self._lock = threading.Lock()
        self._dlq_reasons: set[str] = set()
        self._top: dict[str, dict[str, tuple[float, float]]] = {}  # model -> series -> (score, t)
        self._serving: set[str] = set()  # model names with anomon_model_loaded == 1
        self._lag_keys: set[tuple[str, str]] = set()
        r = registry
        ns = NAMESPACE

        # ---- throughput ---------------------------------------------------------------
        self.records_consumed = Counter(
            "records_consumed", "Input records consumed from Kafka.", ["topic"], namespace=ns, registry=r
        )
        self.records_produced = Counter(
            "records_produced", "Records produced to output topics (scores, alerts, dead letters).",
            ["topic"], namespace=ns, registry=r,
        )
        self.windows_scored = Counter(
            "windows_scored", "Windows scored by the model.", ["model"], namespace=ns, registry=r
        )
        self.windows_anomalous = Counter(
            "windows_anomalous", "Scored windows flagged anomalous (score above threshold).",
            ["model"], namespace=ns, registry=r,
        )
        self.alerts = Counter(
            "alerts", "Per-series anomaly alert events (start/end).", ["model", "event"], namespace=ns, registry=r
        )
        self.alerts_active = Gauge(
            "alerts_active", "Series currently in an open anomaly alert.", ["model"], namespace=ns, registry=r
        )
        self.dead_letters = Counter(
            "dead_letter_records", "Records sent to the dead-letter topic, by reason.", ["reason"],
            namespace=ns, registry=r,
        )
        # ---- Kafka --------------------------------------------------------------------
        self.unreadable_batches = Counter(
            "unreadable_batches", "Record batches skipped because they could not be read (failed CRC, missing "
            "codec, corrupt data), by reason; each has one dead letter naming its offsets.", ["reason"],
            namespace=ns, registry=r,
        )
        self.fetch_lag = Gauge(
            "fetch_lag", "Records not read yet per assigned partition (fetch high-water mark - position): the "
            "backlog; consumer_lag adds what is read but not committed.", ["topic", "partition"],
            namespace=ns, registry=r,
        )
        self.consumer_lag = Gauge(
            "consumer_lag", "Consumer lag in records per assigned partition (high-water mark - committed offset, "
            "as external lag tools read it).",
            ["topic", "partition"], namespace=ns, registry=r,
        )
        self.commits = Counter("offset_commits", "Offset commits.", namespace=ns, registry=r)
        self.commit_failures = Counter("offset_commit_failures", "Failed offset commits.", namespace=ns, registry=r)
        self.rebalances = Counter(
            "rebalances", "Partition assignment changes.", ["event"], namespace=ns, registry=r
        )
        self.assigned_partitions = Gauge(
            "assigned_partitions", "Partitions currently assigned to this process.", namespace=ns, registry=r
        )
        # ---- latency ------------------------------------------------------------------
        self.batch_seconds = Histogram(
            "batch_scoring_seconds", "Wall time of one model call on a micro-batch.", ["model"],
            buckets=LATENCY_BUCKETS, namespace=ns, registry=r,
        )
        self.batch_windows = Histogram(
            "batch_windows", "Windows per scoring micro-batch.", ["model"], buckets=BATCH_SIZE_BUCKETS,
            namespace=ns, registry=r,
        )
        self.e2e_seconds = Histogram(
            "produce_to_score_seconds",
            "Latency from the Kafka produce timestamp of a window's last record to its score being produced.",
            ["model"], buckets=E2E_BUCKETS, namespace=ns, registry=r,
        )
        # ---- scores, thresholds, drift --------------------------------------------------
        self.scores = Histogram(
            "score", "Distribution of window scores per model and score component.", ["model", "component"],
            buckets=tuple(score_buckets) if score_buckets is not None else default_score_buckets(),
            namespace=ns, registry=r,
        )
        self.threshold = Gauge(
            "threshold", "Current alert threshold per model and score component (calibrated, then SPOT-adapted).",
            ["model", "component"], namespace=ns, registry=r,
        )
        self.drift_events = Counter(
            "drift_events", "Drift detected on the score stream (ADWIN).", ["model", "component"],
            namespace=ns, registry=r,
        )
        # ---- series state ---------------------------------------------------------------
        self.series_tracked = Gauge(
            "series_tracked", "Series with open window state in this process.", namespace=ns, registry=r
        )
        self.series_evicted = Counter(
            "series_evicted", "Idle series evicted after the TTL.", namespace=ns, registry=r
        )
        self.pending_windows = Gauge(
            "pending_windows", "Complete windows waiting for the next scoring batch.", namespace=ns, registry=r
        )
        # written when scraped, from the candidates observe_series keeps (the top-K of each batch's
        # scores was re-published through labels().set()/remove() per batch: 4 % of the daemon at stride 1)
        self.top_series_score = _TopSeriesCollector(
            f"{ns}_top_series_score",
            f"Max score over ~{self.top_k_window_s:g}s of the top-{self.top_k} most anomalous series per model "
            "(bounded: the only per-series metric besides the allow-list).", self)
        r.register(self.top_series_score)
        self.series_score = Gauge(
            "series_score", "Latest score of allow-listed series (user-configured, bounded).",
            ["model", "component", "series"], namespace=ns, registry=r,
        )
        # ---- model ----------------------------------------------------------------------
        self.model_info = Info(
            "model", "The model being served: detector, version and load time.", ["model"], namespace=ns, registry=r
        )
        self.model_loaded = Gauge(
            "model_loaded", "1 while a model is loaded and serving, else 0.", ["model"], namespace=ns, registry=r
        )
        self.model_load_time = Gauge(
            "model_load_timestamp_seconds", "Unix time the serving model was (re)loaded.", ["model"],
            namespace=ns, registry=r,
        )
        self.model_reloads = Counter(
            "model_reloads", "Successful model hot reloads.", ["model"], namespace=ns, registry=r
        )
        self.model_reload_failures = Counter(
            "model_reload_failures", "Failed model (re)loads; the previous model keeps serving.", ["model"],
            namespace=ns, registry=r,
        )
        self.retrains = Counter(
            "retrains", "Retrains of the served model from inside the daemon ([retrain]), by outcome: promoted, "
            "refused (failed validation; still serving the previous version), failed, stopped.",
            ["model", "outcome"], namespace=ns, registry=r,
        )
        self.retrain_running = Gauge(
            "retrain_running", "1 while a retrain of the model runs in its child process.", ["model"],
            namespace=ns, registry=r,
        )
        # ---- process health ------------------------------------------------------------
        self.up = Gauge("up", "1 while the daemon process runs.", namespace=ns, registry=r)
        self.ready = Gauge(
            "ready", "1 when ready (model loaded, broker connected, partitions assigned).", namespace=ns, registry=r
        )
        self.start_time = Gauge("start_time_seconds", "Unix time the daemon started.", namespace=ns, registry=r)
        self.build_info = Info("build", "anomon build information.", namespace=ns, registry=r)
        self.up.set(1)
        self.ready.set(0)
        self.start_time.set(time.time())
        try:
            from importlib.metadata import version

            ver = version("anomon")
        except Exception:  # pragma: no cover - not installed
            ver = "unknown"
        self.build_info.info({"version": ver})
        for reason in dlq_reasons:
            self.dead_letter(reason, 0)
        if process_collector:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    # ------------------------------------------------------------------------------- input
    def record_consumed(self, topic: str, n: int = 1) -> None:
        """Count ``n`` input records consumed from ``topic``."""
        if n:
            self.records_consumed.labels(topic=topic).inc(n)

    def record_produced(self, topic: str, n: int = 1) -> None:
        """Count ``n`` records produced to the output ``topic`` (scores, alerts, DLQ)."""
        if n:
            self.records_produced.labels(topic=topic).inc(n)

    def dead_letter(self, reason: str, n: int = 1) -> None:
        """Count ``n`` records sent to the dead-letter topic because of ``reason``.

        Reasons are short fixed words chosen by the daemon (``late``, ``duplicate``,
        ``nan``, ``width``, ``undecodable``, ...); after :data:`MAX_DLQ_REASONS` distinct
        values further ones are counted as ``other``.
        """
        reason = str(reason)[:64] or "unknown"
        with self._lock:
            if reason not in self._dlq_reasons:
                if len(self._dlq_reasons) >= MAX_DLQ_REASONS:
                    reason = "other"
                self._dlq_reasons.add(reason)
        self.dead_letters.labels(reason=reason).inc(n)

    # ------------------------------------------------------------------------------- kafka
    def unreadable_batch(self, reason: str) -> None:
        """Count one record batch skipped as unreadable (``crc``, ``codec``, ``corrupt`` or ``other``)."""
        r = reason if reason in ("crc", "codec", "corrupt") else "other"
        self.unreadable_batches.labels(reason=r).inc()

    def set_lag(self, topic: str, partition: int, lag: float) -> None:
        """Set the consumer lag of one partition: the fetch high-water mark minus the position.

        Take the high-water mark from the fetch responses (kafka-python:
        ``consumer.highwater(tp)``), not from ``end_offsets`` -- the embedded broker
        answers ``end_offsets`` wrongly.
        """
        key = (str(topic), str(int(partition)))
        with self._lock:
            self._lag_keys.add(key)
        self.consumer_lag.labels(topic=key[0], partition=key[1]).set(max(0.0, float(lag)))

    def set_position(self, topic: str, partition: int, position: int, highwater: int | None,
                     committed: int | None = None) -> None:
        """Set the lags of one partition from the fetch ``highwater`` mark (None: unknown yet):
        ``consumer_lag`` from the ``committed`` offset (as external tools read lag; the position when
        nothing is committed yet), ``fetch_lag`` from the consumer ``position``."""
        if highwater is None or position is None:
            return
        self.set_lag(topic, partition, highwater - (committed if committed is not None else position))
        self.fetch_lag.labels(topic=str(topic), partition=str(int(partition))).set(max(0.0, float(highwater - position)))

    def set_assignment(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Record the current assignment; lag series of partitions no longer assigned are removed."""
        now = {(str(t), str(int(p))) for t, p in partitions}
        with self._lock:
            gone = self._lag_keys - now
            self._lag_keys &= now
        for t, p in gone:
            for g in (self.consumer_lag, self.fetch_lag):
                try:
                    g.remove(t, p)
                except KeyError:
                    pass
        self.assigned_partitions.set(len(now))

    def rebalance(self, event: str) -> None:
        """Count a rebalance event: ``assigned``, ``revoked`` or ``lost``."""
        self.rebalances.labels(event=event).inc()

    def commit(self, ok: bool = True) -> None:
        """Count an offset commit (``ok=False``: a failed one)."""
        (self.commits if ok else self.commit_failures).inc()

    # ----------------------------------------------------------------------------- scoring
    def observe_batch(self, model: str, n_windows: int, seconds: float, n_anomalous: int = 0) -> None:
        """Record one model call: ``n_windows`` windows scored in ``seconds``, ``n_anomalous`` flagged."""
        self.batch_seconds.labels(model=model).observe(float(seconds))
        self.batch_windows.labels(model=model).observe(int(n_windows))
        if n_windows:
            self.windows_scored.labels(model=model).inc(int(n_windows))
        if n_anomalous:
            self.windows_anomalous.labels(model=model).inc(int(n_anomalous))

    def observe_latency(self, model: str, seconds: Sequence[float] | np.ndarray | float) -> None:
        """Record produce->score latencies (seconds), one per scored window (or one scalar)."""
        a = np.atleast_1d(np.asarray(seconds, dtype=float)).ravel()
        _bulk_observe(self.e2e_seconds.labels(model=model), np.maximum(a[np.isfinite(a)], 0.0))

    def observe_scores(self, model: str, component: str, scores: Sequence[float] | np.ndarray) -> None:
        """Add a batch of window scores of one ``component`` to the score histogram.

        Non-finite scores are skipped. Labels are model and component only -- never a series.
        """
        a = np.asarray(scores, dtype=float).ravel()
        _bulk_observe(self.scores.labels(model=model, component=component), a[np.isfinite(a)])

    def set_threshold(self, model: str, component: str, value: float) -> None:
        """Set the current threshold of ``model``/``component`` (after calibration or a SPOT update)."""
        self.threshold.labels(model=model, component=component).set(float(value))

    def drift(self, model: str, component: str = "total", n: int = 1) -> None:
        """Count drift events detected (ADWIN) on the score stream of ``model``/``component``."""
        self.drift_events.labels(model=model, component=component).inc(n)

    def alert(self, model: str, event: str) -> None:
        """Count an alert ``start``, ``end`` or ``stale`` event (an end because the series went quiet)
        and keep ``anomon_alerts_active`` in step."""
        if event not in ("start", "end", "stale"):
            raise ValueError(f"alert event must be 'start', 'end' or 'stale', got {event!r}")
        self.alerts.labels(model=model, event=event).inc()
        g = self.alerts_active.labels(model=model)
        if event == "start":
            g.inc()
        else:
            with self._lock:
                g.set(max(0.0, g._value.get() - 1))

    def set_active_alerts(self, model: str, n: int) -> None:
        """Set the number of series in an open alert (e.g. after a rebalance)."""
        self.alerts_active.labels(model=model).set(int(n))

    # ------------------------------------------------------------------------------ series
    def observe_series(
        self,
        model: str,
        series: Sequence[str],
        scores: Sequence[float] | np.ndarray,
        component: str = "total",
        now: float | None = None,
    ) -> None:
        """Feed per-window ``(series, score)`` pairs to the bounded per-series metrics.

        Updates ``anomon_top_series_score`` (the top-K series by max score over
        ``top_k_window_s``; approximate: only the current top ``2*K`` candidates are kept) and,
        for allow-listed series only, ``anomon_series_score``. Memory is O(K), not O(series).
        """
        scores = np.asarray(scores, dtype=float).ravel()
        if len(series) != scores.size:
            raise ValueError(f"{len(series)} series ids but {scores.size} scores")
        if self.series_allowlist:
            for s, v in zip(series, scores):
                if s in self.series_allowlist and math.isfinite(v):
                    self.series_score.labels(model=model, component=component, series=s).set(float(v))
        if self.top_k == 0 or scores.size == 0:
            return
        now = time.time() if now is None else now
        keep = 2 * self.top_k
        ranked = np.where(np.isfinite(scores), scores, -np.inf)
        # only the batch's best `keep` series can enter the candidate set: each series' max, taken from
        # the batch's top windows (all of them when those hold fewer than `keep` series)
        n = ranked.size
        m = min(n, 8 * keep)
        idx = np.argpartition(ranked, n - m)[n - m:] if n > m else np.arange(n)
        idx = idx[np.argsort(ranked[idx], kind="stable")]
        best = dict(zip(map(series.__getitem__, idx.tolist()), ranked[idx].tolist()))  # (ascending: the max stays)
        if len(best) < keep and m < n:
            idx = np.argsort(ranked, kind="stable")
            best = dict(zip(map(series.__getitem__, idx.tolist()), ranked[idx].tolist()))
        with self._lock:
            cand = self._top.setdefault(model, {})
            window = self.top_k_window_s
            for s, v in heapq.nlargest(keep, best.items(), key=_SCORE_OF):
                if v == -math.inf:
                    continue
                s = str(s)
                old = cand.get(s)
                if old is None or v >= old[0] or now - old[1] > window:
                    cand[s] = (v, now)
            for s in [s for s, (_, t) in cand.items() if now - t > window]:
                del cand[s]
            if len(cand) > keep:
                kept = heapq.nlargest(keep, cand.items(), key=lambda kv: kv[1][0])
                cand.clear()
                cand.update(kept)

    def top_series(self, model: str) -> list[tuple[str, float]]:
        """The series ``anomon_top_series_score`` shows for ``model`` (the top ``top_k`` of the candidates
        as of the last :meth:`observe_series`), best first."""
        with self._lock:
            cand = self._top.get(model, {})
            return [(s, v) for s, (v, _) in heapq.nlargest(self.top_k, cand.items(), key=lambda kv: kv[1][0])]

    def set_series_state(self, tracked: int, pending_windows: int | None = None) -> None:
        """Set the number of series with open windows (and, optionally, windows pending scoring)."""
        self.series_tracked.set(int(tracked))
        if pending_windows is not None:
            self.pending_windows.set(int(pending_windows))

    def evicted(self, n: int = 1) -> None:
        """Count ``n`` idle series evicted after the TTL."""
        if n:
            self.series_evicted.inc(n)

    # ------------------------------------------------------------------------------- model
    def model_load(
        self,
        model: str,
        version: str,
        detector: str = "",
        loaded_at: float | None = None,
        reload: bool = False,
        components: Iterable[str] = (),
    ) -> None:
        """Record that ``model`` (name as configured) at ``version`` now serves.

        Sets ``anomon_model_info{model,version,detector,loaded_at}``,
        ``anomon_model_loaded{model}=1`` and ``anomon_model_load_timestamp_seconds{model}``
        (dashboards draw version changes as annotations from it); ``reload=True`` also counts a
        successful hot reload; a reload under another name marks the previous model(s) not
        loaded (``anomon_model_loaded=0``). The model's labelled counters (and, per score ``components``,
        drift counters) are created at 0 so that rates exist before the first event.
        """
        t = time.time() if loaded_at is None else float(loaded_at)
        for c in (self.windows_scored, self.windows_anomalous, self.model_reloads, self.model_reload_failures):
            c.labels(model=model)
        for ev in ("start", "end"):
            self.alerts.labels(model=model, event=ev)
        for outcome in ("promoted", "refused", "failed", "stopped"):
            self.retrains.labels(model=model, outcome=outcome)
        self.alerts_active.labels(model=model)
        for comp in components:
            self.drift_events.labels(model=model, component=comp)
        self.model_info.labels(model=model).info(
            {
                "version": str(version),
                "detector": str(detector or model),
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
            }
        )
        if reload:
            for old in self._serving - {model}:
                self.model_loaded.labels(model=old).set(0)
                try:
                    self.model_info.remove(old)
                except KeyError:
                    pass
            self._serving.clear()
        self._serving.add(model)
        self.model_loaded.labels(model=model).set(1)
        self.model_load_time.labels(model=model).set(t)
        if reload:
            self.model_reloads.labels(model=model).inc()

    def model_load_failed(self, model: str, still_serving: bool = True) -> None:
        """Count a failed (re)load. ``still_serving=False``: no model serves any more (loaded=0)."""
        self.model_reload_failures.labels(model=model).inc()
        if not still_serving:
            self.model_unloaded(model)

    def retrain(self, model: str, outcome: str) -> None:
        """Count a finished retrain of ``model`` (``promoted``, ``refused``, ``failed`` or ``stopped``)."""
        self.retrains.labels(model=model, outcome=outcome).inc()

    def set_retrain_running(self, model: str, running: bool) -> None:
        """Set ``anomon_retrain_running{model}`` while a retrain's child process runs."""
        self.retrain_running.labels(model=model).set(1 if running else 0)

    def model_unloaded(self, model: str) -> None:
        """Mark ``model`` as not serving (``anomon_model_loaded{model}=0``)."""
        self._serving.discard(model)
        self.model_loaded.labels(model=model).set(0)

    # ------------------------------------------------------------------------------ health
    def set_ready(self, ready: bool) -> None:
        """Set ``anomon_ready`` (mirror of ``/readyz``)."""
        self.ready.set(1 if ready else 0)

    def set_up(self, up: bool) -> None:
        """Set ``anomon_up``; set 0 while draining on shutdown."""
        self.up.set(1 if up else 0)

    # -------------------------------------------------------------------------- exposition
    def exposition(self) -> tuple[bytes, str]:
        """The ``/metrics`` body and its Content-Type header value."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _bulk_observe(h: Any, a: np.ndarray) -> None:
    """``h.observe(v)`` for every finite ``v`` in ``a``, as one numpy bucket count per batch.

    Same result as the loop (``le`` buckets: ``v <= bound``), a few microseconds per batch
    instead of one Python call per value. Uses prometheus_client's Histogram internals
    (``_upper_bounds``, ``_buckets``, ``_sum``), pinned by ``prometheus-client==0.26.0`` and
    checked against ``observe()`` in tests/test_metrics.py.
    """
    if a.size == 0:
        return
    upper = np.asarray(h._upper_bounds, dtype=float)
    counts = np.bincount(np.searchsorted(upper, a, side="left"), minlength=len(upper))
    for i in np.flatnonzero(counts):
        h._buckets[i].inc(float(counts[i]))
    h._sum.inc(float(a.sum()))


def serve(metrics: AnomonMetrics, port: int = 0, addr: str = "127.0.0.1") -> tuple[Any, int]:
    """Serve ``/metrics`` of ``metrics.registry`` on ``addr:port`` (loopback by default) in a thread.

    For stand-alone use and tests; the daemon serves ``/metrics`` next to ``/healthz``.
    Returns ``(server, port)``; stop with ``server.shutdown()``.
    """
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server, server.server_address[1]
