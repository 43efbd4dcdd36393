"""``anomon run``: the streaming daemon (Kafka in, scores and alerts out)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the streaming daemon: consume readings, score windows, emit scores and alerts",
        description="Consume readings from Kafka topics (a consumer group: start several to share the "
        "partitions), score sliding windows with a model bundle, and write scores, alerts and dead letters. "
        "Without kafka.bootstrap_servers it starts the embedded broker. Settings: --config FILE (TOML or YAML), "
        "environment ANOMON_<SECTION>__<KEY>, then these flags. SIGTERM drains and commits; SIGHUP reloads the model.",
    )
    p.add_argument("--config", metavar="FILE", help="config file (.toml, .yaml)")
    p.add_argument("--check-config", action="store_true",
                   help="print the effective config (secrets redacted), check every value, the model bundle and the "
                   "secrets' sources, report all errors at once; exit 2 if any")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (kafka.bootstrap_servers)")
    p.add_argument("--topic", action="append", metavar="TOPIC", help="input topic (repeatable; input.topics)")
    p.add_argument("--group", metavar="ID", help="consumer group (input.group_id)")
    p.add_argument("--model-dir", metavar="DIR", help="model bundle directory (model.dir)")
    p.add_argument("--stride", type=int, help="window stride in readings (window.stride)")
    p.add_argument("--http-port", type=int, help="port of /metrics /healthz /readyz (http.port; 0 = any free)")
    p.add_argument("--threshold", choices=["calibrated", "spot", "dspot"], help="scoring.threshold")
    p.add_argument("--workers", type=int, metavar="N",
                   help="daemon processes in one consumer group under this one (run.workers; default 1): "
                   "one process uses one core; /metrics then carries a worker label")
    # a worker of `--workers N` writes its HTTP port and, at exit, its stats here (for the supervisor)
    p.add_argument("--worker-report", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict:
    return {
        "kafka.bootstrap_servers": args.bootstrap_servers,
        "input.topics": args.topic,
        "input.group_id": args.group,
        "model.dir": args.model_dir,
        "window.stride": args.stride,
        "http.port": args.http_port,
        "scoring.threshold": args.threshold,
        "run.workers": args.workers,
    }


def run(args: argparse.Namespace) -> int:
    from monitor.config import dump, load_config

    if args.check_config:
        from monitor.check_config import check

        cfg, facts, problems = check(args.config, overrides(args))
        sys.stdout.write(dump(cfg))
        for f in facts:
            print(f"# ok: {f}")
        for p in problems:
            print(f"anomon: error: {p}", file=sys.stderr)
        print(f"# check-config: {len(problems)} error(s)" if problems else "# check-config: no errors",
              file=sys.stderr if problems else sys.stdout)
        return 2 if problems else 0
    cfg = load_config(args.config, overrides=overrides(args))
    if not cfg.model.dir and not cfg.models:
        from monitor.errors import ConfigError

        raise ConfigError("model.dir: no model bundle given (use --model-dir DIR, model.dir in the config, or "
                          "ANOMON_MODEL__DIR; `anomon demo` trains and caches one under ~/.cache/anomon/models)")
    if cfg.run.workers > 1 and not args.worker_report:
        from monitor.workers import run_pool

        run_pool(cfg, cfg.run.workers, log_args=("--log-level", args.log_level, "--log-format", args.log_format))
        return 0
    from monitor.runner import run_forever

    run_forever(cfg, report=args.worker_report)
    return 0
