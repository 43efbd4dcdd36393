"""``anomon evaluate-stream``: run a detector online over a folder of labelled series; write metrics.json + report.html.

Examples::

    anomon evaluate-stream --data my-series/ --detector robust-zscore --train-frac 0.3 --out reports/rz
    anomon evaluate-stream --data ../shared/data/streams/ucr_anomaly --detector knn --window 64 --out reports/ucr-knn
    anomon evaluate-stream --data skab/ --train-file-glob 'anomaly-free/*' --train-rows 400 \\
        --detector isolation-forest --params '{"n_estimators": 200}' --out reports/skab-if

The folder holds CSV files with a 0/1 label column (``,``/``;``/tab separated), UCR anomaly
archive files, NAB CSVs with a labels JSON, or an SMD-style ``train/ test/ test_label/`` layout.
Each series is fitted on its training span, streamed through the daemon's windowing, thresholded
without test labels and scored on the rest (see :mod:`monitor.evaluate_stream` and docs/streams.md).
"""
from __future__ import annotations

import argparse
import json
import logging

from monitor.errors import UserError

log = logging.getLogger("anomon.evaluate_stream")


def _json_arg(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{flag}: not valid JSON ({exc.msg} at column {exc.colno}); e.g. '{{\"k\": 5}}'") from None
    if not isinstance(v, dict):
        raise UserError(f"{flag}: expected a JSON object of parameters, got {type(v).__name__}")
    return v


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-stream", help="run a detector online over labelled series; NAB, range, VUS-PR metrics",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of labelled series")
    p.add_argument("--detector", required=True, help="detector name (anomon detectors lists them)")
    p.add_argument("--params", help="detector hyperparameters as a JSON object")
    p.add_argument("--component", help="score component (default: the detector's default)")
    p.add_argument("--window", type=int, default=32, help="window length T (default 32)")
    p.add_argument("--stride", type=int, default=1, help="window stride S while streaming (default 1)")
    p.add_argument("--train-stride", type=int, help="window stride over the training span (default: --stride)")
    g = p.add_argument_group("training span (default: what the files carry: UCR names, SMD train/)")
    g.add_argument("--train-frac", type=float, help="the first fraction F of each series is its training span")
    g.add_argument("--train-rows", type=int, help="the first N rows of each series are its training span")
    g.add_argument("--train-file-glob", help="files (relative to --data) that train one model for every series")
    p.add_argument("--exclude", metavar="GLOB", help="skip the files matching GLOB (relative to --data)")
    p.add_argument("--label-col", help="label column of CSV files (default: label, anomaly, ...)")
    p.add_argument("--fpr", type=float, default=0.01, help="false-positive rate on held-out training windows "
                   "that sets the threshold (default 0.01)")
    p.add_argument("--calib-frac", type=float, default=0.2, help="share of the training windows held out for the "
                   "threshold (default 0.2)")
    p.add_argument("--likelihood", action="store_true", help="pass scores through the anomaly likelihood (Ahmad et "
                   "al. 2017); threshold on its log form")
    p.add_argument("--likelihood-params", help="AnomalyLikelihood parameters as JSON")
    p.add_argument("--likelihood-threshold", type=float, default=0.5, help="log-likelihood threshold (0.5 = 1 - 1e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed for detectors that take one (default 0)")
    p.add_argument("--out", required=True, help="output folder (metrics.json, report.html)")
    p.add_argument("--no-html", action="store_true", help="write metrics.json only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.evaluate_stream import evaluate_stream, write_outputs

    res = evaluate_stream(
        args.data, args.detector, params=_json_arg(args.params, "--params"), window=args.window, stride=args.stride,
        train_frac=args.train_frac, train_rows=args.train_rows, train_glob=args.train_file_glob,
        label_col=args.label_col, component=args.component, fpr=args.fpr, calib_frac=args.calib_frac,
        likelihood=args.likelihood, likelihood_params=_json_arg(args.likelihood_params, "--likelihood-params"),
        likelihood_threshold=args.likelihood_threshold, train_stride=args.train_stride, seed=args.seed,
        exclude=args.exclude)
    paths = write_outputs(res, args.out, html=not args.no_html)
    m, c = res["mean"], res["nab_corpus"]

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    print(f"{res['n_series']} series, {args.detector}: NAB standard {f(c['standard'])} / low-FP "
          f"{f(c['reward_low_FP_rate'])} / low-FN {f(c['reward_low_FN_rate'])}; range F1 {f(m['range_f1'])}; "
          f"point F1 {f(m['point_f1'])}; VUS-PR {f(m['vus_pr'])}; ROC AUC {f(m['roc_auc'])}; "
          f"UCR top-1 {f(m['ucr_top1'])}")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
