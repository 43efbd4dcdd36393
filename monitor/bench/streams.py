"""``anomon bench streams``: anomon's detectors and peers on the streaming development data, same splits.

The protocols are written down in docs/streams.md; every cell runs
:func:`monitor.evaluate_stream.evaluate_stream` (fit on the training span, threshold on held-out
training windows at ``--fpr``, the series streamed through the daemon's windower, alert starts as
detections). Data: ``../shared/data/streams/`` (``--data-dir``).

* ``skab``: SKAB, the proposed leaderboard's split: per file the first 400 rows train the model, the
  rest is the test span. Outlier detection: point-wise F1 of every test row pooled over the 34
  files (the leaderboard's binary classification), no point adjustment. Changepoint detection: NAB
  with windows of 60 rows to the right of each labelled changepoint.
* ``skab-free``: one model for all files trained on ``anomaly-free/anomaly-free.csv``; each file's
  first 400 rows only set its scale and are not scored.
* ``smd``: SMD machines 1-2 … 1-8, train file / test file; training windows at stride
  ``--smd-train-stride`` (a subsample, said in the results); point-wise F1 without point
  adjustment, range F1, VUS-PR, NAB.
* ``ucr``: the 9 UCR archive series; the training prefix of the file name; top-1 accuracy.

Detectors: anomon's ``robust-zscore`` (also through the anomaly likelihood), ``isolation-forest``,
``knn``, ``half-space-trees`` (river's HST on anomon's contract), and the peers of
:mod:`monitor.bench.stream_peers` (PyOD IForest and KNN, a T² + Q PCA control chart, STUMPY
matrix-profile discords; these need the ``bench`` extra). ``--detectors`` picks a subset; ``lstm-ae``
(small: 10 epochs) runs only when named.

Example::

    anomon bench streams --json docs/results/streams-dev.json --markdown docs/streams-dev.md
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("anomon.bench.streams")

DATASETS = ("skab", "skab-free", "smd", "ucr")
#: per dataset: window, stride, training stride, skab train rows
SETTINGS = {
    "skab": {"window": 10, "stride": 1, "train_stride": 1, "train_rows": 400},
    "skab-free": {"window": 10, "stride": 1, "train_stride": 1, "train_rows": 400},
    "smd": {"window": 10, "stride": 1, "train_stride": 4},
    "ucr": {"window": 64, "stride": 1, "train_stride": 1},
}
#: label -> (detector, params, options); "peer" marks the others' implementations
DETECTORS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "robust-zscore": ("robust-zscore", {}, {}),
    "robust-zscore+likelihood": ("robust-zscore", {}, {"likelihood": True}),
    "isolation-forest": ("isolation-forest", {"n_estimators": 100}, {}),
    "knn": ("knn", {"k": 5, "max_train": 5000}, {}),
    "half-space-trees": ("half-space-trees", {}, {}),
    "peer:pyod-iforest": ("PyODIForest", {}, {}),
    "peer:pyod-knn": ("PyODKNN", {"k": 5, "max_train": 5000}, {}),
    "peer:pca-t2q": ("PCAControlChart", {}, {}),
    "peer:stumpy-discord": ("StumpyDiscord", {}, {}),
    # not in the default run (minutes of torch training per dataset): --detectors lstm-ae
    "lstm-ae": ("lstm-ae", {"hidden_size": 32, "latent_dim": 8, "epochs": 10, "batch_size": 64, "n_threads": 1}, {}),
}
DEFAULT_DETECTORS = [k for k in DETECTORS if k != "lstm-ae"]
#: cells left out, with the reason (said in the results)
SKIP = {("smd", "peer:stumpy-discord"): "O(n^2) per channel: 38 channels x 24k x 24k points does not fit the time budget"}
RANDOM = {"isolation-forest", "knn", "half-space-trees", "peer:pyod-iforest", "peer:pyod-knn", "lstm-ae"}
HEAD = ("point_f1", "range_f1", "vus_pr", "roc_auc", "nab_standard", "ucr_top1", "oracle_best_point_f1")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("streams", help="detectors and peers on SKAB, SMD and UCR series (streaming protocols)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/streams", help="the streams/ data folder")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--detectors", nargs="+", default=DEFAULT_DETECTORS, choices=list(DETECTORS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the randomised detectors (mean over them)")
    p.add_argument("--fpr", type=float, default=0.01, help="threshold: FPR on held-out training windows")
    p.add_argument("--smd-machines", nargs="+", help="SMD machines (default all: machine-1-2 ... machine-1-8)")
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.add_argument("--markdown", help="write the tables (markdown) to this file")
    p.set_defaults(func=run)


def _cls(name: str) -> Any:
    from monitor.bench import stream_peers

    return getattr(stream_peers, name) if hasattr(stream_peers, name) else name


def _skab_cp_windows(width: int = 60):
    """NAB windows of SKAB's changepoint protocol: ``width`` rows from each changepoint on (to its right)."""

    def windows(s, start):
        if s.changepoints is None:
            return []
        n = len(s) - start
        out: list[tuple[int, int]] = []
        for cp in np.flatnonzero(s.changepoints):
            if cp < start:
                continue
            a, b = int(cp - start), int(min(cp - start + width - 1, n - 1))
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out

    return windows


