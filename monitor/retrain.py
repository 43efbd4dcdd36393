"""Retrain a registered model on recent windows, validate the candidate, promote it or refuse it.

``anomon retrain NAME --from-topic T`` (see :mod:`monitor.registry` for the registry):

1. the recent history of ``T`` becomes windows through the daemon's decoder and windower
   (:func:`monitor.topic_training.read_topic_windows`), the geometry of the current version's;
   windows the current version flags are left out;
2. the newest ``validation_fraction`` of each series' windows is held back (with the windows that
   overlap the rest), the others train and calibrate a candidate with the current version's detector,
   parameters, normalisation and false-positive rate;
3. the candidate is **promoted** only when it loads and scores, its false-positive rate on the held-back
   windows is at most ``max_fpr_factor`` times the target, and its scores there do not collapse (their
   spread is above ``1e-9`` of their scale); otherwise it is kept as a version, **refused** with the
   reason, and the refusal is written to the registry's history (``action: refused``) and counted.

Training runs in this process, outside any daemon's scoring loop: a daemon serving
``REGISTRY/NAME/current`` swaps to the promoted version between micro-batches.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import UserError

log = logging.getLogger("anomon.retrain")


@dataclass
class RetrainResult:
    """What :func:`retrain` did: ``promoted`` or not, the candidate's version, the checks and the reason."""

    name: str
    candidate: str
    promoted: bool
    previous: str | None
    checks: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "promoted": self.promoted, "previous": self.previous,
                "checks": self.checks, "reason": self.reason}


def _hold_back(windows: dict, ends: dict, window: int, stride: int, fraction: float) -> tuple[dict, dict, dict]:
    """Split off the newest ``fraction`` of each series' windows (and the windows overlapping them)."""
    gap = max(0, math.ceil(window / stride) - 1)
    keep_w, keep_e, held = {}, {}, {}
    for sid, W in windows.items():
        k = len(W)
        n_val = max(1, int(math.ceil(fraction * k)))
        cut = k - n_val - gap
        if cut < 4:  # too short to give some away
            keep_w[sid], keep_e[sid] = W, ends[sid]
            continue
        keep_w[sid], keep_e[sid] = W[:cut], ends[sid][:cut]
        held[sid] = W[k - n_val:]
    return keep_w, keep_e, held


def retrain(registry: Any, name: str, *, settings: Any, topics: list[str], fmt: Any, since_ms: int | None = None,
            last: int | None = None, validation_fraction: float = 0.2, max_fpr_factor: float = 3.0,
            epochs: int | None = None, lateness_ms: float = 0.0, gap_ms: float | None = None,
            lane: Any = None) -> RetrainResult:
    """Train, validate and promote (or refuse) a new version of ``name``; see the module docstring.

    ``lane``: a :class:`monitor.routing.LaneFilter` (only that model's readings train it)."""
    from monitor.modelstore import load_bundle
    from monitor.topic_training import drop_flagged, read_topic_windows, split_windows
    from monitor.training import TrainOptions, train_bundle

    cur = registry.current(name)
    if cur is None:
        raise UserError(f"{name}: nothing is current in {registry.root}; add a version first (anomon models add)")
    cur_dir = registry.root / name / cur
    current = load_bundle(cur_dir)
    cfg_json = json.loads((cur_dir / "config.json").read_text())
    params = dict(cfg_json.get("params") or {})
    if epochs is not None and "epochs" in params:
        params["epochs"] = epochs
    tr_json = cur_dir / "train.json"
    old_info = json.loads(tr_json.read_text()) if tr_json.is_file() else {}
    normalize = old_info.get("normalize") or ("per-series" if current.series_norm is not None else "none")
    fpr = float(current.meta.get("fpr", old_info.get("fpr", 0.01)))
    T, S = current.length, current.stride
    wins, ends, dead, n = read_topic_windows(settings, topics, window=T, stride=S, fmt=fmt, since_ms=since_ms,
                                             last=last, lateness_ms=lateness_ms, gap_ms=gap_ms, lane=lane)
    wins, ends, flagged = drop_flagged(wins, ends, str(cur_dir))
    if not wins:
        raise UserError(f"retrain {name}: no window of {T} readings left in {n} record(s) of {', '.join(topics)}")
    wins, ends, held = _hold_back(wins, ends, T, S, validation_fraction)
    if not held:
        raise UserError(f"retrain {name}: too little history to hold back validation windows (more --since/--last)")
    split = split_windows(wins, ends, window=T, stride=S, calibration_fraction=0.2)
    opts = TrainOptions(window=T, stride=S, normalize=normalize, fpr=fpr, params=params, name=current.name,
                        alert_component=current.alert_components[0])
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-candidate-", dir=registry.root / name))
    try:
        train_bundle(current.detector.name, split, opts, tmp,
                     source={"topic": topics, "retrain_of": cur, "read": {
                         "records": n, "dead_lettered": dict(dead), "flagged_windows_left_out": flagged,
                         "validation_windows": int(sum(len(v) for v in held.values()))}})
        cand = load_bundle(tmp)
        comp = cand.alert_components[0]
        Xv = np.concatenate(list(held.values()))
        sv = np.asarray(cand.score(Xv, [s for s, v in held.items() for _ in range(len(v))])[comp], dtype=float)
        thr = float(cand.thresholds[comp])
        val_fpr = float(np.mean(sv > thr))
        spread = float(np.percentile(sv, 99) - np.percentile(sv, 1))
        scale = max(1e-12, float(np.max(np.abs(sv))))
        checks = {"loads_and_scores": True, "component": comp, "target_fpr": fpr,
                  "validation_fpr": round(val_fpr, 4), "max_fpr": round(max_fpr_factor * fpr, 4),
                  "validation_windows": int(len(sv)), "score_spread": spread,
                  "threshold": thr, "threshold_finite": math.isfinite(thr)}
        reasons = []
        if val_fpr > max_fpr_factor * fpr:
            reasons.append(f"false-positive rate {val_fpr:.4f} on {len(sv)} held-back recent windows is over "
                           f"{max_fpr_factor:g} x the target {fpr:g}")
        if not math.isfinite(spread) or spread <= 1e-9 * scale:
            reasons.append("its scores collapse on the held-back windows (no spread)")
        if not math.isfinite(thr):
            reasons.append(f"its {comp} threshold is not finite ({thr})")
        version = cand.version if cand.version not in registry.versions(name) else f"{cand.version}-{int(time.time())}"
        version = registry.add(name, tmp, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if reasons:
        reason = "; ".join(reasons)
        registry.note(name, version, "refused", reason)
        log.warning("retrain %s: candidate %s refused: %s (still serving %s)", name, version, reason, cur)
        return RetrainResult(name, version, False, cur, checks, reason)
    registry.promote(name, version, reason=f"retrained on {', '.join(topics)}; validation FPR {val_fpr:.4f}")
    log.info("retrain %s: candidate %s promoted (was %s); validation FPR %.4f (target %g)", name, version, cur,
             val_fpr, fpr)
    return RetrainResult(name, version, True, cur, checks, "")
