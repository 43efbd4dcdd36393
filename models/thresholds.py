"""Thresholds: the alert decision, kept apart from scoring.

A threshold is fitted on scores of normal data at a target false-positive rate
and then classifies scores (higher = more anomalous, ``score > threshold``).

Examples
--------
>>> import numpy as np
>>> from models.thresholds import QuantileThreshold
>>> t = QuantileThreshold(fpr=0.05).fit(np.arange(100.0))
>>> round(t.threshold_, 2)
94.05
>>> t.classify(np.array([10.0, 99.0])).tolist()
[False, True]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import InputError, NotFittedError


def infer_threshold(normal_scores: np.ndarray, fpr: float) -> float:
    """Score above which a fraction ``fpr`` of the normal scores lie (linear-interpolated quantile)."""
    s = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise InputError("infer_threshold: no scores given")
    if not np.isfinite(s).all():
        raise InputError("infer_threshold: scores hold NaN or inf")
    if not 0.0 < fpr < 1.0:
        raise InputError(f"infer_threshold: fpr must be in (0, 1), got {fpr}")
    return float(np.quantile(s, 1.0 - fpr))


class QuantileThreshold:
    """Threshold at the ``1 - fpr`` quantile of normal scores.

    Parameters
    ----------
    fpr
        Target false-positive rate on normal data (0.05 = the 95th percentile).
    """

    kind = "quantile"

    def __init__(self, fpr: float = 0.05):
        self.fpr = fpr

    def fit(self, normal_scores: np.ndarray) -> QuantileThreshold:
        self.threshold_ = infer_threshold(normal_scores, self.fpr)
        return self

    def _check(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("threshold is not fitted: call fit(scores_of_normal_data) first")

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """Boolean array: True where the score is above the threshold."""
        self._check()
        return np.asarray(scores, dtype=np.float64) > self.threshold_

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {"kind": self.kind, "fpr": self.fpr, "threshold": self.threshold_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileThreshold:
        t = cls(fpr=float(d["fpr"]))
        t.threshold_ = float(d["threshold"])
        return t


class StreamThresholds:
    """The alert thresholds of one model's stream, kept per partition.

    Calibrated thresholds are fixed; with ``mode`` ``"spot"`` or ``"dspot"`` each alert component gets
    a SPOT/DSPOT started from the model's calibration scores, one per partition (``key``): each
    partition's threshold follows its own scores, and its state (:meth:`state`, JSON) goes into that
    partition's progress record, so a restart or a rebalance resumes it (:meth:`restore`) instead of
    starting again from the calibration.

    Parameters
    ----------
    fixed : dict
        Calibrated threshold per component.
    alert : list of str
        The components an alert is decided on (a window is anomalous when any is above its threshold).
    calibration : dict
        Calibration scores per component (SPOT/DSPOT start from them).
    mode : {"calibrated", "spot", "dspot"}
    q, depth
        SPOT's risk and DSPOT's moving-average depth.
    model : str
        Names the model version: a state saved for another one is not restored.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> st = StreamThresholds({"e": 3.0}, ["e"], {"e": rng.normal(size=2000)}, "spot", 1e-3, 50, "m v1")
    >>> flags, before = st.classify({"e": np.array([0.1, 9.0])}, 2, "t:0")
    >>> flags.tolist(), round(before["e"], 2) == round(st.current("t:0")["e"], 2)
    ([False, True], True)
    >>> other = StreamThresholds({"e": 3.0}, ["e"], {"e": rng.normal(size=2000)}, "spot", 1e-3, 50, "m v1")
    >>> other.restore("t:0", st.state("t:0")), other.current("t:0") == st.current("t:0")
    (True, True)
    >>> other.restore("t:1", {**st.state("t:0"), "model": "m v2"})   # another version's: not used
    False
    """

    #: version of :meth:`state`
    STATE_FORMAT = 1

    def __init__(self, fixed: dict[str, float], alert: list[str], calibration: dict[str, Any], mode: str,
                 q: float, depth: int, model: str = "", log: Any = None):
        from models.spot import DSPOT, SPOT

        self.fixed = dict(fixed)
        self.alert = list(alert)
        self.mode = mode
        self.model = model
        self.template: dict[str, Any] = {}  # component -> SPOT fitted on the calibration scores
        self.parts: dict[Any, dict[str, Any]] = {}  # key -> component -> its SPOT
        if mode in ("spot", "dspot"):
            for c in self.alert:
                cal = calibration.get(c)
                if cal is None or len(cal) < max(60, depth + 12):
                    if log is not None:
                        log.warning("no calibration scores for %s: using its calibrated threshold", c)
                    continue
                try:
                    t = SPOT(q=q, refit_every=10) if mode == "spot" else DSPOT(q=q, depth=depth, refit_every=10)
                    self.template[c] = t.fit(cal)
                except Exception as exc:  # noqa: BLE001
                    if log is not None:
                        log.warning("cannot start %s for %s (%s): using its calibrated threshold", mode, c, exc)

    @property
    def online(self) -> bool:
        """Whether any threshold adapts (SPOT/DSPOT); else every partition has the calibrated ones."""
        return bool(self.template)

    def _of(self, key: Any) -> dict[str, Any]:
        got = self.parts.get(key)
        if got is None:
            import copy

            got = self.parts[key] = {c: copy.deepcopy(t) for c, t in self.template.items()}
        return got

    def current(self, key: Any = None) -> dict[str, float]:
        """The thresholds in force for partition ``key``; with no key, the highest over the partitions."""
        out = dict(self.fixed)
        if key is not None:
            for c, t in self._of(key).items():
                out[c] = float(t.threshold)
            return out
        for c in self.template:
            vals = [float(p[c].threshold) for p in self.parts.values() if c in p]
            out[c] = max(vals) if vals else float(self.template[c].threshold)
        return out

    def classify(self, scores: Any, n: int, key: Any) -> tuple[np.ndarray, dict[str, float]]:
        """Anomalous flags of ``n`` windows of partition ``key`` (in order), and the thresholds before them."""
        online = self._of(key) if self.template else {}
        before = self.current(key) if online else dict(self.fixed)
        flags = np.zeros(n, dtype=bool)
        for c in self.alert:
            if c in online:
                flags |= online[c].update(scores[c])
            elif c in self.fixed:
                flags |= np.asarray(scores[c]) > self.fixed[c]
        return flags, before

    def state(self, key: Any) -> dict[str, Any] | None:
        """Partition ``key``'s adaptive state (None when nothing adapts)."""
        if not self.template or key not in self.parts:
            return None
        return {"format": self.STATE_FORMAT, "model": self.model, "mode": self.mode,
                "spot": {c: t.state() for c, t in self.parts[key].items()}}

    def restore(self, key: Any, st: dict[str, Any] | None) -> bool:
        """Resume partition ``key`` from a :meth:`state` of the same model version and mode; False (and
        the calibration's start) otherwise."""
        from models.spot import from_state

        if not self.template or not isinstance(st, dict) or st.get("format") != self.STATE_FORMAT \
                or st.get("model") != self.model or st.get("mode") != self.mode \
                or set(st.get("spot") or {}) != set(self.template):
            return False
        try:
            self.parts[key] = {c: from_state(d) for c, d in st["spot"].items()}
        except InputError:
            return False
        return True

    def drop(self, key: Any) -> None:
        """Forget partition ``key`` (revoked)."""
        self.parts.pop(key, None)
