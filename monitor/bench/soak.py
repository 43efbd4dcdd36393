"""``anomon bench soak --minutes N --json FILE``: a steady replay for N minutes against ``anomon run``.

The daemon runs as a separate process (``anomon run``), so its RSS is its own. Each second the
benchmark samples the daemon's RSS, its consumer lag (from ``/metrics``) and the produce->score
latency of the windows scored in that second (read back from the scores topic). Goals: flat RSS
(< 5% growth after the warm-up), bounded lag, p99 latency within the daemon's goal (250 ms).
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
    p.add_argument("--rate", type=float, default=20_000.0, help="readings per second (default 20000)")
    p.add_argument("--series", type=int, default=100, help="number of series (default 100)")
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--form", choices=["chunk", "single"], default="chunk")
    p.add_argument("--detector", default="robust-zscore", help="robust-zscore (default) or vrae")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the RSS growth figure")
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


def run(args: argparse.Namespace) -> int:
    import psutil

    from monitor.bench.streaming import make_bench_bundle
    from streams.broker import EmbeddedBroker, free_port
    from streams.kafka import KafkaConsumer, KafkaSettings, Sink, create_topics, topic_partitions
    from streams.replay import ReplaySeries, replay

    tmp = Path(tempfile.mkdtemp(prefix="anomon-soak-"))
    bundle = make_bench_bundle(tmp / "model", args.detector)
    broker = EmbeddedBroker().start()
    topic = f"soak-{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    create_topics(settings, {topic: 4})
    port = free_port()
    cfg = tmp / "anomon.toml"
    cfg.write_text(f"""[kafka]\nbootstrap_servers = "{broker.bootstrap}"\n[input]\ntopics = ["{topic}"]\n
group_id = "soak"\n[model]\ndir = "{bundle}"\n[window]\nstride = {args.stride}\n[scoring]\nthreshold = "dspot"\n
[output]\nscores_topic = "{topic}.scores"\nalerts_topic = "{topic}.alerts"\ndlq_topic = "{topic}.dlq"\n
[http]\nport = {port}\n""")
    log = open(tmp / "daemon.log", "wb")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-format", "json", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    stop = threading.Event()
    samples: list[dict[str, Any]] = []
    lat_lock = threading.Lock()
    lat_now: list[float] = []

    def read_scores() -> None:
        tps = []
        while not tps and not stop.is_set():
            tps = topic_partitions(settings, f"{topic}.scores")
            time.sleep(0.5)
        c = KafkaConsumer(**settings.to_kafka_python(), group_id=None, auto_offset_reset="earliest")
        c.assign(tps)
        try:
            while not stop.is_set():
                for recs in c.poll(timeout_ms=200).values():
                    with lat_lock:
                        for r in recs:
                            v = json.loads(r.value)
                            lat_now.append(v["scored_at"] - v["end_ts"])
        finally:
            c.close()

    n_per = int(args.rate * args.minutes * 60 / args.series) + 200
    t = np.arange(n_per)
    period = 1000.0 * args.series / args.rate  # event time advances like wall time
    series = [ReplaySeries(f"s{i}", np.sin(2 * np.pi * t / 35.0 + i), period) for i in range(args.series)]
    sink = Sink(settings, linger_ms=5)

    def produce() -> None:
        # event time starts now and advances like wall time; a chunk is sent when its last sample is due
        chunk = 10 if args.form == "chunk" else 1
        t0 = time.time() * 1000 - (chunk - 1) * period
        replay(series, lambda tp, v, k, h: sink.send(tp, v, key=k, headers=h), topic, rate=args.rate, form=args.form,
               chunk=chunk, t0_ms=t0, duration_s=args.minutes * 60, stop=stop.is_set)
        sink.flush()

    reader = threading.Thread(target=read_scores, daemon=True)
    reader.start()
    p = psutil.Process(proc.pid)
    time.sleep(3)
    prod = threading.Thread(target=produce, daemon=True)
    start = time.monotonic()
    prod.start()
    try:
        while prod.is_alive():
            time.sleep(1.0)
            try:
                rss = p.memory_info().rss
                m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except Exception:  # noqa: BLE001
                continue
            with lat_lock:
                lat = list(lat_now)
                lat_now.clear()
            samples.append({"t": round(time.monotonic() - start, 1), "rss_mb": round(rss / 2**20, 2),
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
        broker.stop()
        log.close()
    warm = [s for s in samples if s["t"] >= args.warmup] or samples
    rss0, rss1 = warm[0]["rss_mb"], warm[-1]["rss_mb"]
    result = {"minutes": args.minutes, "rate": args.rate, "series": args.series, "stride": args.stride,
              "form": args.form, "detector": args.detector, "rss_mb_after_warmup": rss0, "rss_mb_end": rss1,
              "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2), "max_lag": max(s["lag"] for s in warm),
              "final_lag": warm[-1]["lag"], "daemon_exit": proc.returncode, "samples": samples,
              "note": "latency = scored_at - event time of the window's last reading (the replay's event time follows "
                      "wall time); p99 per second in samples"}
    lat_all = [x["p99_event_to_score_ms"] for x in warm if x["p99_event_to_score_ms"] is not None]
    if lat_all:
        result["p99_latency_ms_median_of_seconds"] = float(np.median(lat_all))
        result["p99_latency_ms_worst_second"] = float(max(lat_all))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(result, indent=2))
    return 0
