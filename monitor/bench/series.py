"""``anomon bench series``: memory per series with 10,000 and 100,000 live series, and eviction after the TTL.

For each series count N the windower (the daemon's per-partition, per-series state) receives
``--readings`` readings for each of N series (spread over 4 partitions), so every series holds an
open, nearly complete window. Then the injected clock moves past ``window.idle_ttl_s`` and
``evict_idle`` runs. Measured per N, in one process:

* bytes per series by tracemalloc (what the windowing state allocates) and by RSS growth;
* series tracked before and after eviction, and the bytes given back (tracemalloc).

A baseline (the same readings decoded but not windowed) is not needed: the readings are built
before tracing starts. Results go to ``--json FILE``.

Example::

    anomon bench series --counts 10000 100000 --json bench-results/series.json
"""
from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("series", help="memory per series at 10k/100k series and eviction after the TTL",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000], help="series counts to measure")
    p.add_argument("--length", type=int, default=140, help="window length T")
    p.add_argument("--stride", type=int, default=140, help="window stride S")
    p.add_argument("--readings", type=int, default=None, help="readings per series (default T-1: an open window)")
    p.add_argument("--ttl", type=float, default=600.0, help="idle TTL in seconds (on the injected clock)")
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.set_defaults(func=run)


def measure(n: int, length: int, stride: int, readings: int | None, ttl: float) -> dict:
    """Window ``n`` series, then evict them all after the TTL; returns the figures."""
    import tracemalloc

    import numpy as np
    import psutil

    from streams.records import Readings
    from streams.windowing import ManualClock, Windower, WindowSpec

    k = readings if readings is not None else length - 1
    ts = np.arange(k, dtype=np.int64) * 1000
    vals = np.zeros((k, 1))
    batch = [Readings(f"series-{i:07d}", ts, vals) for i in range(n)]
    clock = ManualClock()
    w = Windower(WindowSpec(length=length, stride=stride, idle_ttl_s=ttl), clock=clock)
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    tracemalloc.start()
    a = tracemalloc.take_snapshot()
    for i, r in enumerate(batch):
        w.add(i % 4, i, r)
    b = tracemalloc.take_snapshot()
    rss1 = proc.memory_info().rss
    held = sum(x.size_diff for x in b.compare_to(a, "filename"))
    tracked = sum(len(m) for m in w._parts.values())
    clock.advance(ttl / 2)
    early = w.evict_idle()
    clock.advance(ttl)
    evicted = w.evict_idle()
    gc.collect()
    c = tracemalloc.take_snapshot()
    tracemalloc.stop()
    left = sum(x.size_diff for x in c.compare_to(a, "filename"))
    remaining = sum(len(m) for m in w._parts.values())
    return {
        "series": n,
        "window_length": length,
        "stride": stride,
        "readings_per_series": k,
        "bytes_per_series_tracemalloc": round(held / n, 1),
        "bytes_per_series_rss": round((rss1 - rss0) / n, 1),
        "windower_memory_bytes_estimate_per_series": round(w.memory_bytes() / n, 1) if remaining else None,
        "tracked_before_eviction": tracked,
        "evicted_before_ttl": early,
        "evicted_after_ttl": evicted,
        "tracked_after_eviction": remaining,
        "bytes_left_after_eviction_per_series": round(left / n, 1),
    }


def run(args: argparse.Namespace) -> int:
    results = {"benchmark": "series-memory-and-eviction", "cases": []}
    for n in args.counts:
        r = measure(n, args.length, args.stride, args.readings, args.ttl)
        results["cases"].append(r)
        print(
            f"{n:>7} series: {r['bytes_per_series_tracemalloc']:.0f} B/series (tracemalloc), "
            f"{r['bytes_per_series_rss']:.0f} B/series (RSS); evicted {r['evicted_before_ttl']} before the TTL, "
            f"{r['evicted_after_ttl']} after; {r['tracked_after_eviction']} left, "
            f"{r['bytes_left_after_eviction_per_series']:.0f} B/series still held",
            flush=True,
        )
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(results, indent=2))
    return 0
