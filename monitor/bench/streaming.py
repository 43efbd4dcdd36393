"""``anomon bench streaming``: end-to-end throughput and latency of ``anomon run`` on the embedded broker.

Each case (series x stride x message form, window 140) is measured in three ways in the same run:

* **end to end**: readings pre-produced into a topic, then the daemon (in-process, the real
  code path: consumer group, decode, windows, micro-batches, model, scores topic, commits)
  drains the backlog; readings/s and windows/s from its first consumed record to its last scored window;
* **model only**: the same bundle scoring random windows at the daemon's mean batch size, on a worker
  thread with the daemon's BLAS cap (``scoring.blas_threads``), median of 3 passes;
* **raw consume**: a bare kafka-python consumer reading the same records (no decoding), median of 3 passes;
* **raw pipe**: the same consumer that also produces as many output records as the daemon
  writes score records (the Kafka-only cost of the work; at stride 1 the producer binds).

Each case says which resource bounds it (``bottleneck``: model, kafka or decode), which goal of
the daemon issue applies, and whether it holds.

Then the daemon is fed live at half its measured maximum rate (by :func:`feed`, in another process)
and the produce->score latency (p50, p99) is taken from the scored windows. The series are spread
over the ``stride`` window phases (:func:`phase`), so their windows complete evenly in time. Memory
per idle series is measured on the windower with tracemalloc (10,000 series, each holding a nearly
complete window).

Two detectors: ``robust-zscore`` (cheap: Kafka and Python are the bottleneck) and a small
``vrae`` (the model is the bottleneck).

With ``--peers``, instead: both Kafka backends (``kafka.client`` kafka-python and confluent), a plain
confluent-kafka loop and a Quix Streams application doing the same job, and raw consume of both client
libraries, on the same backlogs, interleaved (:mod:`monitor.bench.streaming_backends`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("anomon.bench")

T = 140


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("streaming", help="end-to-end throughput and latency of anomon run, against model-only "
                       "and raw-consume rates measured in the same run", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="a small subset of the cases (smoke test)")
    p.add_argument("--case", default=None, metavar="DET,SERIES,STRIDE,FORM[,WORKERS][;...]",
                   help="run only these cases, e.g. 'vrae,100,10,chunk;robust-zscore,100,1,single,2' (WORKERS: "
                   "processes of anomon run --workers N, default 1)")
    p.add_argument("--budget", type=int, default=400_000, help="readings per case at most (default 400k)")
    p.add_argument("--latency-seconds", type=float, default=8.0, help="seconds of live feed per latency measurement")
    p.add_argument("--max-batch", type=int, default=256, help="scoring.max_batch of the daemon")
    p.add_argument("--bootstrap-servers", default=None, help="use this Kafka instead of the embedded broker")
    p.add_argument("--peers", action="store_true",
                   help="both backends (kafka.client kafka-python and confluent), a plain confluent-kafka loop, a Quix "
                   "Streams app and raw consume of both clients on the same backlogs (monitor/bench/streaming_backends.py; "
                   "--case then takes SERIES,STRIDE[;...])")
    p.add_argument("--pipelines", default=None, metavar="NAME[,NAME...]",
                   help="--peers: only these pipelines (default: all but anomon_kafka_python_public, the kafka-python "
                   "backend without its private-API patches)")
    p.add_argument("--latency-clients", default="confluent", metavar="CLIENT[,CLIENT]",
                   help="--peers: the backends whose p99 at half load is measured (confluent, kafka-python; default "
                   "confluent), all at half the first one's median rate; a second one reads a fresh copy of the backlog")
    p.add_argument("--repeats", type=int, default=3, help="--peers: interleaved repeats of every pipeline (default 3)")
    p.add_argument("--quix-python", default=None, metavar="PATH",
                   help="--peers: a Python interpreter that can import quixstreams (a venv of its own; Quix is skipped without it)")
    p.add_argument("--quix-max-seconds", type=float, default=60.0,
                   help="--peers: stop the Quix app after this long (its rate is then over what it processed)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- helpers
def make_bench_bundle(path: Path, detector: str) -> Path:
    from models import get_detector
    from monitor.modelstore import save_bundle

    rng = np.random.default_rng(0)
    t = np.arange(T)
    X = np.sin(2 * np.pi * (t[None, :] + rng.integers(0, 50, (512, 1))) / 35.0)[:, :, None].astype(np.float32)
    X += rng.normal(scale=0.05, size=X.shape).astype(np.float32)
    if detector == "vrae":
        # one torch thread: this small model scores ~2x faster with 1 than with 2 threads on a 2-core
        # machine (3,364 against 1,735 windows/s at batch 134, alone), and leaves a core to Kafka
        det = get_detector("vrae")(hidden_size=32, latent_dim=8, context_dim=4, epochs=1, n_samples=4,
                                   n_wasserstein=64, patch_len=1, device="cpu", n_threads=1)
        det.fit(X)
        comps = ["reconstruction_probability"]
    else:
        det = get_detector(detector)().fit(X.reshape(len(X), -1))
        comps = None
    return save_bundle(det, path, window_length=T, stride=10, channels=1, calibration=X, fpr=0.01,
                       name=f"bench-{detector}", version="bench", alert_components=comps)


def phase(i: int, n_series: int, stride: int) -> int:
    """Readings series ``i`` has beyond the common backlog length: the series are spread over the
    ``stride`` phases, so that in the live feed their windows complete evenly in time (in phase, all
    10,000 series would complete a window in the same round: a burst, not a load).

    >>> [phase(i, 4, 10) for i in range(4)], phase(99, 100, 1)
    ([0, 2, 5, 7], 0)
    """
    return i * stride // n_series


def _produce(bootstrap: str, topic: str, n_series: int, per_series: int, form: str, t0_ms: float,
             period_ms: float = 10.0, chunk: int = T, stride: int = 1) -> int:
    """The backlog: series i gets ``per_series + phase(i)`` readings, round robin; returns the record count."""
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_chunk, encode_reading

    rng = np.random.default_rng(1)
    sink = Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=20, batch_size=256 * 1024)
    n = 0
    step = 1 if form == "single" else chunk
    base = np.sin(2 * np.pi * np.arange(per_series + stride + chunk) / 35.0)
    keys = [f"s{i}".encode() for i in range(n_series)]
    lengths = [per_series + phase(i, n_series, stride) for i in range(n_series)]
    part_of = sink.keyed_partitioner(topic)
    parts = [part_of(k) for k in keys]
    queued: dict[Any, list] = {}

    def send(i: int, v: bytes) -> None:  # whole record batches per partition (send() per record: 47 s for 1.4 M)
        out = queued.setdefault(parts[i], [])
        out.append((keys[i], v))
        if len(out) >= 2000:
            flush_part(parts[i])

    def flush_part(p: Any) -> None:
        sink.send_batch(topic, p, queued.pop(p, []))

    try:
        for a in range(0, max(lengths), step):
            for i in range(n_series):
                b = min(lengths[i], a + step)
                if a >= b:
                    continue
                if form == "single":
                    v = encode_reading(keys[i].decode(), t0_ms + a * period_ms, float(base[a] + 0.01 * (i % 7)))
                else:
                    v = encode_chunk(keys[i].decode(), t0_ms + a * period_ms, period_ms,
                                     base[a:b] + rng.normal(scale=0.01, size=b - a))
                send(i, v)
                n += 1
        for p in list(queued):
            flush_part(p)
        sink.flush()
    finally:
        sink.close()
    return n


def fetch_settings(cfg: Any) -> dict[str, int]:
    """The daemon's fetch settings (``input.max_poll_records``, ``input.fetch_max_wait_ms``) as
    kafka-python consumer options, for the raw references."""
    return {"max_poll_records": cfg.input.max_poll_records, "fetch_max_wait_ms": cfg.input.fetch_max_wait_ms}


def _consumer_from_start(bootstrap: str, topic: str, fetch: dict[str, int]) -> Any:
    """A bare kafka-python consumer (no group) on every partition of ``topic``, from the beginning,
    with the daemon's fetch settings (``fetch``: ``max_poll_records``, ``fetch_max_wait_ms``). With
    kafka-python's default 500 ms fetch wait the reference was the broker's wait, not the client's
    work: one partition read 36k records/s against the daemon's 65k."""
    from streams.kafka import KafkaConsumer, KafkaSettings, topic_partitions

    s = KafkaSettings(bootstrap_servers=bootstrap)
    tps = topic_partitions(s, topic)
    c = KafkaConsumer(**s.to_kafka_python(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                      **fetch)
    c.assign(tps)
    c.seek_to_beginning(*tps)
    return c


def _raw_consume(bootstrap: str, topic: str, n_records: int, fetch: dict[str, int]) -> float:
    c = _consumer_from_start(bootstrap, topic, fetch)
    got = 0
    t0 = None
    t_start = time.monotonic()
    deadline = t_start + 300
    try:
        while got < n_records and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                if t0 is None:
                    t0 = time.monotonic()
                got += len(recs)
        dt = time.monotonic() - (t0 or time.monotonic())
        if dt < 0.2:  # everything came in one or two fetches: time from the first poll instead
            dt = time.monotonic() - t_start
    finally:
        c.close()
    return got / max(dt, 1e-9)


def _raw_pipe(bootstrap: str, topic: str, n_records: int, out_per_record: float, fetch: dict[str, int],
              out_bytes: int = 320) -> float:
    """Records/s of a bare consume-and-produce loop: the same records in, ``out_per_record`` output
    records of ``out_bytes`` each out (as many as the daemon's score records), nothing decoded.

    The Kafka-only cost of the daemon's work: at stride 1 every reading yields a window and
    therefore an output record, so the producer, not the consumer, bounds the rate.
    """
    from streams.kafka import KafkaSettings, Sink

    c = _consumer_from_start(bootstrap, topic, fetch)
    sink = Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=5)
    payload = b"x" * out_bytes
    out_topic = f"{topic}.pipe"
    got = 0
    owed = 0.0
    t0 = None
    t_start = time.monotonic()
    deadline = t_start + 300
    try:
        while got < n_records and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                if t0 is None:  # timed from the first records, like the raw consume and the daemon
                    t0 = time.monotonic()
                got += len(recs)
                owed += out_per_record * len(recs)
                key = recs[-1].key
                while owed >= 1.0:
                    sink.send(out_topic, payload, key=key)
                    owed -= 1.0
        sink.flush()
        dt = time.monotonic() - (t0 or t_start)
    finally:
        sink.close()
        c.close()
    return got / max(dt, 1e-9)


