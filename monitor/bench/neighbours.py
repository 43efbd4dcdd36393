"""``anomon bench neighbours``: anomon's knn and lof beside PyOD's KNN and LOF, same splits, same rows.

For every dataset and seed the dagmm split (``../shared/PROTOCOLS.md``) gives the training
normals; they are subsampled to the detector's ``max_train`` (seeded, as anomon does), and
*both* libraries are fitted on exactly those rows and score the same test rows, on one thread
(``n_jobs=1`` and a one-thread limit on the BLAS and OpenMP pools that scikit-learn's brute
force uses). Timing: one untimed warm-up of each library first (imports and first-call set-up
are paid before the clock runs, by both), then ``--repeats`` fit + score runs of each,
interleaved (anomon, PyOD, PyOD, anomon, ...), so that a change of machine load hits both
alike. Reported per cell: the median seconds of each (and every run), the ratio of the medians
anomon / PyOD, ROC AUC of both, and the largest relative difference between the two score
vectors (0 up to rounding when the results are the same), with the load average before and
after the run.

``gauss3d-100k`` is a synthetic set (seeded: 100,000 rows of 3 Gaussian features, 1 % of them
shifted outliers) standing in for large low-dimensional data (``gauss3d-5k``: 5,000 rows); the
others are the protocol sets. ``--table`` prints the docs' markdown table of a results file.

PyOD is an optional extra (``pip install 'anomon[bench]'``); without it only anomon is timed.

Example::

    anomon bench neighbours --datasets thyroid arrhythmia kddcup gauss3d-100k --repeats 5 \\
        --json docs/results/neighbours-after.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

#: per detector: anomon's parameters and PyOD's equivalent (the compare job's defaults)
SETTINGS = {
    "knn": {"*": {"k": 5, "max_train": 20000}, "kddcup": {"k": 5, "max_train": 5000}},
    "lof": {"*": {"k": 20, "max_train": 10000}, "kddcup": {"k": 20, "max_train": 5000}},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neighbours", help="knn and lof beside PyOD (time and results on the same splits)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["thyroid", "arrhythmia", "kddcup", "gauss3d-100k"],
                   help="protocol datasets, gauss3d-100k, or data files")
    p.add_argument("--detectors", nargs="+", default=["knn", "lof"], choices=sorted(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--repeats", type=int, default=5,
                   help="fit + score runs of each library, interleaved; the median is reported (default 5)")
    p.add_argument("--no-warmup", action="store_true",
                   help="no untimed warm-up: the first run of each pays imports and first-call set-up "
                   "(anomon runs first; the old method, to see what the warm-up removes)")
    p.add_argument("--no-pyod", action="store_true", help="time anomon only")
    p.add_argument("--json", dest="json_file", help="write the results to this JSON file")
    p.add_argument("--table", nargs="+", metavar="JSON", help="print the markdown table of a results file "
                   "(and, as a second file, a 'before' one) and exit; runs nothing")
    p.set_defaults(func=run)


#: how the table names the sets
SET_NAMES = {"gauss3d-100k": "3-d Gaussian"}


def markdown_table(after: dict, before: dict | None = None) -> str:
    """The docs' table of a results file: median seconds of anomon and PyOD, their ratio, the ROC AUC
    difference, and the range of the runs; ``before``: an older results file for a "before" column.

    >>> cell = {"detector": "knn", "dataset": "thyroid", "seed": 0, "n_train": 10, "n_test": 20,
    ...         "anomon_s": 0.02, "anomon_runs_s": [0.02, 0.03], "anomon_roc_auc": 0.9, "pyod_s": 0.04,
    ...         "pyod_runs_s": [0.04, 0.05], "pyod_roc_auc": 0.9, "ratio": 0.5}
    >>> print(markdown_table({"cells": [cell]}).splitlines()[-1])
    | knn | thyroid (10 × 20) | 0.02 | 0.04 | **0.50** | 0 | 0.02–0.03 | 0.04–0.05 |
    """
    old = {(c["detector"], c["dataset"], c["seed"]): c for c in (before or {}).get("cells", [])}
    head = ["detector", "set (train × test)"] + (["before (s)"] if before else []) + [
        "anomon (s, median)", "PyOD (s, median)", "anomon / PyOD", "ROC AUC diff", "anomon runs (s)", "PyOD runs (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def sec(x: float) -> str:
        return f"{x:.3g}" if x < 10 else f"{x:.1f}"

    for c in after["cells"]:
        row = [c["detector"], f"{SET_NAMES.get(c['dataset'], c['dataset'])} ({c['n_train']:,} × {c['n_test']:,})"]
        if before:
            b = old.get((c["detector"], c["dataset"], c["seed"]))
            row.append(sec(b["anomon_s"]) if b else "–")
        diff = abs(c["anomon_roc_auc"] - c["pyod_roc_auc"])
        row += [sec(c["anomon_s"]), sec(c["pyod_s"]), f"**{c['ratio']:.2f}**", "0" if diff < 5e-7 else f"{diff:.0e}",
                "–".join(sec(f(c["anomon_runs_s"])) for f in (min, max)),
                "–".join(sec(f(c["pyod_runs_s"])) for f in (min, max))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def synthetic(n: int = 100_000, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Gaussian rows (1 % outliers shifted by 4 sd in a random direction), min-max scaled."""
    from monitor.protocols.tabular import minmax_scale

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.zeros(n, dtype=np.int8)
    out = rng.choice(n, n // 100, replace=False)
    u = rng.normal(size=(len(out), d))
    X[out] += 4.0 * u / np.linalg.norm(u, axis=1, keepdims=True)
    y[out] = 1
    return minmax_scale(X), y


def _data(name: str, seed: int):
    from monitor.protocols.tabular import load_protocol_data

    m = re.fullmatch(r"gauss3d-(\d+)k", name)
    if m:  # gauss3d-100k, or another size (gauss3d-5k)
        return synthetic(n=1000 * int(m.group(1)))
    return load_protocol_data(name, seed)


def _interleaved(ours, theirs, repeats: int, warm_ours, warm_theirs, warmup: bool = True):
    """Median seconds of ``ours`` and ``theirs`` (None: anomon alone) over ``repeats`` runs each.

    Both are warmed up once, untimed, first (unless not ``warmup``); then the runs alternate in the
    order A B, B A, A B, ... Returns ``(times_ours, times_theirs, last_out_ours, last_out_theirs)``.
    """
    if warmup:
        warm_ours()
        if theirs is not None:
            warm_theirs()
    ta, tb, out_a, out_b = [], [], None, None
    for r in range(max(1, repeats)):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for who in order:
            if who == 1 and theirs is None:
                continue
            fn = ours if who == 0 else theirs
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            if who == 0:
                ta.append(dt)
                out_a = out
            else:
                tb.append(dt)
                out_b = out
    return ta, tb, out_a, out_b


def measure(det: str, dataset: str, seed: int, repeats: int = 5, pyod: bool = True, warmup: bool = True) -> dict:
    """One cell: anomon's and PyOD's fit + score on the same rows (medians of interleaved runs)."""
    from models import get_detector
    from models.sklearn_baselines import subsample_rows
    from monitor.protocols.tabular import dagmm_split
    from sklearn.metrics import roc_auc_score

    X, y = _data(dataset, seed)
    tr, te = dagmm_split(y, seed)
    p = dict(SETTINGS[det].get(dataset, SETTINGS[det]["*"]))
    T = np.ascontiguousarray(subsample_rows(X[tr], p["max_train"], seed))
    Q = X[te]
    W = Q[:256]  # the warm-up's queries: enough to run every code path once
    cls = get_detector(det)
    comp = cls.default_component_name()

    def ours(q=Q):
        return cls(k=p["k"], max_train=p["max_train"], seed=seed).fit(T).score(q)[comp]

    theirs = None
    if pyod:
        if det == "knn":
            from pyod.models.knn import KNN

            def theirs(q=Q):
                return KNN(n_neighbors=p["k"], method="mean", n_jobs=1).fit(T).decision_function(q)
        else:
            from pyod.models.lof import LOF

            def theirs(q=Q):
                return LOF(n_neighbors=p["k"], n_jobs=1).fit(T).decision_function(q)

    ta, tb, s_a, s_b = _interleaved(ours, theirs, repeats, lambda: ours(W), lambda: theirs(W), warmup)
    t_a = float(np.median(ta))
    cell = {"detector": det, "dataset": dataset, "seed": seed, "n_train": int(len(T)), "n_test": int(len(Q)),
            "n_features": int(X.shape[1]), "k": p["k"], "max_train": p["max_train"], "repeats": len(ta), "warmup": warmup,
            "anomon_s": round(t_a, 4), "anomon_runs_s": [round(t, 4) for t in ta],
            "anomon_roc_auc": float(roc_auc_score(y[te], s_a)),
            "anomon_impl": "sklearn-neighbors" if "neighbour_index" in _source(cls) else "numpy-brute"}
    if pyod:
        t_b = float(np.median(tb))
        rel = np.abs(s_a - s_b) / np.maximum(np.abs(s_b), 1e-12)
        cell.update(pyod_s=round(t_b, 4), pyod_runs_s=[round(t, 4) for t in tb],
                    pyod_roc_auc=float(roc_auc_score(y[te], s_b)),
                    ratio=round(t_a / t_b, 3), max_rel_score_diff=float(rel.max()))
    return cell


def _source(cls) -> str:
    import inspect

    return inspect.getsource(inspect.getmodule(cls))


def run(args: argparse.Namespace) -> int:
    if args.table:
        from monitor.errors import UserError

        if len(args.table) > 2:
            raise UserError("bench neighbours --table: give a results file and at most one 'before' file")
        try:
            files = [json.loads(Path(f).read_text()) for f in args.table]
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"bench neighbours --table: cannot read a results file: {exc}") from None
        if any(not f.get("cells") or "pyod_s" not in f["cells"][0] for f in files[:1]):
            raise UserError(f"bench neighbours --table: {args.table[0]} holds no cells timed beside PyOD")
        print(markdown_table(files[0], files[1] if len(files) > 1 else None))
        return 0
    pyod = not args.no_pyod
    if pyod:
        try:
            import pyod as _pyod  # noqa: F401
        except ModuleNotFoundError:
            from monitor.errors import UserError

            raise UserError("bench neighbours: PyOD is not installed (pip install 'anomon[bench]'), "
                            "or pass --no-pyod to time anomon alone") from None
    from threadpoolctl import threadpool_limits

    cells = []
    load_before = _loadavg()
    with threadpool_limits(limits=1):  # one thread: BLAS and OpenMP pools too, for both libraries
        for ds in args.datasets:
            for seed in args.seeds:
                for det in args.detectors:
                    c = measure(det, ds, seed, args.repeats, pyod, warmup=not args.no_warmup)
                    cells.append(c)
                    line = f"{det:4s} {ds:14s} seed {seed}: anomon {c['anomon_s']:8.3f} s"
                    if pyod:
                        line += (f"  pyod {c['pyod_s']:8.3f} s  ratio {c['ratio']:.2f}  AUC {c['anomon_roc_auc']:.4f}"
                                 f" / {c['pyod_roc_auc']:.4f}  max rel diff {c['max_rel_score_diff']:.1e}")
                    print(line + f"  (median of {c['repeats']})", flush=True)
    out = {"bench": "neighbours", "format_version": 2, "threads": 1, "repeats": args.repeats,
           "timing": "median of interleaved fit+score runs" + (" (no warm-up)" if args.no_warmup else
                                                                " after one untimed warm-up of each library"),
           "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": _loadavg()},
           "pyod_version": _pyod_version() if pyod else None, "cells": cells}
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json_file}")
    return 0


def _pyod_version() -> str:
    import pyod

    return getattr(pyod, "__version__", "?")


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
