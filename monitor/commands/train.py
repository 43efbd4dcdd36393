"""``anomon train DETECTOR``: fit a detector on your data (a file, a folder, a topic) or a protocol's
training split, and write a model bundle that ``anomon run --model-dir DIR`` serves.

Examples::

    anomon train lstm-ae --data readings.csv --time-col ts --value-cols a,b,c --window 64 --stride 8 --out model/
    anomon train dense-ae --data sensors/ --window 32 --stride 4 --normalize per-series --fpr 0.005 --out model/
    anomon train vrae --protocol ecg5000-semi --seed 0 --out runs/vrae-s0
    anomon train vrae --dataset ecg200 --data-dir ../shared/data --out runs/vrae-ecg200
    anomon train vrae --wfdb ~/physionet/incartdb --record I01 --out runs/vrae-i01   # any WFDB folder

``--out`` receives a bundle: ``config.json`` + ``weights.safetensors`` (the detector), ``anomon.json``
(window, normalisation, calibrated thresholds), ``train.json`` (data, spans, counts, thresholds, metrics
on labels, training time) and, from data, ``report.html``. From data, the last ``--calibration-fraction``
of each series (at least one window) is held back to calibrate the thresholds at ``--fpr``; windows
touching a labelled anomaly (``--label-col``) are kept out of training and calibration.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from monitor.errors import UserError

log = logging.getLogger("anomon.train")

TRAIN_FILE = "train.json"


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values parsed as JSON when they are JSON, else kept as strings.

    >>> parse_params(["hidden_size=32", "attention=false", "device=cpu"])
    {'hidden_size': 32, 'attention': False, 'device': 'cpu'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def add_file_args(p: argparse.ArgumentParser) -> None:
    """Arguments of training from a file, folder or topic (``anomon train``, ``anomon retrain``)."""
    g = p.add_argument_group("your data")
    g.add_argument("--data", metavar="PATH", help="CSV/TSV/Parquet, NAB-style CSV (timestamp,value), .npy/.npz, a "
                   "WFDB record (.hea), or a folder of these (one series each, named after the file)")
    g.add_argument("--time-col", help="time column (default: a column named timestamp, datetime, time or ts; "
                   "else the row order)")
    g.add_argument("--value-cols", help="value columns, comma-separated (default: every other column)")
    g.add_argument("--series-col", help="column holding the series id (default: the file name without suffix)")
    g.add_argument("--label-col", help="0/1 column of labelled anomalies (kept out of training; metrics in train.json)")
    g.add_argument("--sort", action="store_true", help="sort rows by time instead of rejecting unsorted files")
    g.add_argument("--dedupe", action="store_true", help="keep the last reading of a repeated timestamp instead "
                   "of rejecting the file")
    g.add_argument("--window", type=int, help="window length in readings")
    g.add_argument("--stride", type=int, help="window stride in readings (default: window / 4)")
    g.add_argument("--normalize", default="per-series", choices=["per-series", "global", "none"],
                   help="robust scaling learned per series (stored per series in the bundle; default), one "
                   "scaling for all series, or none")
    g.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate of the calibrated "
                   "thresholds (default 0.01)")
    g.add_argument("--calibration-fraction", type=float, default=0.2,
                   help="held-back tail of each series that calibrates the thresholds (default 0.2)")
    g.add_argument("--name", help="model name in anomon.json, score records and metrics (default: the detector)")
    g.add_argument("--version", help="model version (default: a digest of the weights)")
    g.add_argument("--alert-component", help="score component that raises alerts (default: the detector's first)")
    t = p.add_argument_group("your topic (the daemon's decoder and windower; --config gives its record format)")
    t.add_argument("--from-topic", metavar="TOPIC", help="train on this topic's history (comma-separated for several)")
    t.add_argument("--since", metavar="AGE|TIME", help="from this long ago (90s, 15m, 6h, 1d) or this ISO time")
    t.add_argument("--last", type=int, metavar="N", help="the last N records of each partition")
    t.add_argument("--exclude-flagged-by", metavar="DIR", help="leave out the windows this model bundle flags "
                   "(the model now serving)")
    from monitor.commands.daemon_config import add_config_args

    add_config_args(t)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", help="named protocol: ecg5000-semi, ecg5000-unsup, ecg200-semi, mitdb106-semi")
    p.add_argument("--dataset", help="dataset without a named protocol (its semi-supervised split): "
                   "ecg200, ecgfivedays, twoleadecg, mitdb-106, mitdb-NNN ...")
    p.add_argument("--data-dir", help="data directory (default: ANOMON_DATA, else ../shared/data)")
    p.add_argument("--limit", type=int, default=None, help="use at most N windows per split (smoke tests)")
    g = p.add_argument_group("ECG records (beat windows around annotated R peaks)")
    g.add_argument("--wfdb", metavar="DIR", help="a folder of WFDB records from any database (records named by its "
                   "RECORDS file or its *.hea headers); pick one with --record NAME, or --dataset mitdb-NNN for "
                   "MIT-BIH's rules")
    g.add_argument("--record", metavar="NAME", help="the record of --wfdb DIR (default: the folder's only record)")
    g.add_argument("--annotator", default="atr", metavar="EXT", help="annotation file extension of the beat "
                   "annotations (default atr)")
    g.add_argument("--fs", type=float, metavar="HZ", help="rate the beat windows are cut at; a record sampled at "
                   "another rate (read from its header) is resampled to it, with a warning (default: the model's "
                   "rate from its train.json, else 360 Hz)")


def load_data(args: argparse.Namespace, protocol: str | None = None, dataset: str | None = None,
              limit: int | None = None, fs: float | None = None, wfdb: str | None = None, record: str | None = None):
    """The protocol data of the data arguments (``--protocol``/``--dataset``/``--wfdb`` ...)."""
    from monitor.protocols.ecg import load_protocol

    return load_protocol(protocol, dataset, args.data_dir, limit, wfdb=wfdb or getattr(args, "wfdb", None),
                         record=record or getattr(args, "record", None), fs=fs if fs is not None else getattr(args, "fs", None),
                         annotator=getattr(args, "annotator", None) or "atr")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="detector hyperparameter (repeatable)")
    p.add_argument("--epochs", type=int, help="shorthand for --param epochs=N")
    p.add_argument("--device", help="shorthand for --param device=... (auto, cpu, cuda)")
    p.add_argument("--threads", type=int, help="CPU threads: n_threads of the detectors that take it (knn, lof, "
                   "vrae, ...), torch's thread count for the other torch detectors; the rest run on one thread "
                   "and ignore it, with a note")


def model_params(args: argparse.Namespace, detector: str | None = None) -> dict[str, Any]:
    """The detector's hyperparameters from ``--param`` and the shorthands (``--epochs``, ``--device``, ``--threads``).

    ``--threads N`` becomes ``n_threads`` where ``detector`` (default ``args.detector``) takes it; a torch
    detector without ``n_threads`` gets torch's thread count set instead; any other detector ignores it,
    with a note in the log (``--param n_threads=N`` stays an error where there is no such parameter).
    """
    params = parse_params(args.param)
    for attr, key in (("epochs", "epochs"), ("device", "device")):
        if getattr(args, attr, None) is not None:
            params[key] = getattr(args, attr)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: {threads} must be at least 1")
        name = detector or getattr(args, "detector", None)
        use = _thread_use(name)
        if use == "param":
            params["n_threads"] = threads
        elif use == "torch":
            import torch

            torch.set_num_threads(int(threads))
        else:
            log.info("note: %s runs on one thread and ignores --threads %d", name, threads)
    return params


def _thread_use(name: str | None) -> str:
    """How ``--threads`` reaches detector ``name``: ``"param"`` (n_threads), ``"torch"`` or ``"none"``."""
    from models import DetectorError, get_detector

    if name is None:
        return "param"
    try:
        cls = get_detector(name)
    except DetectorError:
        return "param"  # an unknown detector: its own error comes where it is made
    if "n_threads" in cls._param_names():
        return "param"
    from models.torch_base import TorchDetector

    return "torch" if issubclass(cls, TorchDetector) else "none"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on a protocol's training data and save it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("detector", help="registered detector name (see `anomon detectors`), e.g. vrae, lstm-ae")
    add_file_args(p)
    add_data_args(p)
    add_model_args(p)
    p.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    p.add_argument("--out", required=True, help="output directory of the model bundle")
    p.set_defaults(func=run)


def train_one(detector: str, data, seed: int, params: dict[str, Any], out: str | Path | None = None):
    """Fit ``detector`` on ``data.X_train`` and compute the protocol thresholds; save when ``out``.

    Returns ``(detector, info)``.
    """
    from models import DetectorError
    from monitor.protocols.ecg import declared_component, make_detector, prepare, thresholds_for

    try:
        det = make_detector(detector, seed, params, data.protocol)
    except DetectorError as exc:
        raise UserError(str(exc)) from None
    log.info("training %s on %s (train %d windows of %s), seed %d", detector, data.protocol, len(data.X_train),
             data.X_train.shape[1:], seed)
    t0 = time.perf_counter()
    det.fit(prepare(det, data.X_train))
    fit_s = time.perf_counter() - t0
    thr = thresholds_for(det, data)
    info = {
        "detector": detector,
        "protocol": data.protocol,
        "dataset": data.dataset,
        "seed": seed,
        "params": det.get_params(),
        "sizes": data.sizes(),
        "threshold_rule": f"{100 * (1 - data.fpr):g}th percentile of {data.threshold_on} scores; anomalous when score > threshold",
        "thresholds": thr,
        "declared_component": declared_component(type(det), data.protocol),
        "fit_seconds": round(fit_s, 3),
        "epochs_run": getattr(det, "n_epochs_", None),
        "limit": data.info.get("limit"),
    }
    # record protocols: the rate and window the model was trained at (what evaluation resamples to)
    for k in ("fs", "window_s", "decimate", "record", "record_fs", "wfdb", "annotator", "resampled", "warnings"):
        if k in data.info:
            info[k] = data.info[k]
    if out is not None:
        out = Path(out)
        det.save(out)
        (out / TRAIN_FILE).write_text(json.dumps(info, indent=2))
        log.info("saved %s to %s (fit %.1f s)", detector, out, fit_s)
    return det, info


def read_options(args: argparse.Namespace):
    from monitor.training import ReadOptions

    cols = [c.strip() for c in args.value_cols.split(",") if c.strip()] if args.value_cols else None
    return ReadOptions(time_col=args.time_col, value_cols=cols, series_col=args.series_col, label_col=args.label_col,
                       sort=args.sort, dedupe=args.dedupe)


def train_options(args: argparse.Namespace, window: int):
    from monitor.training import TrainOptions

    if not 0 < args.fpr < 0.5:
        raise UserError(f"--fpr: {args.fpr:g} must lie in (0, 0.5)")
    if not 0 < args.calibration_fraction < 1:
        raise UserError(f"--calibration-fraction: {args.calibration_fraction:g} must lie in (0, 1)")
    stride = args.stride or max(1, window // 4)
    if stride < 1:
        raise UserError(f"--stride: {stride} must be at least 1")
    return TrainOptions(window=window, stride=stride, normalize=args.normalize, fpr=args.fpr,
                        calibration_fraction=args.calibration_fraction, seed=args.seed, params=model_params(args),
                        name=args.name, version=args.version, alert_component=args.alert_component)


def summary(info: dict[str, Any], out: str) -> str:
    """What ``anomon train`` prints: the bundle, its sizes, thresholds and labelled metrics."""
    keep = {k: info[k] for k in ("detector", "name", "version", "window", "normalize", "fpr", "counts", "thresholds",
                                 "calibration_fpr", "fit_seconds") if k in info}
    if info.get("labels"):
        keep["labels"] = info["labels"]["metrics"]
    if info.get("data", {}).get("read"):
        keep["read"] = info["data"]["read"]
    return json.dumps(keep, indent=2) + f"\nbundle written to {out}: serve it with `anomon run --model-dir {out}`"


def run_data(args: argparse.Namespace) -> int:
    from monitor.training import read_series, split_series, train_bundle

    if not args.window or args.window < 2:
        raise UserError("--window: give the window length in readings (at least 2), e.g. --window 64")
    opts = train_options(args, args.window)
    series, counts = read_series(args.data, read_options(args))
    split = split_series(series, opts.window, opts.stride, opts.calibration_fraction)
    info = train_bundle(args.detector, split, opts, args.out, source={"path": str(args.data), "read": counts,
                                                                     "columns": series[0].columns if series else []})
    print(summary(info, args.out))
    return 0


def run_topic(args: argparse.Namespace) -> int:
    """``--from-topic``: the topic's history through the daemon's decoder and windower (monitor/topic_training.py)."""
    from monitor.commands.daemon_config import load_daemon_config
    from monitor.commands.dlq import _since_ms
    from monitor.topic_training import drop_flagged, read_topic_windows, split_windows
    from monitor.training import train_bundle

    if not args.window or args.window < 2:
        raise UserError("--window: give the window length in readings (at least 2), e.g. --window 64")
    if args.since and args.last:
        raise UserError("--since and --last: give one of them")
    if args.last is not None and args.last < 1:
        raise UserError(f"--last: {args.last} must be at least 1")
    opts = train_options(args, args.window)
    cfg, settings, bs = load_daemon_config(args, {})
    topics = [t.strip() for t in args.from_topic.split(",") if t.strip()]
    since = _since_ms(args.since) if args.since else None
    wins, ends, dead, n = read_topic_windows(settings, topics, window=opts.window, stride=opts.stride,
                                             fmt=cfg.input.record_format(), since_ms=since, last=args.last,
                                             lateness_ms=cfg.window.lateness_ms, gap_ms=cfg.window.gap_ms)
    read = {"records": n, "series": len(wins), "windows": int(sum(len(w) for w in wins.values())),
            "dead_lettered": dict(sorted(dead.items()))}
    if dead:
        log.warning("%d record(s) or reading(s) the daemon would dead-letter were left out: %s", sum(dead.values()),
                    ", ".join(f"{k} {v}" for k, v in sorted(dead.items())))
    if args.exclude_flagged_by:
        wins, ends, dropped = drop_flagged(wins, ends, args.exclude_flagged_by)
        read["flagged_windows_left_out"] = dropped
        log.info("%d window(s) flagged by %s left out", dropped, args.exclude_flagged_by)
    if not wins:
        raise UserError(f"--from-topic {args.from_topic}: no complete window of {opts.window} readings in {n} record(s)")
    split = split_windows(wins, ends, window=opts.window, stride=opts.stride,
                          calibration_fraction=opts.calibration_fraction)
    info = train_bundle(args.detector, split, opts, args.out,
                        source={"topic": topics, "bootstrap_servers": bs, "since": args.since, "last": args.last,
                                "read": read})
    print(summary(info, args.out))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.from_topic:
        if args.data:
            raise UserError("--data and --from-topic: give one of them")
        return run_topic(args)
    if args.data and args.wfdb:
        raise UserError("give --data PATH (series windows) or --wfdb DIR (beat windows of an ECG record), not both")
    if args.data and args.fs:
        raise UserError("--fs applies to the beat windows of ECG records (--dataset mitdb-NNN, --wfdb DIR); with "
                        "--data, --window counts readings")
    if args.data:
        return run_data(args)
    if not (args.protocol or args.dataset or args.wfdb):
        raise UserError("give the data to train on: --data PATH, --protocol NAME, --dataset NAME or --wfdb DIR")
    from monitor.modelstore import save_bundle

    data = load_data(args, args.protocol, args.dataset, args.limit)
    det, info = train_one(args.detector, data, args.seed, model_params(args), args.out)
    T, C = data.X_train.shape[1], data.X_train.shape[2]
    stride = args.stride or T
    # a runnable bundle: thresholds calibrated on the protocol's threshold split at its false-positive rate
    save_bundle(det, args.out, window_length=T, stride=stride, channels=C, calibration=data.X_threshold,
                fpr=data.fpr, name=args.name or f"{args.detector}-{data.protocol}", version=args.version,
                alert_components=[args.alert_component] if args.alert_component else None,
                extra={"trained": {"protocol": data.protocol, "seed": args.seed,
                                   **({"fs": data.info["fs"]} if "fs" in data.info else {})}})
    try:
        from monitor.train_report import write_protocol_train_report

        write_protocol_train_report(args.out, info, data, det)
    except ImportError as exc:  # matplotlib missing: the bundle is complete without the report
        log.warning("report.html not written: %s", exc)
    print(json.dumps({k: info[k] for k in ("detector", "protocol", "seed", "sizes", "thresholds", "fit_seconds", "fs",
                                           "warnings") if k in info}, indent=2))
    print(f"bundle written to {args.out}: serve it with `anomon run --model-dir {args.out}`")
    return 0