def _model_only(bundle_path: Path, batch: int, seconds: float = 1.5, blas_threads: int = 0,
                passes: int = 3) -> list[float]:
    """Scoring rates (windows/s) of the bundle alone, ``passes`` passes of ``seconds`` each, in a
    worker thread like the daemon's scoring, with the daemon's BLAS thread cap (``scoring.blas_threads``;
    0 = as is). The case's reference is their median: one pass varied by 25 % on this shared host."""
    import contextlib

    from monitor.score_process import limit_blas

    out: list[list[float]] = []
    with limit_blas(blas_threads) or contextlib.nullcontext():
        t = threading.Thread(target=lambda: out.append(_model_only_here(bundle_path, batch, seconds, passes)))
        t.start()
        t.join()
    return out[0]


def _model_only_here(bundle_path: Path, batch: int, seconds: float, passes: int) -> list[float]:
    from monitor.modelstore import load_bundle

    b = load_bundle(bundle_path)
    X = np.random.default_rng(2).normal(size=(max(1, batch), T, 1)).astype(np.float32)
    b.score_windows(X)
    rates = []
    for _ in range(passes):
        n = 0
        t = time.perf_counter()
        while time.perf_counter() - t < seconds or n < 3 * batch:
            b.score_windows(X)
            n += len(X)
        rates.append(n / (time.perf_counter() - t))
    return rates


