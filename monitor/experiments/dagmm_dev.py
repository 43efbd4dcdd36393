"""Choose DAGMM training settings on *development* splits of a dagmm protocol.

The split procedure is the protocol's (:func:`monitor.protocols.tabular.dagmm_split`), with
seeds the protocol never reports (100 and up), so the reported seeds 0-19 stay untouched
while a setting is chosen. Prints one JSON line per setting: mean ± std F1 over the seeds.

Example
-------
::

    python -m monitor.experiments.dagmm_dev --dataset kddcup --seeds 100-109 \\
        --grid '{"epochs": [1, 2, 4, 8], "lr": [0.0001]}' --json runs/dev/dagmm-kddcup.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from monitor.experiments.tabular_dev import parse_seeds  # "100-109,120" -> seeds


def main(argv=None) -> int:
    from models import get_detector
    from monitor.batch.dagmm import DEFAULT_PARAMS
    from monitor.protocols import tabular as tp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="kddcup", choices=[d for d in DEFAULT_PARAMS if d])
    ap.add_argument("--seeds", default="100-109", help="development seeds (the protocol reports 0-19)")
    ap.add_argument("--grid", default='{"epochs": [1, 2, 4, 8]}', help="JSON: parameter -> list of values")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    seeds = parse_seeds(a.seeds)
    if min(seeds) < 20:
        ap.error("development seeds must be >= 20: seeds 0-19 are the protocol's reported ones")
    grid = json.loads(a.grid)
    DAGMM = get_detector("dagmm")
    rows = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        params = {**DEFAULT_PARAMS[a.dataset], **setting}
        t0 = time.perf_counter()
        res = tp.evaluate_detector(lambda s, p=params: DAGMM(**{**p, "seed": s}), a.dataset, seeds)
        f1s = [m["f1"] for m in res["per_seed"]]
        aucs = [m["roc_auc"] for m in res["per_seed"]]
        row = {"dataset": a.dataset, "seeds": a.seeds, **setting, "f1_mean": float(np.mean(f1s)),
               "f1_std": float(np.std(f1s)), "roc_auc_mean": float(np.mean(aucs)),
               "f1": [round(f, 4) for f in f1s], "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
