"""How well explanations name the metrics that caused an anomaly: SMD's interpretation labels.

The Server Machine Dataset (OmniAnomaly, Su et al. KDD 2019; ``/work/shared/data/streams/smd``) labels each
anomalous segment of a machine's test half with the metrics (of 38) that caused it. Per machine, each
explainable detector is fitted on windows of the (unlabelled) train half with fixed, small settings (chosen
before this was run, never on these labels), served as a bundle, and asked to explain every window that ends
on a labelled anomalous test row (:class:`monitor.explain.WindowExplainer`, the daemon's own path). Measures,
averaged over those windows:

* ``hit_rate@100`` / ``hit_rate@150``: OmniAnomaly's interpretation score: of the segment's ``g`` labelled
  metrics, the fraction among the ``g`` (``ceil(1.5 g)``) channels with the largest shares;
* ``top1_in_labels``: the first channel is one of the labelled metrics;
* ``span_hits``: the explanation's span overlaps the window's labelled anomalous steps (weak: every such
  window ends on an anomalous row); ``span_precision``: the fraction of the span's steps that are labelled
  anomalous; ``span_steps``: its mean length;
* ``random``: the same scores for a random ranking (their expectations, ``g / 38`` and ``ceil(1.5 g) / 38``),
  and for a span drawn at random (the fraction of the window's steps that are anomalous).

And the cost: seconds per window of scoring (:meth:`~monitor.modelstore.Bundle.score_windows`) and of
explaining a batch of 256 windows, median of 5 calls, one torch and BLAS thread.

    OMP_NUM_THREADS=1 .venv/bin/python -m monitor.experiments.explain_smd --json docs/results/explain_smd.json

Examples
--------
>>> hit_rate(np.array([[3, 1, 0, 2]]), [{1, 2}], 1.0).tolist()
[0.5]
>>> parse_interpretation(["15-18:1,3"])
[(15, 18, {0, 2})]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

SMD = Path("/work/shared/data/streams/smd")
MACHINES = ("machine-1-2", "machine-1-3", "machine-1-4")
T, STRIDE = 32, 8
SEED = 0
#: fixed settings (small: minutes on two cores); not tuned on the labels
PARAMS: dict[str, dict[str, Any]] = {
    "vrae": {"hidden_size": 32, "latent_dim": 8, "context_dim": 4, "patch_len": 4, "epochs": 15, "patience": 5,
             "batch_size": 64, "learning_rate": 3e-3, "kl_anneal_epochs": 5, "n_samples": 8, "n_wasserstein": 128,
             "n_clusters": 32, "device": "cpu", "n_threads": 1},
    "lstm-ae": {"hidden_size": 32, "latent_dim": 8, "patch_len": 4, "epochs": 15, "patience": 5, "batch_size": 64,
                "learning_rate": 3e-3, "device": "cpu", "n_threads": 1},
    "dense-ae": {"hidden": [256, 64], "latent_dim": 16, "epochs": 30, "device": "cpu"},
    "aae": {"hidden": [256, 64], "latent_dim": 16, "epochs": 30, "device": "cpu"},
    "wae": {"hidden": [256, 64], "latent_dim": 16, "epochs": 30, "device": "cpu"},
    "robust-zscore": {},
}


def parse_interpretation(lines: list[str]) -> list[tuple[int, int, set[int]]]:
    """``a-b:d1,d2`` lines -> ``(a, b, {d1 - 1, ...})``: test rows ``a .. b-1``, 0-based metric indices."""
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        rows, dims = line.split(":")
        a, b = (int(x) for x in rows.split("-"))
        out.append((a, b, {int(d) - 1 for d in dims.split(",")}))
    return out


def hit_rate(ranked: np.ndarray, labels: list[set[int]], p: float) -> np.ndarray:
    """Per window: the fraction of its ``g`` labelled channels among its ``ceil(p * g)`` top-ranked ones."""
    out = np.empty(len(ranked))
    for i, (r, lab) in enumerate(zip(ranked, labels)):
        k = min(len(r), math.ceil(p * len(lab)))
        out[i] = len(lab & set(r[:k].tolist())) / len(lab)
    return out


def _windows(X: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.stack([X[e - T + 1:e + 1] for e in ends]).astype(np.float32)


def _median_s(fn, reps: int = 5) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def run_machine(machine: str, detectors: list[str], work: Path) -> dict[str, Any]:
    from models import get_detector
    from monitor.explain import WindowExplainer
    from monitor.modelstore import load_bundle, save_bundle

    tr = np.loadtxt(SMD / "train" / f"{machine}.txt.gz", delimiter=",")
    te = np.loadtxt(SMD / "test" / f"{machine}.txt.gz", delimiter=",")
    segs = parse_interpretation((SMD / "interpretation_label" / f"{machine}.txt").read_text().splitlines())
    Xtr = _windows(tr, np.arange(T - 1, len(tr), STRIDE))
    n_cal = max(1, len(Xtr) // 5)  # the train half's tail calibrates the thresholds
    fit_X, cal_X = Xtr[:-n_cal], Xtr[-n_cal:]
    ends, labels, anom_steps = [], [], []
    for a, b, dims in segs:
        for e in range(max(a, T - 1), b):
            ends.append(e)
            labels.append(dims)
            anom_steps.append((max(a, e - T + 1) - (e - T + 1), min(b, e + 1) - (e - T + 1)))
    Xte = _windows(te, np.asarray(ends))
    C = tr.shape[1]
    g = np.array([len(x) for x in labels], dtype=float)
    out: dict[str, Any] = {"windows_explained": len(ends), "segments": len(segs), "train_windows": len(fit_X),
                           "random": {"hit_rate@100": round(float(np.mean(g / C)), 4),
                                      "hit_rate@150": round(float(np.mean(np.minimum(np.ceil(1.5 * g), C) / C)), 4),
                                      "span_precision": round(float(np.mean([(hi - lo) / T for lo, hi in anom_steps])), 4)},
                           "detectors": {}}
    for name in detectors:
        det = get_detector(name)(**PARAMS.get(name, {}))  # (every seed is the default, 0 = SEED)
        t0 = time.perf_counter()
        det.fit(fit_X.reshape(len(fit_X), -1) if det.input_kind == "tabular" else fit_X)
        fit_s = time.perf_counter() - t0
        d = work / machine / name
        save_bundle(det, d, window_length=T, stride=STRIDE, channels=C, calibration=cal_X, fpr=0.01)
        b = load_bundle(d)
        ex = WindowExplainer(b, top_k=C)
        e = ex.explain(Xte)
        flagged = b.score_windows(Xte)[b.alert_components[0]] > b.thresholds[b.alert_components[0]]
        span_hit = np.array([s0 < hi and lo < s1 for (s0, s1), (lo, hi) in zip(e.span.tolist(), anom_steps)])
        span_prec = np.array([max(0, min(s1, hi) - max(s0, lo)) / (s1 - s0)
                              for (s0, s1), (lo, hi) in zip(e.span.tolist(), anom_steps)])
        batch = Xte[:256]
        score_s = _median_s(lambda: b.score_windows(batch)) / len(batch)
        explain_s = _median_s(lambda: ex.explain(batch)) / len(batch)
        out["detectors"][name] = {
            "hit_rate@100": round(float(hit_rate(e.top, labels, 1.0).mean()), 4),
            "hit_rate@150": round(float(hit_rate(e.top, labels, 1.5).mean()), 4),
            "top1_in_labels": round(float(np.mean([t in lab for t, lab in zip(e.top[:, 0].tolist(), labels)])), 4),
            "span_hits": round(float(span_hit.mean()), 4),
            "span_precision": round(float(span_prec.mean()), 4),
            "span_steps": round(float(np.mean(e.span[:, 1] - e.span[:, 0])), 2),
            "flagged_fraction": round(float(np.mean(flagged)), 4),
            "hit_rate@100_flagged": (round(float(hit_rate(e.top[flagged], [x for x, f in zip(labels, flagged) if f],
                                                          1.0).mean()), 4) if flagged.any() else None),
            "score_us_per_window": round(score_s * 1e6, 1),
            "explain_us_per_window": round(explain_s * 1e6, 1),
            "fit_s": round(fit_s, 1),
        }
        print(machine, name, json.dumps(out["detectors"][name]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", default=",".join(MACHINES))
    ap.add_argument("--detectors", default=",".join(PARAMS))
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="where the bundles go (default: a temporary folder)")
    args = ap.parse_args(argv)
    import tempfile

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    detectors = [d for d in args.detectors.split(",") if d]
    res: dict[str, Any] = {"what": "explanations against SMD's interpretation labels (monitor/experiments/explain_smd.py)",
                           "window": {"length": T, "stride": STRIDE}, "seed": SEED, "params": PARAMS, "machines": {}}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        work = args.work or Path(tmp)
        for m in [m for m in args.machines.split(",") if m]:
            res["machines"][m] = run_machine(m, detectors, work)
    keys = ("hit_rate@100", "hit_rate@150", "top1_in_labels", "span_hits", "span_precision", "span_steps",
            "explain_us_per_window", "score_us_per_window")
    ms = list(res["machines"].values())
    res["mean_over_machines"] = {
        "random": {k: round(float(np.mean([m["random"][k] for m in ms])), 4)
                   for k in ("hit_rate@100", "hit_rate@150", "span_precision")},
        **{d: {k: round(float(np.mean([m["detectors"][d][k] for m in ms])), 4) for k in keys} for d in detectors},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["mean_over_machines"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