def memory_per_idle_series(n: int = 10_000, strides: tuple[int, ...] = (1, 10, 140)) -> dict[str, float]:
    """Bytes of windowing state per idle series (each holding T-1 readings), by tracemalloc.

    Each series holds T-1 readings of noise at 360 Hz; "idle" is after ``window.pack_after_s``
    (the daemon's housekeeping packs the state then). Measured for regular timestamps and for
    timestamps with ±0.5 ms jitter (which compress less), and while still live (not yet packed).
    """
    import tracemalloc

    from streams.records import Readings
    from streams.windowing import ManualClock, Windower, WindowSpec

    out = {}
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(n, T - 1, 1))
    period = 2778  # µs, 360 Hz
    for timing in ("regular", "jitter"):
        steps = np.full((n, T - 1), period, dtype=np.int64)
        if timing == "jitter":
            steps += rng.integers(-500, 500, size=steps.shape)
        ts = 1_700_000_000_000_000 + np.cumsum(steps, axis=1)
        for s in strides:
            clock = ManualClock()
            w = Windower(WindowSpec(length=T, stride=s), clock=clock)
            rs = [Readings(f"series-{i:06d}", ts[i], vals[i]) for i in range(n)]
            tracemalloc.start()
            a = tracemalloc.take_snapshot()
            for i, r in enumerate(rs):
                w.add(0, i, r)
            b = tracemalloc.take_snapshot()
            clock.advance(w.spec.pack_after_s + 1)
            w.pack_idle()
            c = tracemalloc.take_snapshot()
            tracemalloc.stop()
            live = sum(x.size_diff for x in b.compare_to(a, "filename"))
            idle = sum(x.size_diff for x in c.compare_to(a, "filename"))
            if timing == "regular":
                out[f"stride_{s}_live"] = round(live / n, 1)
            out[f"stride_{s}" + ("" if timing == "regular" else "_jitter")] = round(idle / n, 1)
    return out


