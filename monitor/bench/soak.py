"""``anomon bench soak --minutes N --json FILE``: a steady replay for N minutes against ``anomon run``.

The daemon runs as a separate process (``anomon run``), so its RSS is its own.

1. **Calibration** (``--rate auto``, the default): the generator replays as fast as it can for
   ``--calibration-seconds`` (event time in the past) while the daemon scores; the daemon's rate
   meanwhile, with the generator, the broker and the reader sharing the CPU as in the soak, is its
   maximum (``/metrics``). The backlog is drained before the soak starts.
2. **Soak**: a live replay at ``--load`` (default 0.5, the daemon issue's "half the maximum
   load") times that rate, or at an explicit ``--rate``, with event time following wall time.

Each second the benchmark samples the daemon's RSS, its consumer lag (from ``/metrics``) and the
latency (scored_at - event time of the window's last reading) of every window scored, read back
from the scores topic. Goals: flat RSS (< 5% growth after the warm-up), bounded lag, p99 latency
within the daemon's goal (250 ms), over all windows after the warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="steady replay for N minutes: RSS, lag and latency every second",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.add_argument("--rate", default="auto",
                   help="readings per second, or 'auto' (default): --load times the calibrated maximum")
    p.add_argument("--load", type=float, default=0.5, help="fraction of the calibrated maximum (with --rate auto)")
    p.add_argument("--calibration-seconds", type=float, default=20.0,
                   help="seconds of full-speed replay that calibrate the maximum rate (default 20)")
    p.add_argument("--series", type=int, default=100, help="number of series (default 100)")
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--form", choices=["chunk", "single"], default="chunk")
    p.add_argument("--detector", default="robust-zscore", help="robust-zscore (default) or vrae")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the RSS growth figure")
    p.add_argument("--bootstrap-servers", default=None,
                   help="soak against this Kafka instead of the embedded broker (its topics are created)")
    p.add_argument("--reader-interval", type=float, default=1.0,
                   help="seconds between the polls of the scores topic by the latency reader (default 1)")
    # Defaults fitted to the embedded broker: Tansu 0.6 (memory storage) lists every batch stored in a
    # partition on each fetch that returns data, so its CPU grows with the number of stored batches;
    # fewer partitions, a longer linger and batches that end by linger rather than by size (1 MiB) make
    # fewer, larger batches (see the README's soak section).
    p.add_argument("--partitions", type=int, default=1, help="partitions of the input topic (default 1)")
    p.add_argument("--linger-ms", type=int, default=50,
                   help="producer linger of the load generator (default 50)")
    p.add_argument("--daemon-linger-ms", type=int, default=20,
                   help="the daemon's output.linger_ms (default 20; the daemon's own default is 5)")
    p.set_defaults(func=run)


def _metric(text: str, name: str) -> float:
    tot = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            try:
                tot += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return tot


def _rate_arg(v: str) -> float | None:
    if str(v).strip().lower() == "auto":
        return None
    try:
        r = float(v)
    except ValueError:
        raise SystemExit(f"anomon bench soak: --rate: expected a number of readings per second or 'auto', got {v!r}")
    if not r > 0:
        raise SystemExit(f"anomon bench soak: --rate: must be positive, got {v!r}")
    return r


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()


def _sine_series(n_series: int, n: int, period_ms: float) -> list[Any]:
    """The soak's series ``s0..``: ``n`` samples of a phase-shifted sine each, ``period_ms`` apart."""
    from streams.replay import ReplaySeries

    t = np.arange(n)
    return [ReplaySeries(f"s{i}", np.sin(2 * np.pi * t / 35.0 + i), period_ms) for i in range(n_series)]


