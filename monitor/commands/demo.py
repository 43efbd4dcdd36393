"""``anomon demo``: embedded broker + trained model + replayed ECG + the daemon, with a live view and a report."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on this machine: embedded Kafka, a trained VRAE, replayed MIT-BIH ECG, live view",
        description="Starts the embedded broker, trains (first use, then cached) a small VRAE on normal ECG of "
        "MIT-BIH record 106, replays the rest of the record (normal and ventricular beats) as live 360 Hz streams, "
        "scores them with `anomon run` in-process, shows a live terminal view and finally the precision, recall "
        "and F1 of the alerts against the beat labels, with an HTML report.",
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of replay (default 60); the demo then stops")
    p.add_argument("--series", type=int, default=2, help="ECG streams replayed at once (phase-shifted copies)")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed, times real time (default 10)")
    p.add_argument("--form", choices=["chunk", "single"], default="chunk", help="message form of the replay")
    p.add_argument("--model-dir", default=None, help="model bundle to use or create (default ~/.cache/anomon/models/...)")
    p.add_argument("--detector", default="vrae", help="detector to train when no model is cached (default vrae)")
    p.add_argument("--retrain", action="store_true", help="train again even when a cached model exists")
    p.add_argument("--threshold", choices=["calibrated", "spot", "dspot"], default="calibrated",
                   help="threshold mode (default: calibrated at 1%% FPR on held-out normal ECG)")
    p.add_argument("--out", default="runs/demo", help="directory of report.html and metrics.json")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from monitor.demo import run_demo

    # the live view is the output: keep the library chatter out of it
    for name in ("anomon.daemon", "anomon.runner", "streams", "monitor", "kafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    s = run_demo(args.duration, model_dir=args.model_dir, series=args.series, speed=args.speed, form=args.form,
                 json_path=args.json, out_dir=args.out, detector=args.detector, retrain=args.retrain,
                 threshold=args.threshold)
    return 0 if s.get("windows_lost", 1) == 0 else 1
