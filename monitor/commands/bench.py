"""``anomon bench``: benchmarks (``streaming``, ``soak``; ``vrae`` when its module is present)."""
from __future__ import annotations

import argparse
import importlib

#: benchmark modules, each exposing add_parser(sub); missing ones are skipped
BENCH_MODULES = ["monitor.bench.streaming", "monitor.bench.soak", "monitor.bench.series", "monitor.bench.vrae",
                 "monitor.bench.neighbours", "monitor.bench.streams", "monitor.bench.retrain"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: streaming (end-to-end rates and latency), soak, series (memory, eviction), vrae",
                       description="Benchmarks (not tests): each writes its results with --json FILE.")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in BENCH_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.add_parser(bsub)
