"""``anomon retrain NAME --from-topic T``: a new version of a registered model from recent windows,
validated, then promoted or refused (see :mod:`monitor.retrain`). Exit code 0 when promoted, 1 when
the candidate was refused (kept as a version; the reason is printed and written to the history)."""
from __future__ import annotations

import argparse
import json

from monitor.commands.daemon_config import add_config_args, load_daemon_config
from monitor.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="train a new version of a registered model on recent windows of a topic, "
                       "validate it, promote it or refuse it", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="model name in the registry")
    p.add_argument("--registry", metavar="DIR", help="registry folder (default: ANOMON_REGISTRY or ./models)")
    p.add_argument("--from-topic", required=True, metavar="TOPIC", help="topic(s) to read, comma-separated")
    p.add_argument("--since", metavar="AGE|TIME", help="from this long ago (90s, 15m, 6h, 1d) or this ISO time")
    p.add_argument("--last", type=int, metavar="N", help="the last N records of each partition")
    p.add_argument("--validation-fraction", type=float, default=0.2,
                   help="newest share of each series' windows held back to validate the candidate (default 0.2)")
    p.add_argument("--max-fpr-factor", type=float, default=3.0, help="refuse a candidate whose false-positive "
                   "rate on the held-back windows is over this many times the target (default 3)")
    p.add_argument("--epochs", type=int, help="epochs of the new fit (default: the current version's)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.commands.dlq import _since_ms
    from monitor.registry import Registry, default_registry
    from monitor.retrain import retrain

    if args.since and args.last:
        raise UserError("--since and --last: give one of them")
    if not 0 < args.validation_fraction < 0.5:
        raise UserError(f"--validation-fraction: {args.validation_fraction:g} must lie in (0, 0.5)")
    if args.max_fpr_factor < 1:
        raise UserError(f"--max-fpr-factor: {args.max_fpr_factor:g} must be at least 1")
    cfg, settings, _ = load_daemon_config(args, {})
    reg = Registry(args.registry or default_registry())
    res = retrain(reg, args.name, settings=settings, topics=[t.strip() for t in args.from_topic.split(",") if t.strip()],
                  fmt=cfg.input.record_format(), since_ms=_since_ms(args.since) if args.since else None,
                  last=args.last, validation_fraction=args.validation_fraction, max_fpr_factor=args.max_fpr_factor,
                  epochs=args.epochs, lateness_ms=cfg.window.lateness_ms, gap_ms=cfg.window.gap_ms)
    if args.json:
        print(json.dumps(res.to_dict()))
    elif res.promoted:
        print(f"{res.name}: {res.candidate} promoted (was {res.previous}); validation false-positive rate "
              f"{res.checks['validation_fpr']} on {res.checks['validation_windows']} held-back windows "
              f"(at most {res.checks['max_fpr']})")
    else:
        print(f"{res.name}: candidate {res.candidate} refused, still serving {res.previous}: {res.reason}")
    return 0 if res.promoted else 1
