"""``anomon batch``: run an offline study (DAGMM, Deep SVDD, MNIST, graph VAE, compare ...).

    anomon batch --list
    anomon batch dagmm-thyroid --out runs/dagmm-thyroid --seeds 20
    anomon batch dagmm --data my.npz --out runs/mine
    anomon batch my-job --config batch.yaml --out runs/my-job
    anomon batch compare --data my.csv --out runs/cmp --resume     # continue a stopped run
    anomon batch compare --data my.csv --time-budget 10m --out runs/cmp   # epochs and samples fitted to 10 min

Every job writes ``DIR/metrics.json`` and ``DIR/report.html`` (see :mod:`monitor.batch`).
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
per-detector settings (compare): --set or a config file's `params` maps a detector to
its settings by dataset, "*" meaning any dataset (your --data file included), merged over
the built-in defaults:
  anomon batch compare --data my.csv --set 'params={knn: {"*": {k: 10}}, dagmm: {"*": {epochs: 50}}}'
  # or in batch.yaml:  jobs: {compare: {params: {knn: {"*": {k: 10}}, lof: {thyroid: {k: 30}}}}}
other compare settings: detectors (all or a list), skip, seeds_by_dataset, variants,
input_kind (rows | images). See docs/batch.md.
metrics.json and report.html are rewritten after every seed and detector ("complete": false
until done); --resume continues a stopped run in the same --out with the same settings.
--time-budget 10m (compare): each detector's epochs (and pretrain_epochs) or max_train are
scaled to its share of the budget, timed by a pilot fit on the data, never above the default;
settings you give in params are kept; metrics.json "time_budget" and the report list the choices.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="run a batch study (DAGMM, Deep SVDD, OC-NN, AAE, WAE, MNIST, graph VAE, compare)",
        description="Run a batch job; it writes DIR/metrics.json and DIR/report.html. "
        "`anomon batch --list` shows the jobs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", nargs="?", help="job name (see --list), or a job declared in --config")
    p.add_argument("--list", action="store_true", help="list the jobs and exit")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/JOB)")
    p.add_argument("--seeds", metavar="N|LIST", help="number of seeds (5) or a list (0,3,7) or range (0-19)")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file declaring or overriding jobs")
    p.add_argument("--data", metavar="PATH", help="your own data (.npz with X and y, .mat, or .csv with a label column)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads for this job: torch, and n_threads of the detectors that take it (knn, lof, ...)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped run in --out (same job and settings; finished seeds are kept)")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="compare: fit epochs and training-sample sizes to a time budget (10m, 1h30m, 90s) and "
                   "report the choices")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job setting (VALUE parsed as YAML), e.g. --set epochs=5",
    )
    p.set_defaults(func=run)


def _parse_sets(items: list[str]) -> dict:
    import yaml

    from monitor.errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: cannot parse value: {exc}") from None
    return out


def run(args: argparse.Namespace) -> int:
    from monitor.batch import available_jobs, read_config_file, run_job
    from monitor.errors import UserError

    if args.list or not args.job:
        jobs = available_jobs()
        declared = read_config_file(args.config)["jobs"] if args.config else {}
        width = max([len(n) for n in [*jobs, *declared]] + [10])
        for name, job in jobs.items():
            data = " [--data]" if job.accepts_data else ""
            print(f"{name:{width}s}  {job.description}{data}")
        for name, d in declared.items():
            if name not in jobs:
                print(f"{name:{width}s}  (from {args.config}: job {d.get('job', '?')})")
        if not args.list and not args.job:
            print("\nusage: anomon batch JOB --out DIR [--seeds N] [--config FILE] [--data PATH]", file=sys.stderr)
            return 2
        return 0
    overrides = _parse_sets(args.set)
    overrides.update({"seeds": args.seeds, "data": args.data, "threads": args.threads})
    if args.time_budget is not None:
        from monitor.batch.budget import parse_duration

        parse_duration(args.time_budget)  # a bad duration fails before the job starts
        overrides["time_budget"] = args.time_budget
    out = args.out or f"runs/{args.job}"
    try:
        metrics = run_job(args.job, out, config_file=args.config, overrides=overrides, resume=args.resume)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    summary = metrics.get("summary")
    if summary:
        print(summary)
    print(f"wrote {out}/metrics.json and {out}/report.html ({metrics['runtime_s']:.1f} s)")
    return 0