def run_case(bootstrap: str, bundle_path: Path, detector: str, n_series: int, stride: int, form: str, budget: int,
             max_batch: int, latency_s: float, workers: int = 1) -> dict[str, Any]:
    from monitor.config import load_config
    from monitor.runner import start_daemon
    from streams.kafka import KafkaSettings, create_topics

    k = max(0, (budget // n_series - T) // stride)
    # at least a window length past each series' first window, over the budget if need be (10,000
    # series): the backlog then measures the steady state, every further reading making windows, not
    # only filling the first one (from which half the maximum load of the latency feed is taken)
    k = max(k, -(-T // stride))
    per_series = T + k * stride
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), {topic: 4})
    t0_ms = time.time() * 1000 - 3_600_000
    tp = time.monotonic()
    n_rec = _produce(bootstrap, topic, n_series, per_series, form, t0_ms, stride=stride)
    produce_s = time.monotonic() - tp
    readings = sum(per_series + phase(i, n_series, stride) for i in range(n_series))
    expected = n_series * (k + 1)
    cfg = load_config(None, env={}, overrides={
        "kafka.bootstrap_servers": bootstrap, "input.topics": [topic], "input.group_id": f"g-{topic}",
        "model.dir": str(bundle_path), "window.stride": stride, "http.enabled": False,
        "scoring.max_batch": max_batch, "scoring.max_wait_ms": 50, "scoring.threshold": "calibrated",
        "output.commit_interval_s": 2.0, "output.scores_topic": f"{topic}.scores",
        "output.alerts_topic": f"{topic}.alerts", "output.dlq_topic": f"{topic}.dlq",
        "input.max_poll_records": 2000, "scoring.drift": True})
    # the reference of the Kafka-bound goal, the median of 3 passes (one pass varied 130k-240k records/s),
    # read with the daemon's fetch settings
    fetch = fetch_settings(cfg)
    raws = [_raw_consume(bootstrap, topic, n_rec, fetch) for _ in range(3)]
    raw = float(np.median(raws))
    pipe = _raw_pipe(bootstrap, topic, n_rec, expected / n_rec, fetch)
    if workers > 1:
        run = _run_pool(bootstrap, cfg, workers, topic, expected, n_series, readings, stride, latency_s, form, t0_ms,
                        per_series)
        return _case_result(run, detector=detector, n_series=n_series, stride=stride, form=form, readings=readings,
                            n_rec=n_rec, expected=expected, produce_s=produce_s, raw=raw, raws=raws, pipe=pipe,
                            bundle_path=bundle_path, cfg=cfg)
    r = start_daemon(cfg, metrics=None)
    d = r.daemon
    try:
        deadline = time.monotonic() + 600
        drained_at = None  # when the last backlog record was processed (series end past their last window)
        while (d.stats["windows"] < expected or drained_at is None) and time.monotonic() < deadline:
            time.sleep(0.01)
            if drained_at is None and d.stats["records"] >= n_rec:
                drained_at = time.monotonic()
        e2e_s = max(d.last_scored_at or 0.0, drained_at or time.monotonic()) - (d.first_record_at or time.monotonic())
        scored = d.stats["windows"]
        mean_batch = scored / max(1, d.stats["batches"])
        score_s = d.stats["score_s"]
        child_batches, threaded = d.stats["child_batches"], d.stats["threaded_batches"]
        lat = _latency(bootstrap, topic, d, n_series, _half_load(readings, scored, stride, e2e_s), latency_s, form,
                       T, t0_ms, per_series, stride)
    finally:
        r.stop()
    run = {"scored": scored, "e2e_s": e2e_s, "mean_batch": mean_batch, "score_s": score_s,
           "batches": d.stats["batches"], "threaded": threaded, "child_batches": child_batches, "lat": lat, "workers": 1}
    return _case_result(run, detector=detector, n_series=n_series, stride=stride, form=form, readings=readings,
                        n_rec=n_rec, expected=expected, produce_s=produce_s, raw=raw, raws=raws, pipe=pipe,
                        bundle_path=bundle_path, cfg=cfg)


def _half_load(readings: int, scored: int, stride: int, e2e_s: float) -> float:
    """Readings/s of the latency feed: half the maximum load. The feed continues every series where
    the backlog ended (no gap, so windows keep completing every ``stride`` readings). The backlog of
    many series holds few windows per series, so its readings/s overstates what the daemon sustains
    once every reading completes windows: the maximum is the smaller of the readings rate and the
    windows rate times the stride."""
    return 0.5 * min(readings / max(e2e_s, 1e-9), stride * scored / max(e2e_s, 1e-9))


def _fed(fed: list[float], rate: float) -> dict[str, Any]:
    """What the feeder kept of the asked ``rate``. It is one Python producer sharing the cores: when it
    cannot keep the rate, records queue in its own producer (their timestamps are taken at send), so
    the latency is not the daemon's."""
    if not fed:
        return {}
    return {"latency_fed_readings_per_s": round(fed[0], 1), "latency_feeder_kept_rate": bool(fed[0] >= 0.9 * rate)}


def _pool_totals(pool: Any) -> dict[str, Any]:
    """Windows scored, model calls and their seconds, and the produce->score latency histogram, summed
    over the workers of a :class:`~monitor.workers.WorkerPool` (from their /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    body, _ = pool.exposition()
    out: dict[str, Any] = {"windows": 0.0, "batches": 0.0, "score_s": 0.0, "e2e_buckets": {}}
    for fam in text_string_to_metric_families(body.decode()):
        for smp in fam.samples:
            if smp.name == "anomon_windows_scored_total":
                out["windows"] += smp.value
            elif smp.name == "anomon_batch_windows_count":
                out["batches"] += smp.value
            elif smp.name == "anomon_batch_scoring_seconds_sum":
                out["score_s"] += smp.value
            elif smp.name == "anomon_produce_to_score_seconds_bucket":
                le = float(smp.labels["le"])
                out["e2e_buckets"][le] = out["e2e_buckets"].get(le, 0.0) + smp.value
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``{le: count}`` buckets, interpolated as PromQL's
    ``histogram_quantile`` does (None without observations).

    >>> histogram_quantile(0.5, {0.1: 50.0, 0.25: 100.0, float("inf"): 100.0})
    0.1
    >>> histogram_quantile(0.99, {0.1: 50.0, 0.25: 100.0, float("inf"): 100.0})
    0.247
    """
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return None
    rank = q * buckets[les[-1]]
    prev_le, prev_n = 0.0, 0.0
    for le in les:
        n = buckets[le]
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return round(prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-12), 6)
        prev_le, prev_n = le, n
    return les[-1]


def _run_pool(bootstrap: str, cfg: Any, workers: int, topic: str, expected: int, n_series: int, readings: int,
              stride: int, latency_s: float, form: str, t0_ms: float, per_series: int) -> dict[str, Any]:
    """The backlog through ``anomon run --workers N`` (a :class:`~monitor.workers.WorkerPool` of ``workers``
    processes in one group): end to end from the first record any worker read to the last score any
    worker wrote (their reports; monotonic seconds: one clock for every process of the host), then the
    latency at half that load on the same workers, from their produce->score histograms (bucket
    resolution: 100 / 250 ms)."""
    import dataclasses

    from monitor.workers import WorkerPool

    pcfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, enabled=True, port=0),
                               run=dataclasses.replace(cfg.run, workers=workers))
    pool = WorkerPool(pcfg, workers, bootstrap=bootstrap).start()
    try:
        deadline = time.monotonic() + 600
        reps: dict[int, dict] = {}
        while time.monotonic() < deadline:  # until the workers' own reports count every window
            time.sleep(0.25)
            pool.supervise()
            if pool.error is not None:
                raise pool.error
            reps = pool.reports()
            if sum(r.get("windows", 0) for r in reps.values()) >= expected:
                break
        first = _pool_totals(pool)
        firsts = [r["first_record_at"] for r in reps.values() if r.get("first_record_at")]
        lasts = [r["last_scored_at"] for r in reps.values() if r.get("last_scored_at")]
        e2e_s = (max(lasts) - min(firsts)) if firsts and lasts else float("nan")
        scored = int(sum(r.get("windows", 0) for r in reps.values()))
        # latency at half that load, on the same workers (a restarted pool would first replay the open
        # windows of every series from the committed offsets: 10,000 series x 140 readings)
        lat = _latency_pool(bootstrap, topic, pool, n_series, _half_load(readings, scored, stride, e2e_s), latency_s,
                            form, T, t0_ms, per_series, stride)
    finally:
        pool.stop()
    return {"scored": scored, "e2e_s": e2e_s, "mean_batch": first["windows"] / max(1.0, first["batches"]),
            "score_s": first["score_s"], "batches": int(first["batches"]), "threaded": None, "child_batches": None,
            "lat": lat, "workers": workers}