def _load(dataset: str, root: Path, machines: list[str] | None):
    from monitor.evaluate_stream import load_folder

    if dataset in ("skab", "skab-free"):
        series, train = load_folder(root / "skab", train_glob="anomaly-free/*")
        return series, (train if dataset == "skab-free" else None)
    if dataset == "smd":
        series, _ = load_folder(root / "smd")
        if machines:
            series = [s for s in series if s.name in machines]
        return series, None
    series, _ = load_folder(root / "ucr_anomaly")
    return series, None


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    per = res["series"]
    tp = sum(v["point_tp"] for v in per.values())
    fp = sum(v["point_fp"] for v in per.values())
    fn = sum(v["point_fn"] for v in per.values())
    out = {k: res["mean"].get(k) for k in HEAD}
    out["pooled_point_f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    out["nab_corpus"] = res["nab_corpus"]
    out["alerts"] = sum(v["alerts"] for v in per.values())
    out["unscored_points"] = sum(v["unscored_points"] for v in per.values())
    return out


def run_cell(dataset: str, label: str, series, train, seed: int, fpr: float) -> dict[str, Any]:
    from monitor.evaluate_stream import evaluate_stream

    det, params, opts = DETECTORS[label]
    cfg = SETTINGS[dataset]
    kw: dict[str, Any] = dict(params=params, window=cfg["window"], stride=cfg["stride"],
                              train_stride=cfg["train_stride"], fpr=fpr, seed=seed, series=series,
                              train_series=train, **opts)
    if "train_rows" in cfg:
        kw["train_rows"] = cfg["train_rows"]
    if dataset.startswith("skab"):
        kw["nab_windows"] = _skab_cp_windows()
    t0 = time.perf_counter()
    res = evaluate_stream(None, _cls(det), **kw)
    out = _summary(res)
    if dataset.startswith("skab"):
        out["nab_changepoint"] = res["nab_custom_corpus"]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["per_series"] = {k: {m: v.get(m) for m in ("point_f1", "range_f1", "vus_pr", "nab_standard", "ucr_top1",
                                                   "alerts")} for k, v in res["series"].items()}
    return out


def _mean_cells(cells: list[dict[str, Any]]) -> dict[str, Any]:
    if len(cells) == 1:
        return cells[0]

    def avg(vals):
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    out = {k: avg([c[k] for c in cells]) for k in (*HEAD, "pooled_point_f1", "seconds", "alerts")}
    for key in ("nab_corpus", "nab_changepoint"):
        if key in cells[0]:
            out[key] = {p: avg([c[key][p] for c in cells]) for p in cells[0][key]}
    out["std"] = {k: float(np.std([c[k] for c in cells if c[k] is not None])) for k in ("pooled_point_f1", "point_f1",
                                                                                        "nab_standard")
                  if any(c[k] is not None for c in cells)}
    out["seeds"] = [c.get("seed") for c in cells]
    out["per_seed"] = [{k: c[k] for k in ("pooled_point_f1", "point_f1", "range_f1", "nab_standard", "ucr_top1")}
                       for c in cells]
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def tables(results: dict[str, Any]) -> str:
    """The markdown tables of the results."""
    lines = []
    for ds, cells in results["datasets"].items():
        lines.append(f"### {ds}\n")
        if ds.startswith("skab"):
            lines.append("| detector | OD F1 (pooled) | range F1 | VUS-PR | ROC AUC | CPD NAB std | CPD NAB lowFP | "
                         "CPD NAB lowFN | alerts | s |")
            lines.append("|---|---|---|---|---|---|---|---|---|---|")
            for lab, c in cells.items():
                if "skipped" in c:
                    continue
                cp = c["nab_changepoint"]
                lines.append(f"| {lab} | {_fmt(c['pooled_point_f1'])} | {_fmt(c['range_f1'])} | {_fmt(c['vus_pr'])} | "
                             f"{_fmt(c['roc_auc'])} | {_fmt(cp['standard'], 1)} | {_fmt(cp['reward_low_FP_rate'], 1)} | "
                             f"{_fmt(cp['reward_low_FN_rate'], 1)} | {c['alerts']:.0f} | {c['seconds']:.0f} |")
        else:
            top = "UCR top-1 | " if ds == "ucr" else ""
            lines.append(f"| detector | {top}point F1 | range F1 | VUS-PR | ROC AUC | NAB std (corpus) | "
                         "oracle best F1 | alerts | s |")
            lines.append("|---|" + ("---|" if ds == "ucr" else "") + "---|---|---|---|---|---|---|---|")
            for lab, c in cells.items():
                if "skipped" in c:
                    continue
                t1 = f"{_fmt(c['ucr_top1'])} | " if ds == "ucr" else ""
                lines.append(f"| {lab} | {t1}{_fmt(c['point_f1'])} | {_fmt(c['range_f1'])} | {_fmt(c['vus_pr'])} | "
                             f"{_fmt(c['roc_auc'])} | {_fmt(c['nab_corpus']['standard'], 1)} | "
                             f"{_fmt(c['oracle_best_point_f1'])} | {c['alerts']:.0f} | {c['seconds']:.0f} |")
        skipped = [f"{lab}: {c['skipped']}" for lab, c in cells.items() if "skipped" in c]
        if skipped:
            lines.append("\nNot run: " + "; ".join(skipped) + ".")
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    root = Path(args.data_dir)
    if not root.is_dir():
        from monitor.errors import UserError

        raise UserError(f"--data-dir {root}: no such folder (the streams/ data folder, see its README.md)")
    results: dict[str, Any] = {"bench": "streams", "format_version": 1, "fpr": args.fpr, "seeds": args.seeds,
                               "settings": {d: SETTINGS[d] for d in args.datasets}, "detectors": {
                                   k: {"detector": DETECTORS[k][0], "params": DETECTORS[k][1], **DETECTORS[k][2]}
                                   for k in args.detectors},
                               "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                                           platform.machine()},
                               "datasets": {}}
    t_all = time.perf_counter()
    for ds in args.datasets:
        series, train = _load(ds, root, args.smd_machines)
        results["datasets"][ds] = {}
        for lab in args.detectors:
            if (ds, lab) in SKIP:
                results["datasets"][ds][lab] = {"skipped": SKIP[(ds, lab)]}
                continue
            seeds = args.seeds if lab in RANDOM else args.seeds[:1]
            cells = []
            for sd in seeds:
                try:
                    c = run_cell(ds, lab, series, train, sd, args.fpr)
                except ModuleNotFoundError as exc:  # a peer library missing (the bench extra)
                    c = {"skipped": f"{exc.name} is not installed (pip install 'anomon[bench]')"}
                    break
                c["seed"] = sd
                cells.append(c)
                log.info("%s / %s / seed %d: point F1 %s, range F1 %s, NAB %s (%.0f s)", ds, lab, sd,
                         _fmt(c["point_f1"]), _fmt(c["range_f1"]), _fmt(c["nab_corpus"]["standard"], 1), c["seconds"])
            results["datasets"][ds][lab] = _mean_cells(cells) if cells else c
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    md = tables(results)
    print(md)
    if args.json_file:
        from monitor.evaluate_stream import _clean

        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(_clean(results), indent=1))
    if args.markdown:
        Path(args.markdown).write_text(md)
    return 0