def _calibrate(args: argparse.Namespace, port: int, proc: Any, send: Any, sink: Any, topic: str, chunk: int,
               tmp: Path) -> tuple[float, dict[str, Any]]:
    """The daemon's maximum rate on this machine, measured as the soak will load it.

    The generator replays as fast as it can for ``--calibration-seconds`` (event time an hour in the
    past, so the live phase continues every series in order); the broker, the generator and the
    daemon share the CPU as they will during the soak. The daemon's scoring rate over the last
    three quarters of that phase, while its lag grows, is its maximum. Then the backlog is drained.
    (A backlog drained with nothing else running overstates it: on 2 cores, 83 k readings/s drained
    alone, but 0.5 x that live gave a growing lag and a p99 of 2.3 s.)
    """
    def scrape() -> tuple[float, float]:
        m = _scrape(port)
        return _metric(m, "anomon_windows_scored_total"), _metric(m, "anomon_consumer_lag")

    deadline = time.monotonic() + 120
    while True:  # up and owning its partitions
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                break
        except Exception:  # noqa: BLE001 - not yet
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"anomon bench soak: the daemon did not become ready (see {tmp / 'daemon.log'})")
        time.sleep(0.3)
    from streams.replay import replay

    secs = args.calibration_seconds
    gen = _sine_series(args.series, 20_000, 1.0)
    th = threading.Thread(target=replay, args=(gen, send, topic), daemon=True,
                          kwargs={"rate": None, "form": args.form, "chunk": chunk, "loop": True,
                                  "t0_ms": time.time() * 1000 - 3_600_000, "duration_s": secs})
    t0 = time.monotonic()
    th.start()
    time.sleep(secs / 4)
    w1, _ = scrape()
    ta = time.monotonic()
    th.join()
    w2, lag_end = scrape()
    tb = time.monotonic()
    sink.flush()
    max_rate = (w2 - w1) * args.stride / max(tb - ta, 1e-9)
    deadline = time.monotonic() + 600
    while scrape()[1] > 0 and time.monotonic() < deadline:  # drain the backlog before the soak
        time.sleep(0.5)
    return args.load * max_rate, {
        "method": "generator at full speed for calibration_seconds, daemon rate over the last 3/4 of it",
        "calibration_seconds": secs, "windows_scored_in_window": int(w2 - w1), "lag_at_end": int(lag_end),
        "generator_saturates_daemon": lag_end > 1000, "drained_after_s": round(time.monotonic() - t0, 1),
        "max_readings_per_s": round(max_rate, 1), "load": args.load}