def _latency_pool(bootstrap: str, topic: str, pool: Any, n_series: int, rate: float, seconds: float, form: str,
                  chunk: int, t0_ms: float, per_series: int, stride: int) -> dict[str, Any]:
    """:func:`_latency` for a worker pool: the live feed, and percentiles from the difference of the
    workers' produce->score histograms before and after it."""
    before = _pool_totals(pool)
    fed = _feed_process(bootstrap, topic, n_series, rate, seconds, form, chunk, t0_ms, per_series, stride)
    time.sleep(1.5)
    after = _pool_totals(pool)
    diff = {le: n - before["e2e_buckets"].get(le, 0.0) for le, n in after["e2e_buckets"].items()}
    out: dict[str, Any] = {"latency_rate_readings_per_s": round(rate, 1),
                           "latency_windows": int(after["windows"] - before["windows"]),
                           "latency_from": "the workers' histograms (bucket bounds 50, 100, 250, 500 ms)",
                           **_fed(fed, rate)}
    p50, p99 = histogram_quantile(0.5, diff), histogram_quantile(0.99, diff)
    if p99 is not None:
        out["latency_p50_ms"] = round(p50 * 1000, 1)
        out["latency_p99_ms"] = round(p99 * 1000, 1)
    return out


def _case_result(run: dict[str, Any], *, detector: str, n_series: int, stride: int, form: str, readings: int,
                 n_rec: int, expected: int, produce_s: float, raw: float, raws: list, pipe: float, bundle_path: Path,
                 cfg: Any) -> dict[str, Any]:
    scored, e2e_s, mean_batch, score_s, lat = run["scored"], run["e2e_s"], run["mean_batch"], run["score_s"], run["lat"]
    model_rates = _model_only(bundle_path, int(round(mean_batch)), blas_threads=cfg.scoring.blas_threads)
    model_rate = float(np.median(model_rates))
    e2e_w = scored / max(e2e_s, 1e-9)
    rec_per_reading = n_rec / readings
    out = {
        "detector": detector, "series": n_series, "stride": stride, "window": T, "form": form,
        "workers": run["workers"],
        "readings": readings, "records": n_rec, "windows_expected": expected, "windows_scored": scored,
        "produce_s": round(produce_s, 2), "e2e_s": round(e2e_s, 2),
        "e2e_readings_per_s": round(readings / max(e2e_s, 1e-9), 1), "e2e_records_per_s": round(n_rec / max(e2e_s, 1e-9), 1),
        "e2e_windows_per_s": round(e2e_w, 1), "mean_batch": round(mean_batch, 1),
        "model_seconds_in_daemon": round(score_s, 2), "model_rate_in_daemon_windows_per_s": round(scored / max(score_s, 1e-9), 1),
        "model_only_windows_per_s": round(model_rate, 1),
        "model_only_passes_windows_per_s": [round(r, 1) for r in model_rates], "blas_threads": cfg.scoring.blas_threads,
        "batches": run["batches"], "batches_on_scoring_thread": run["threaded"],
        "batches_in_child_process": run["child_batches"],
        "raw_consume_records_per_s": round(raw, 1), "raw_consume_passes_records_per_s": [round(r, 1) for r in raws], "raw_consume_readings_per_s": round(raw / rec_per_reading, 1),
        "ratio_vs_model": round(e2e_w / model_rate, 3),
        "raw_pipe_records_per_s": round(pipe, 1),
        "ratio_vs_raw_consume": round((n_rec / max(e2e_s, 1e-9)) / raw, 3),
        "ratio_vs_raw_pipe": round((n_rec / max(e2e_s, 1e-9)) / pipe, 3),
        **lat,
    }
    out.update(_goals(out, score_s / max(e2e_s, 1e-9)))
    out["latency_goal_met"] = out.get("latency_p99_ms") is not None and out["latency_p99_ms"] <= 250.0
    if not out["latency_goal_met"] and out.get("latency_feeder_kept_rate") is False:
        out["latency_note"] = "feeder could not keep the asked rate: p99 includes its own queueing"
    return out


