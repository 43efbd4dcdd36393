"""The ``anomon`` command line.

Each subcommand lives in its own module under :mod:`monitor.commands` and exposes
``add_parser(subparsers)``, which adds its parser and sets ``func`` (called with the
parsed arguments; returns the exit code). Heavy imports (torch, kafka) happen inside
``func`` so that ``anomon --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Subcommand modules, in the order ``anomon --help`` lists them.
COMMAND_MODULES = [
    "monitor.commands.run",
    "monitor.commands.demo",
    "monitor.commands.replay",
    "monitor.commands.broker",
    "monitor.commands.train",
    "monitor.commands.evaluate",
    "monitor.commands.evaluate_stream",
    "monitor.commands.batch",
    "monitor.commands.bench",
    "monitor.commands.deploy",
    "monitor.commands.detectors",
    "monitor.commands.data",
    "monitor.commands.dlq",
    "monitor.commands.status",
    "monitor.commands.models",
    "monitor.commands.retrain",
]


def build_parser() -> argparse.ArgumentParser:
    from monitor.errors import EXIT_CODES

    parser = argparse.ArgumentParser(
        prog="anomon", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
        description="anomon: a streaming anomaly monitor. Consumes sensor and ECG streams from Kafka, "
        "scores sliding windows with an LSTM VAE, emits scores and alerts, exposes Prometheus metrics.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ERROR)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # subcommand not shipped in this build
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from monitor.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `anomon ... | head`: the reader left; no traceback
        import os

        try:
            sys.stdout = open(os.devnull, "w")  # (the interpreter's own flush at exit would fail again)
        except OSError:
            pass
        return 141
    except Exception as exc:  # a clear one-line error for the user, the traceback at DEBUG
        from models.base import DetectorError
        from monitor.errors import UserError
        from streams.datasets import DatasetError

        if isinstance(exc, (UserError, DatasetError, DetectorError)):
            logging.getLogger("anomon").debug("error", exc_info=True)
            print(f"anomon: error: {exc}", file=sys.stderr)
            return getattr(exc, "exit_code", 2)
        if type(exc).__name__ in _KAFKA_UNAVAILABLE and type(exc).__module__.startswith("kafka"):
            logging.getLogger("anomon").debug("error", exc_info=True)
            print(f"anomon: error: the Kafka broker did not answer ({type(exc).__name__}: {exc}); check that it runs "
                  "and that kafka.bootstrap_servers (--bootstrap-servers) points at it", file=sys.stderr)
            return 3
        raise


#: kafka-python errors meaning "the broker does not answer" (exit code 3, one line)
_KAFKA_UNAVAILABLE = frozenset({"KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError"})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