def run(args: argparse.Namespace) -> int:
    import psutil

    from monitor.bench.streaming import make_bench_bundle
    from streams.broker import EmbeddedBroker, free_port
    from streams.kafka import KafkaConsumer, KafkaSettings, Sink, create_topics, topic_partitions
    from streams.replay import replay

    fixed_rate = _rate_arg(args.rate)
    if not 0 < args.load <= 1.5:
        raise SystemExit(f"anomon bench soak: --load: expected a fraction in (0, 1.5], got {args.load}")
    tmp = Path(tempfile.mkdtemp(prefix="anomon-soak-"))
    bundle = make_bench_bundle(tmp / "model", args.detector)
    broker = None if args.bootstrap_servers else EmbeddedBroker().start()
    bootstrap = args.bootstrap_servers or broker.bootstrap
    topic = f"soak-{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(settings, {topic: args.partitions})
    port = free_port()
    cfg = tmp / "anomon.toml"
    cfg.write_text(f"""[kafka]\nbootstrap_servers = "{bootstrap}"\n[input]\ntopics = ["{topic}"]\n
group_id = "soak"\n[model]\ndir = "{bundle}"\n[window]\nstride = {args.stride}\n[scoring]\nthreshold = "dspot"\n
[output]\nscores_topic = "{topic}.scores"\nalerts_topic = "{topic}.alerts"\ndlq_topic = "{topic}.dlq"\n
linger_ms = {args.daemon_linger_ms}\n[http]\nport = {port}\n""")
    chunk = 10 if args.form == "chunk" else 1
    sink = Sink(settings, linger_ms=args.linger_ms, batch_size=1024 * 1024)  # batches end by linger, not size
    send = lambda tp, v, k, h: sink.send(tp, v, key=k, headers=h)  # noqa: E731
    calibration: dict[str, Any] = {}
    log = open(tmp / "daemon.log", "wb")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-format", "json", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    stop = threading.Event()
    samples: list[dict[str, Any]] = []
    lat_lock = threading.Lock()
    lat_now: list[float] = []
    all_lat: list[float] = []
    reading = threading.Event()  # set once the reader is at the end of the scores topic

    def read_scores() -> None:
        tps = []
        while not tps and not stop.is_set():
            tps = topic_partitions(settings, f"{topic}.scores")
            time.sleep(0.5)
        c = KafkaConsumer(**settings.to_kafka_python(), group_id=None, auto_offset_reset="latest",
                          max_poll_records=1_000_000)
        c.assign(tps)
        c.seek_to_end(*tps)  # only the live phase (Tansu's end is the last batch start: a few old ones pass)
        for tp in tps:  # (the seek takes effect here, not at the first poll)
            c.position(tp)
        t_live = time.time() * 1000
        reading.set()
        try:
            # One fetch a second is enough: the latency is stamped by the daemon (scored_at), not read
            # here. Fetching as fast as the scores arrive would load the embedded broker, whose every
            # fetch lists all the batches stored in the partition (Tansu 0.6, memory storage).
            while not stop.wait(args.reader_interval):
                for recs in c.poll(timeout_ms=0).values():
                    with lat_lock:
                        for r in recs:
                            v = json.loads(r.value)
                            if v["end_ts"] >= t_live:
                                lat_now.append(v["scored_at"] - v["end_ts"])
        finally:
            c.close()

    def produce(series: list[Any], period: float) -> None:
        # event time starts now and advances like wall time; a chunk is sent when its last sample is due
        t0 = time.time() * 1000 - (chunk - 1) * period
        replay(series, send, topic, rate=rate, form=args.form, chunk=chunk, t0_ms=t0, duration_s=args.minutes * 60,
               stop=stop.is_set)
        sink.flush()

    try:  # from here on, the finally stops the daemon, the producer and the broker whatever happens
        if fixed_rate is None:
            rate, calibration = _calibrate(args, port, proc, send, sink, topic, chunk, tmp)
            print(f"calibrated: with the load generator running, the daemon scores at most "
                  f"{calibration['max_readings_per_s']:,.0f} readings/s; soaking at {args.load:g} x = "
                  f"{rate:,.0f} readings/s", flush=True)
        else:
            rate = fixed_rate
        period = 1000.0 * args.series / rate  # event time advances like wall time
        series = _sine_series(args.series, int(rate * args.minutes * 60 / args.series) + 200, period)
        reader = threading.Thread(target=read_scores, daemon=True)
        reader.start()
        p = psutil.Process(proc.pid)
        bp = psutil.Process(broker.pid) if broker is not None else None
        p.cpu_percent()  # the first call starts the CPU counters; each sample reads since the last
        if bp:
            bp.cpu_percent()
        time.sleep(3)
        # the load starts when the reader is in place (the daemon creates the scores topic as it starts,
        # which on a loaded machine may take longer than the soak itself)
        if not reading.wait(120):
            raise SystemExit("anomon bench soak: the daemon's scores topic did not appear within 120 s of its "
                             f"start (see {tmp / 'daemon.log'})")
        prod = threading.Thread(target=produce, args=(series, period), daemon=True)
        start = time.monotonic()
        prod.start()
        while prod.is_alive():
            time.sleep(1.0)
            try:
                rss = p.memory_info().rss
                m = _scrape(port)
            except Exception:  # noqa: BLE001
                continue
            with lat_lock:
                lat = list(lat_now)
                lat_now.clear()
            t_s = round(time.monotonic() - start, 1)
            if t_s >= args.warmup:
                all_lat.extend(lat)
            samples.append({"t": t_s, "rss_mb": round(rss / 2**20, 2),
                            "daemon_cpu_pct": p.cpu_percent(),
                            "broker_cpu_pct": bp.cpu_percent() if bp else None,
                            "broker_rss_mb": round(bp.memory_info().rss / 2**20, 1) if bp else None,
                            "lag": _metric(m, "anomon_consumer_lag"),
                            "windows_scored": _metric(m, "anomon_windows_scored_total"),
                            "scored_in_s": len(lat),
                            "p99_event_to_score_ms": round(float(np.percentile(lat, 99)), 1) if lat else None})
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        sink.close()
        if broker is not None:
            broker.stop()
        log.close()
    warm = [s for s in samples if s["t"] >= args.warmup] or samples
    rss0, rss1 = warm[0]["rss_mb"], warm[-1]["rss_mb"]
    result = {"minutes": args.minutes, "rate": round(rate, 1), "series": args.series, "stride": args.stride,
              "form": args.form, "chunk": chunk, "detector": args.detector, "linger_ms": args.linger_ms,
              "daemon_linger_ms": args.daemon_linger_ms, "partitions": args.partitions,
              "reader_interval_s": args.reader_interval, "calibration": calibration,
              "warmup_s": args.warmup, "rss_mb_after_warmup": rss0, "rss_mb_end": rss1,
              "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2), "max_lag": max(s["lag"] for s in warm),
              "final_lag": warm[-1]["lag"], "daemon_exit": proc.returncode, "samples": samples,
              "note": "latency = scored_at - event time of the window's last reading (the replay's event time follows "
                      "wall time); p50/p99 over every window scored after the warm-up; p99 per second in samples"}
    if all_lat:
        result["windows_after_warmup"] = len(all_lat)
        result["latency_ms_p50"] = round(float(np.percentile(all_lat, 50)), 1)
        result["latency_ms_p99"] = round(float(np.percentile(all_lat, 99)), 1)
    for who in ("broker", "daemon"):  # CPU at the start and at the end: the embedded broker's grows with its log
        cpu = [x[f"{who}_cpu_pct"] for x in samples if x[f"{who}_cpu_pct"] is not None]
        if len(cpu) >= 20:
            k = max(10, len(cpu) // 10)
            result[f"{who}_cpu_pct_first"] = float(np.median(cpu[:k]))
            result[f"{who}_cpu_pct_last"] = float(np.median(cpu[-k:]))
    per_s = [x["p99_event_to_score_ms"] for x in warm if x["p99_event_to_score_ms"] is not None]
    if per_s:
        result["p99_latency_ms_median_of_seconds"] = float(np.median(per_s))
        result["p99_latency_ms_worst_second"] = float(max(per_s))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(result, indent=2))
    return 0