def _goals(c: dict[str, Any], model_share: float) -> dict[str, Any]:
    """Which goal of the daemon issue applies to a case, and whether it holds.

    The model is the bottleneck when it takes most of the daemon's time (goal: end-to-end windows/s
    >= 80 % of the model-only rate); a cheap detector on single-reading records is bound by Kafka
    (goal: >= 50 % of the raw consume rate). Chunk records are bound by decoding their JSON numbers,
    for which neither reference is the limit: the ratios are reported, no goal is claimed.
    """
    if model_share >= 0.5:
        return {"bottleneck": "model", "model_share_of_time": round(model_share, 3),
                "goal": "e2e windows/s >= 0.8 x model-only", "goal_met": c["ratio_vs_model"] >= 0.8}
    if c["form"] == "single":
        return {"bottleneck": "kafka", "model_share_of_time": round(model_share, 3),
                "goal": "e2e records/s >= 0.5 x raw consume", "goal_met": c["ratio_vs_raw_consume"] >= 0.5}
    return {"bottleneck": "decode", "model_share_of_time": round(model_share, 3), "goal": None, "goal_met": None}


def feed(bootstrap: str, topic: str, n_series: int, rate: float, seconds: float, form: str, chunk: int,
         t0_ms: float, per_series: int = 0, stride: int = 1, period_ms: float = 10.0) -> float:
    """Live readings at ``rate`` readings/s for ``seconds`` (run in its own process by :func:`_latency`):
    series ``s0``..``s{n-1}`` round robin (the order ``streams.replay`` sends), each continuing where
    its backlog of ``per_series + phase(i)`` readings from ``t0_ms`` ended (every ``period_ms``).
    Returns the readings/s it kept.

    A load generator, not a client to imitate: the records due at each tick go out as one
    :meth:`~streams.kafka.Sink.send_batch` per partition (a per-record ``send`` loop could not keep
    half the daemon's maximum with 10,000 series). Each record's Kafka timestamp, from which the
    latency is measured, is the time of its tick's ``send_batch`` call.
    """
    from streams.kafka import KafkaSettings, Sink
    from streams.records import encode_chunk

    step = 1 if form == "single" else max(1, int(chunk))
    sink = Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=5, batch_size=1024 * 1024)
    part_of = sink.keyed_partitioner(topic)
    keys = [f"s{i}".encode() for i in range(n_series)]
    parts = [part_of(k) for k in keys]
    names = [k.decode() for k in keys]
    wave = np.sin(2 * np.pi * np.arange(35 + step) / 35.0)
    values = [repr(float(x)) for x in wave[:35]]  # the signal repeats every 35 readings
    first = [per_series + phase(i, n_series, stride) for i in range(n_series)]  # each series' next reading
    per_rec = rate / step  # records/s
    start = time.monotonic()
    sent = 0
    try:
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = min(int(elapsed * per_rec) + 1, sent + max(1, int(0.02 * per_rec))) - sent
            if due <= 0:
                time.sleep(min(0.002, (sent + 1) / per_rec - elapsed))
                continue
            by_part: dict[int | None, list] = {}
            for r in range(sent, sent + due):
                j, i = divmod(r, n_series)  # round j of series i
                a = first[i] + j * step  # its reading number
                t = round(t0_ms + a * period_ms, 3)
                ts = int(t) if t.is_integer() else t
                if step == 1:
                    v = b'{"series":"%s","ts":%s,"value":%s}' % (names[i].encode(), str(ts).encode(),
                                                                   values[a % 35].encode())
                else:
                    v = encode_chunk(names[i], ts, period_ms, wave[a % 35:a % 35 + step])
                by_part.setdefault(parts[i], []).append((keys[i], v))
            for part, recs in by_part.items():
                sink.send_batch(topic, part, recs)
            sent += due
        sink.flush()
    finally:
        sink.close()
    return sent * step / (time.monotonic() - start)


