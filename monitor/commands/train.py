"""``anomon train DETECTOR``: fit a detector on a protocol's training split and save it.

Examples::

    anomon train vrae --protocol ecg5000-semi --seed 0 --out runs/vrae-s0
    anomon train vrae --dataset ecg200 --data-dir ../shared/data --out runs/vrae-ecg200
    anomon train lstm-ae --protocol ecg5000-semi --param hidden_size=32 --out runs/ae

The model is saved with :meth:`models.Detector.save` (``config.json`` + ``weights.safetensors``)
in ``--out``; ``train.json`` beside it records the protocol, seed, split sizes, the threshold of
every component under the protocol's rule, and the training time.
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


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", help="named protocol: ecg5000-semi, ecg5000-unsup, ecg200-semi, mitdb106-semi")
    p.add_argument("--dataset", help="dataset without a named protocol (its semi-supervised split): "
                   "ecg200, ecgfivedays, twoleadecg, mitdb-106, mitdb-NNN ...")
    p.add_argument("--data-dir", help="data directory (default: ANOMON_DATA, else ../shared/data)")
    p.add_argument("--limit", type=int, default=None, help="use at most N windows per split (smoke tests)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="detector hyperparameter (repeatable)")
    p.add_argument("--epochs", type=int, help="shorthand for --param epochs=N")
    p.add_argument("--device", help="shorthand for --param device=... (auto, cpu, cuda)")
    p.add_argument("--threads", type=int, help="torch CPU threads (shorthand for --param n_threads=N)")


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    params = parse_params(args.param)
    for attr, key in (("epochs", "epochs"), ("device", "device"), ("threads", "n_threads")):
        if getattr(args, attr, None) is not None:
            params[key] = getattr(args, attr)
    return params


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on a protocol's training data and save it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("detector", help="registered detector name (see `anomon detectors`), e.g. vrae, lstm-ae")
    add_data_args(p)
    add_model_args(p)
    p.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    p.add_argument("--out", required=True, help="output directory of the saved model")
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
    if out is not None:
        out = Path(out)
        det.save(out)
        (out / TRAIN_FILE).write_text(json.dumps(info, indent=2))
        log.info("saved %s to %s (fit %.1f s)", detector, out, fit_s)
    return det, info


def run(args: argparse.Namespace) -> int:
    from monitor.protocols.ecg import load_protocol

    data = load_protocol(args.protocol, args.dataset, args.data_dir, args.limit)
    _, info = train_one(args.detector, data, args.seed, model_params(args), args.out)
    print(json.dumps({k: info[k] for k in ("detector", "protocol", "seed", "sizes", "thresholds", "fit_seconds")}, indent=2))
    return 0
