"""``anomon replay DATASET --topic T --rate R [--series N]``: produce a dataset as live streams."""
from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger("anomon.replay")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a dataset (mitdb[:RECORD], ecg5000, kpi, yahoo, ucr-anomaly, or a CSV) into a Kafka topic",
        description="Produce a labelled dataset as live streams of readings: MIT-BIH as continuous 360 Hz ECG "
        "(beat labels in headers), ECG5000 beats concatenated into per-patient series, the KPI/Yahoo/UCR-anomaly "
        "series, or any CSV/Parquet through the generic loader. Records are keyed by series.",
    )
    p.add_argument("dataset", help="mitdb[:RECORD] | ecg5000 | kpi | yahoo | ucr-anomaly | PATH.csv")
    p.add_argument("--topic", required=True, help="topic to produce to")
    p.add_argument("--rate", type=float, default=None, help="readings per second over all series (default: as fast as possible)")
    p.add_argument("--series", type=int, default=None, help="number of series (copies, phase-shifted, when more than the dataset has)")
    p.add_argument("--form", choices=["single", "chunk"], default="chunk", help="one reading per record, or chunks")
    p.add_argument("--chunk", type=int, default=36, help="readings per chunk record (default 36 = 0.1 s of MIT-BIH)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--loop", action="store_true", help="start again at the end (until --duration)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka (default: ANOMON_KAFKA__BOOTSTRAP_SERVERS, else 127.0.0.1:9092)")
    p.add_argument("--connect-timeout", type=float, default=15.0, metavar="S",
                   help="wait this long for the broker to answer at start, then exit with code 3 (default 15)")
    p.add_argument("--partitions", type=int, default=4, help="partitions when the topic is created")
    p.add_argument("--data-dir", default=None, help="data directory (default: ANOMON_DATA or ../shared/data)")
    p.add_argument("--csv-timestamp", default=None, help="CSV: timestamp column")
    p.add_argument("--csv-label", default=None, help="CSV: 0/1 label column")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from monitor.errors import UserError
    from streams.kafka import KafkaSettings, Sink, create_topics
    from streams.replay import load_replay_series, replay

    bs = args.bootstrap_servers or os.environ.get("ANOMON_KAFKA__BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
    try:
        series = load_replay_series(args.dataset, args.series, args.data_dir, csv_timestamp=args.csv_timestamp,
                                    csv_label=args.csv_label)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    settings = KafkaSettings(bootstrap_servers=bs)
    from monitor.preflight import wait_for_broker

    wait_for_broker(bs, args.connect_timeout, setting="--bootstrap-servers (or ANOMON_KAFKA__BOOTSTRAP_SERVERS)")
    create_topics(settings, {args.topic: args.partitions})
    n_read = sum(len(s) for s in series)
    print(f"replaying {len(series)} series ({n_read} readings) of {args.dataset} to {args.topic} on {bs}"
          f" at {args.rate or 'max'} readings/s, {args.form} form")
    t = time.monotonic()
    with Sink(settings, linger_ms=10) as sink:
        sent = replay(series, lambda tp, v, k, h: sink.send(tp, v, key=k, headers=h), args.topic, rate=args.rate,
                      form=args.form, chunk=args.chunk, duration_s=args.duration, loop=args.loop)
    dt = time.monotonic() - t
    print(f"sent {sent} records in {dt:.1f}s ({sent / max(dt, 1e-9):.0f} records/s)")
    return 0