def _feed_process(bootstrap: str, topic: str, n_series: int, rate: float, seconds: float, form: str, chunk: int,
                  t0_ms: float, per_series: int, stride: int) -> list[float]:
    """:func:`feed` in its own process; returns ``[readings/s it kept]`` (empty if it printed none)."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = ("from monitor.bench.streaming import feed; "
            f"print('FEED', feed({bootstrap!r}, {topic!r}, {n_series}, {rate!r}, {seconds!r}, {form!r}, {chunk}, "
            f"{float(t0_ms)!r}, {per_series}, {stride}))")
    done = subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=seconds * 4 + 60,
                          stdout=subprocess.PIPE, text=True)
    return [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("FEED ")]


def _latency(bootstrap: str, topic: str, d: Any, n_series: int, rate: float, seconds: float, form: str,
             chunk: int, t0_ms: float, per_series: int, stride: int) -> dict[str, Any]:
    """Feed live readings at ``rate`` readings/s from another process (:func:`feed`: every series goes
    on from the end of its backlog); take produce->score latencies (from each record's Kafka
    timestamp, set when it is sent)."""
    d.latencies.clear()
    before = d.stats["windows"]
    fed = _feed_process(bootstrap, topic, n_series, rate, seconds, form, chunk, t0_ms, per_series, stride)
    time.sleep(1.0)
    lat = np.asarray(d.latencies, dtype=float)
    out: dict[str, Any] = {"latency_rate_readings_per_s": round(rate, 1), "latency_windows": int(d.stats["windows"] - before)}
    out.update(_fed(fed, rate))
    if lat.size:
        out["latency_p50_ms"] = round(float(np.percentile(lat, 50)) * 1000, 1)
        out["latency_p99_ms"] = round(float(np.percentile(lat, 99)) * 1000, 1)
    return out


def cases(quick: bool, only: str | None = None) -> list[tuple[str, int, int, str, int]]:
    """``(detector, series, stride, form, workers)`` of each case: ``only`` as
    ``DET,SERIES,STRIDE,FORM[,WORKERS];...``, else the quick subset or the whole matrix (which adds
    the Kafka-bound stride-1 cases of many series with ``--workers 2``: one partition per series
    group, so a single series gains nothing from a second process).

    >>> cases(False, "vrae,100,10,chunk;robust-zscore,100,1,single,2")
    [('vrae', 100, 10, 'chunk', 1), ('robust-zscore', 100, 1, 'single', 2)]
    """
    if only:
        out = []
        for one in only.split(";"):
            det, n, s, f, *w = one.split(",")
            out.append((det, int(n), int(s), f, int(w[0]) if w else 1))
        return out
    if quick:
        return [("robust-zscore", 1, 10, "chunk", 1), ("robust-zscore", 100, 10, "single", 1),
                ("vrae", 100, 10, "chunk", 1)]
    out = []
    for n in (1, 100, 10_000):
        for s in (1, 10, 140):
            for f in ("single", "chunk"):
                out.append(("robust-zscore", n, s, f, 1))
    out += [("robust-zscore", 100, 1, "single", 2), ("robust-zscore", 10_000, 1, "single", 2)]
    out += [("vrae", 100, 10, "chunk", 1), ("vrae", 100, 1, "single", 1)]
    return out


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    logging.getLogger("anomon.daemon").setLevel(logging.WARNING)
    from streams.broker import EmbeddedBroker

    broker = None
    bs = args.bootstrap_servers
    if not bs:
        broker = EmbeddedBroker().start()
        bs = broker.bootstrap
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()},
                               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cases": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dets = ("robust-zscore",) if getattr(args, "peers", False) else ("robust-zscore", "vrae")
            bundles = {det: make_bench_bundle(Path(tmp) / det, det) for det in dets}
            if getattr(args, "peers", False):  # (measures the memory per idle series itself)
                from monitor.bench import streaming_backends

                streaming_backends.run(args, bs, bundles["robust-zscore"], results)
                return 0
            mem = memory_per_idle_series()
            results["memory_per_idle_series_bytes"] = mem
            idle = {k: v for k, v in mem.items() if not k.endswith(("_live", "_jitter"))}
            results["memory_goal"] = {"goal_bytes_per_idle_series": 1024, "idle_regular": idle,
                                      "met": all(v <= 1024 for v in idle.values())}
            print(f"memory per idle series (T=140): {results['memory_per_idle_series_bytes']}", flush=True)
            for det, n, s, f, w in cases(args.quick, args.case):
                budget = args.budget if det != "vrae" else min(args.budget, 60_000 if s == 1 else 200_000)
                try:
                    c = run_case(bs, bundles[det], det, n, s, f, budget, args.max_batch, args.latency_seconds,
                                 workers=w)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    log.exception("case failed")
                    c = {"detector": det, "series": n, "stride": s, "form": f, "workers": w, "error": repr(exc)}
                results["cases"].append(c)
                print(json.dumps(c), flush=True)
                if args.json_file:
                    Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json_file).write_text(json.dumps(results, indent=2))
    finally:
        if broker is not None:
            broker.stop()
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2))
    return 0


__all__ = ["add_parser", "run", "memory_per_idle_series", "make_bench_bundle", "fetch_settings", "threading"]
