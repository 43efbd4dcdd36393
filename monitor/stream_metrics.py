"""Streaming (time-series) anomaly detection metrics, written from the papers.

Every function takes per-point arrays of one series: ``labels`` (0/1, 1 = anomalous point) and
either ``scores`` (float, higher = more anomalous) or ``flags`` / ``detections`` (bool). A *range*
is a maximal run of consecutive 1s, given as a half-open ``(start, end)`` pair of indices.

* :func:`pointwise_prf`, :func:`best_f1`, :func:`roc_auc`: point-wise precision, recall, F1 and
  ROC AUC, **without point adjustment** (a detected point never marks its whole range as found;
  there is deliberately no point-adjust option here).
* :func:`range_precision_recall`: range-based precision and recall (Tatbul et al., NeurIPS 2018).
* :func:`vus_pr`: the volume under the range-PR surface over buffer lengths 0..L
  (Paparrizos et al., VLDB 2022).
* :func:`ucr_top1`: the UCR anomaly archive's top-1 accuracy (Wu & Keogh, TKDE 2021).
* :func:`nab_score`, :func:`nab_corpus`, :func:`nab_optimise`: the Numenta Anomaly Benchmark
  scorer (Lavin & Ahmad, ICMLA 2015): anomaly windows, the scaled sigmoid, the standard /
  reward_low_FP_rate / reward_low_FN_rate profiles, normalisation against the null and perfect
  detectors, and threshold optimisation.
* :func:`alert_starts`: the detection events (rising edges) of a flag series: what NAB counts.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
>>> flags = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 0], bool)
>>> {k: round(v, 3) for k, v in pointwise_prf(y, flags).items()}
{'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
>>> ranges(y), alert_starts(flags).nonzero()[0].tolist()
([(2, 4)], [3])
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ranges", "alert_starts", "pointwise_prf", "best_f1", "roc_auc", "range_precision_recall", "vus_pr",
    "ucr_top1", "NAB_PROFILES", "nab_windows", "nab_score", "nab_corpus", "nab_optimise", "scaled_sigmoid",
]


# --------------------------------------------------------------------------- helpers
def _labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(bool)


def _scores(scores: Any, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"scores have shape {s.shape}, labels ({n},): one score per point is needed")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or inf (score every point, or drop the unscored points)")
    return s


def _flags(flags: Any, n: int) -> np.ndarray:
    f = np.asarray(flags).astype(bool)
    if f.shape != (n,):
        raise ValueError(f"flags have shape {f.shape}, labels ({n},): one flag per point is needed")
    return f


def ranges(labels: Any) -> list[tuple[int, int]]:
    """Maximal runs of 1s (or True) as half-open ``(start, end)`` index pairs.

    >>> ranges([1, 1, 0, 0, 1, 0, 1])
    [(0, 2), (4, 5), (6, 7)]
    """
    y = np.asarray(labels).astype(bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], y, [0]]))
    return [(int(a), int(b)) for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]


def alert_starts(flags: Any) -> np.ndarray:
    """The rising edges of a flag series: True where a flag is set and the previous point's is not.

    A run of flagged points is one *detection event*; NAB and the range metrics see the event, not
    every point of it.

    >>> alert_starts([0, 1, 1, 0, 1]).astype(int).tolist()
    [0, 1, 0, 0, 1]
    """
    f = np.asarray(flags).astype(bool)
    out = f.copy()
    out[1:] &= ~f[:-1]
    return out


# --------------------------------------------------------------------------- point-wise
def pointwise_prf(labels: Any, flags: Any) -> dict[str, float]:
    """Point-wise precision, recall and F1 of ``flags`` against ``labels``, no point adjustment.

    Each point counts once; a range is never credited as a whole for one detected point. With no
    flagged point precision is 0; with no labelled point recall is 0.

    >>> pointwise_prf([0, 1, 1, 1], [0, 1, 0, 0])
    {'precision': 1.0, 'recall': 0.3333333333333333, 'f1': 0.5}
    """
    y = _labels(labels)
    f = _flags(flags, y.size)
    tp = int(np.count_nonzero(f & y))
    p = tp / max(int(f.sum()), 1) if f.any() else 0.0
    r = tp / int(y.sum()) if y.any() else 0.0
    return {"precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)) if p + r > 0 else 0.0}


def best_f1(labels: Any, scores: Any) -> dict[str, float]:
    """The best point-wise F1 over every threshold (``flag = score >= threshold``), no point adjustment.

    This is an *oracle* figure (the threshold is chosen on the labels): report it beside, never
    instead of, a threshold chosen without test labels.

    >>> best_f1([0, 0, 1, 1], [0.1, 0.8, 0.9, 0.7])
    {'f1': 0.8, 'precision': 0.6666666666666666, 'recall': 1.0, 'threshold': 0.7}
    """
    y = _labels(labels)
    s = _scores(scores, y.size)
    if not y.any():
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": float("inf")}
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    tp = np.cumsum(yy)
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]  # last index of each distinct score
    tp, k = tp[last], last + 1
    prec, rec = tp / k, tp / yy.sum()
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
    i = int(np.argmax(f1))
    return {"f1": float(f1[i]), "precision": float(prec[i]), "recall": float(rec[i]), "threshold": float(ss[last[i]])}


def roc_auc(labels: Any, scores: Any) -> float:
    """Point-wise ROC AUC (ties count one half); NaN when only one class is present.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = _labels(labels)
    s = _scores(scores, y.size)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)  # average ranks: the Mann-Whitney U statistic with ties as one half
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# --------------------------------------------------------------------------- range-based (Tatbul et al. 2018)
def _bias(bias: str, length: int) -> np.ndarray:
    """Positional weights delta(i, length), i = 1..length."""
    i = np.arange(1, length + 1, dtype=np.float64)
    if bias == "flat":
        return np.ones(length)
    if bias == "front":
        return length - i + 1
    if bias == "back":
        return i
    if bias == "middle":
        return np.where(i <= length / 2, i, length - i + 1)
    raise ValueError(f"bias must be flat, front, back or middle, got {bias!r}")


def _omega(rng: tuple[int, int], overlaps: list[tuple[int, int]], bias: str) -> float:
    """omega(range, overlap set, delta): the bias-weighted share of ``rng`` that ``overlaps`` cover."""
    a, b = rng
    w = _bias(bias, b - a)
    covered = np.zeros(b - a, bool)
    for c, d in overlaps:
        covered[max(c, a) - a:min(d, b) - a] = True
    return float(w[covered].sum() / w.sum())


def _overlapping(rng: tuple[int, int], others: list[tuple[int, int]], starts: list[int]) -> list[tuple[int, int]]:
    a, b = rng
    j = max(bisect_right(starts, a) - 1, 0)
    out = []
    while j < len(others) and others[j][0] < b:
        if others[j][1] > a:
            out.append(others[j])
        j += 1
    return out


def _range_scores(real: list[tuple[int, int]], pred: list[tuple[int, int]], alpha: float, cardinality: str,
                  bias: str) -> float:
    """Mean over ``real`` of alpha * existence + (1 - alpha) * cardinality * omega."""
    if not real:
        return 0.0
    starts = [p[0] for p in pred]
    total = 0.0
    for r in real:
        ov = _overlapping(r, pred, starts)
        existence = 1.0 if ov else 0.0
        if cardinality == "one":
            card = 1.0
        elif cardinality == "reciprocal":
            card = 1.0 / len(ov) if len(ov) > 1 else 1.0
        else:
            raise ValueError(f"cardinality must be 'one' or 'reciprocal', got {cardinality!r}")
        total += alpha * existence + (1 - alpha) * card * (_omega(r, ov, bias) if ov else 0.0)
    return total / len(real)


def range_precision_recall(labels: Any, flags: Any, *, alpha: float = 0.0, cardinality: str = "reciprocal",
                           bias: str = "flat", precision_bias: str = "flat") -> dict[str, float]:
    """Range-based precision and recall (Tatbul, Lee, Zdonik, Alam, Gottschlich, NeurIPS 2018).

    With real ranges R_1..R_Nr (from ``labels``) and predicted ranges P_1..P_Np (runs of ``flags``):

    * ``Recall_T(R_i) = alpha * Existence(R_i) + (1 - alpha) * Cardinality(R_i) * sum_j omega(R_i, R_i ∩ P_j, delta)``,
      ``Recall_T = mean_i Recall_T(R_i)``. Existence is 1 when any P_j overlaps R_i.
    * ``Precision_T(P_j) = Cardinality(P_j) * sum_i omega(P_j, P_j ∩ R_i, delta)`` (no existence
      term), ``Precision_T = mean_j Precision_T(P_j)``.
    * ``omega`` is the share of the range covered by the overlap, each position i = 1..|range|
      weighted by the positional bias ``delta``: ``flat`` 1, ``front`` |range| - i + 1, ``back`` i,
      ``middle`` i up to the middle then |range| - i + 1.
    * ``Cardinality`` is 1 when the range overlaps at most one range of the other side, else
      ``1 / x`` for x overlapping ranges (``cardinality="reciprocal"``, the paper's gamma), or
      always 1 (``"one"``).

    ``alpha`` weighs existence in recall (0 = overlap only; with alpha = 0, flat bias and
    cardinality one the measures reduce to classical point-wise precision and recall when every
    range is one point). No predicted range: precision 0. No real range: recall 0.
    F1 is their harmonic mean.

    >>> y = [0, 1, 1, 1, 1, 0, 0, 0]
    >>> f = [0, 0, 0, 1, 1, 1, 1, 0]
    >>> range_precision_recall(y, f)  # half of the real range found; half of the predicted range is real
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    >>> range_precision_recall(y, f, alpha=1.0)["recall"]  # existence only
    1.0
    >>> round(range_precision_recall(y, f, bias="front")["recall"], 2)  # the late half weighs (2+1)/(4+3+2+1)
    0.3
    """
    y = _labels(labels)
    f = _flags(flags, y.size)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    real, pred = ranges(y), ranges(f)
    rec = _range_scores(real, pred, alpha, cardinality, bias)
    prec = _range_scores(pred, real, 0.0, cardinality, precision_bias)
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0}


# --------------------------------------------------------------------------- VUS-PR (Paparrizos et al. 2022)
def _soft_labels(y: np.ndarray, buffer: int) -> np.ndarray:
    """Labels widened by ``buffer // 2`` points on each side of every range, a point at distance d
    outside a range getting ``sqrt(1 - d / buffer)`` (the largest over ranges), capped at 1."""
    soft = y.astype(np.float64)
    half = buffer // 2
    if half < 1:
        return soft
    n = y.size
    d = np.arange(1, half + 1)
    w = np.sqrt(1.0 - d / buffer)
    for a, b in ranges(y):
        left = a - d
        ok = left >= 0
        soft[left[ok]] = np.maximum(soft[left[ok]], w[ok])
        right = b - 1 + d
        ok = right < n
        soft[right[ok]] = np.maximum(soft[right[ok]], w[ok])
    return soft


def vus_pr(labels: Any, scores: Any, max_buffer: int = 100, *, n_thresholds: int | None = None) -> float:
    """VUS-PR: the volume under the range-precision/recall surface (Paparrizos, Boniol, Palpanas,
    Tsay, Elmore, Franklin, VLDB 2022), averaged over buffer lengths l = 0, 1, ..., ``max_buffer``.

    For each buffer l the labels become soft: every labelled range is widened by l // 2 points on
    each side, a point at distance d outside it weighing ``sqrt(1 - d / l)``. At a threshold
    (flag = score >= threshold):

    * ``TP = sum(soft[flagged])``, ``P' = (|labelled points| + sum(soft)) / 2``;
    * range recall = ``min(TP / P', 1) * (share of widened ranges holding a flagged point)``;
    * range precision = ``TP / |flagged|``.

    The range-PR curve starts at (recall 0, precision 1) and follows the thresholds from the highest
    score down; its area (trapezoids) is the range AUC-PR for that l; VUS-PR is their mean over l.
    ``n_thresholds``: None uses every distinct score (exact); an int uses that many thresholds at
    evenly spaced ranks of the sorted scores (the published implementation uses 250). ``max_buffer``
    is L; the paper ties it to the series' period or the detector's window (``anomon evaluate-stream``
    uses the window length). NaN without a labelled point.

    >>> y = [0, 0, 0, 1, 1, 0, 0, 0]
    >>> vus_pr(y, [0, 0, 0, 1, 1, 0, 0, 0], max_buffer=0)  # a perfect ranking
    1.0
    >>> vus_pr(y, [1, 0, 0, 0, 0, 0, 0, 0], max_buffer=0)  # a false alarm on top, the rest tied: (1 - 0) * (0 + 2/8) / 2
    0.125
    """
    y = _labels(labels)
    s = _scores(scores, y.size)
    if not y.any():
        return float("nan")
    if max_buffer < 0:
        raise ValueError("max_buffer must be >= 0")
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]  # thresholds = distinct scores, high to low
    if n_thresholds is not None and n_thresholds < last.size:
        ranks = np.linspace(0, s.size - 1, n_thresholds).astype(int)
        last = np.unique(last[np.searchsorted(last, ranks)])
    k = last + 1  # flagged points at each threshold
    thr = ss[last]
    n_pos = float(y.sum())
    aps = []
    for ell in range(max_buffer + 1):
        soft = _soft_labels(y, ell)
        tp = np.cumsum(soft[order])[last]
        p_new = (n_pos + soft.sum()) / 2.0
        rngs = ranges(soft > 0)
        best = np.array([s[a:b].max() for a, b in rngs])
        found = (best[None, :] >= thr[:, None]).mean(axis=1)
        rec = np.minimum(tp / p_new, 1.0) * found
        prec = tp / k
        r = np.r_[0.0, rec]
        p = np.r_[1.0, prec]
        aps.append(float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2.0)))
    return float(np.mean(aps))


# --------------------------------------------------------------------------- UCR top-1 (Wu & Keogh 2021)
def ucr_top1(labels: Any, scores: Any, tolerance: int | None = None) -> float:
    """UCR anomaly archive top-1 accuracy of one series (Wu & Keogh, TKDE 2021): 1.0 when the
    location of the highest score lies within the one labelled range widened by a tolerance on
    each side, else 0.0.

    The KDD Cup 2021 / archive rule (Wu & Keogh) counts a prediction correct when it lies within
    100 points of the labelled range: ``begin - 100 <= argmax <= end + 100`` (``tolerance=100``).
    The default, ``tolerance=None``, uses ``max(100, range length)`` points on each side (the
    refinement of Rewicki et al. 2023, which keeps very long anomalies from being harder to hit than
    short ones); it equals the original rule for ranges of at most 100 points. Ties at the maximum:
    the first location. NaN unless the labels hold exactly one range.

    >>> y = np.zeros(1000, int); y[500:510] = 1
    >>> s = np.zeros(1000); s[605] = 1.0
    >>> ucr_top1(y, s), ucr_top1(y, s, tolerance=50)  # 605 is 96 points past the range's last point 509
    (1.0, 0.0)
    """
    y = _labels(labels)
    s = _scores(scores, y.size)
    rr = ranges(y)
    if len(rr) != 1:
        return float("nan")
    a, b = rr[0]
    tol = max(100, b - a) if tolerance is None else int(tolerance)
    t = int(np.argmax(s))
    return 1.0 if a - tol <= t <= (b - 1) + tol else 0.0


# --------------------------------------------------------------------------- NAB (Lavin & Ahmad 2015)
#: NAB's cost matrices (NAB ``config/profiles.json``): weights of a true positive, a false positive,
#: a false negative (a missed window) and a true negative (not used by the score).
NAB_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0, "tn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0, "tn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0, "tn": 1.0},
}


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``; -1 beyond ``y > 3``.

    ``y`` is the detection's position relative to a window's end: -1 at a window's first point
    (worth ~0.987), near 0 at its last point (worth ~0), positive past the window (a false positive
    costing more the further it lies, down to -1).

    >>> round(scaled_sigmoid(-1.0), 4), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.9866, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_windows(labels: Any, window_frac: float = 0.1) -> list[tuple[int, int]]:
    """NAB anomaly windows (inclusive index pairs) for the labelled ranges of one series.

    NAB gives the windows together ``window_frac`` (10 %) of the series length, split equally:
    each window holds ``floor(window_frac * n / k)`` points for k labelled anomalies, centred on the
    anomaly. A labelled range longer than that keeps its own extent. Windows are clipped to the
    series; overlapping windows are merged (as NAB's labeller does).

    >>> y = np.zeros(100, int); y[50] = 1
    >>> nab_windows(y)  # 10 points around the point anomaly at 50
    [(45, 54)]
    """
    y = _labels(labels)
    rr = ranges(y)
    if not rr:
        return []
    n = y.size
    width = max(int(window_frac * n / len(rr)), 1)
    out: list[tuple[int, int]] = []
    for a, b in rr:
        length = b - a
        if length >= width:
            lo, hi = a, b - 1
        else:
            lo = a - (width - length + 1) // 2
            hi = lo + width - 1
        lo, hi = max(lo, 0), min(hi, n - 1)
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def nab_score(labels: Any, detections: Any, profile: str = "standard", *, windows: Sequence[tuple[int, int]] | None = None,
              probation_frac: float = 0.15, window_frac: float = 0.1) -> dict[str, Any]:
    """NAB score of one series (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
    Algorithms - the Numenta Anomaly Benchmark", ICMLA 2015).

    ``detections`` (bool per point): every True point is a detection, as in NAB; pass
    :func:`alert_starts` of the flags to count each alert once. Each detection is scored:

    * inside a window [a, b]: only the **first** detection of the window counts (later ones score
      0); it earns ``tp * scaled_sigmoid(-(b - t + 1) / (b - a + 1)) / scaled_sigmoid(-1)``: 1 at
      the window's first point, close to 0 at its last;
    * outside every window: ``fp * scaled_sigmoid((t - b') / (w' - 1))`` with b' the end and w' the
      width of the last window before t (the further past it, the closer to -fp), or ``-fp``
      when no window precedes t;
    * every window without a detection costs ``-fn``.

    Detections in the probationary period (the first ``min(floor(probation_frac * n), 750)``
    points, NAB's warm-up) are ignored. ``windows`` overrides :func:`nab_windows` of ``labels``.
    The result holds ``raw`` (the sum), ``null`` (no detection: ``-fn * windows``), ``perfect``
    (every window found at its first point: ``tp * windows``), ``score`` =
    ``100 * (raw - null) / (perfect - null)`` (NaN without windows), and the counts. Corpus
    figures normalise the *sums* (:func:`nab_corpus`), as NAB does, not the mean of series scores.

    >>> y = np.zeros(100, int); y[50] = 1                        # window (45, 54)
    >>> start, end = np.zeros(100, bool), np.zeros(100, bool)
    >>> start[45] = True; end[54] = True
    >>> # at the end: (1 + scaled_sigmoid(-1/10) / scaled_sigmoid(-1)) / 2 = (1 + 0.2449 / 0.9866) / 2
    >>> nab_score(y, start, probation_frac=0)["score"], round(nab_score(y, end, probation_frac=0)["score"], 1)
    (100.0, 62.4)
    """
    if profile not in NAB_PROFILES:
        raise ValueError(f"unknown NAB profile {profile!r}; known: {', '.join(NAB_PROFILES)}")
    cost = NAB_PROFILES[profile]
    y = _labels(labels)
    det = _flags(detections, y.size)
    n = y.size
    wins = list(windows) if windows is not None else nab_windows(y, window_frac)
    probation = min(int(math.floor(probation_frac * n)), 750)
    max_tp = scaled_sigmoid(-1.0)
    starts = [w[0] for w in wins]
    found = [False] * len(wins)
    raw, tp, fp, ignored = 0.0, 0, 0, 0
    for t in np.flatnonzero(det):
        t = int(t)
        if t < probation:
            ignored += 1
            continue
        k = bisect_right(starts, t) - 1
        if k >= 0 and t <= wins[k][1]:
            if not found[k]:
                a, b = wins[k]
                found[k] = True
                raw += cost["tp"] * scaled_sigmoid(-(b - t + 1) / (b - a + 1)) / max_tp
                tp += 1
            continue
        if k < 0:
            raw += -cost["fp"]
        else:
            a, b = wins[k]
            raw += cost["fp"] * scaled_sigmoid(abs(t - b) / max(b - a, 1))
        fp += 1
    fn = found.count(False)
    raw -= cost["fn"] * fn
    null, perfect = -cost["fn"] * len(wins), cost["tp"] * len(wins)
    score = 100.0 * (raw - null) / (perfect - null) if wins else float("nan")
    return {"score": score, "raw": raw, "null": null, "perfect": perfect, "tp": tp, "fp": fp, "fn": fn,
            "windows": len(wins), "ignored_probation": ignored}


def nab_corpus(results: Sequence[dict[str, Any]]) -> float:
    """NAB's corpus score: ``100 * (sum raw - sum null) / (sum perfect - sum null)`` over the
    per-series results of :func:`nab_score` (one profile). NaN when no series has a window.

    >>> nab_corpus([{"raw": 1.0, "null": -1.0, "perfect": 1.0}, {"raw": -1.0, "null": -1.0, "perfect": 1.0}])
    50.0
    """
    raw = sum(r["raw"] for r in results)
    null = sum(r["null"] for r in results)
    perfect = sum(r["perfect"] for r in results)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


def nab_optimise(labels_list: Sequence[Any], scores_list: Sequence[Any], profile: str = "standard", *,
                 starts: bool = True, n_thresholds: int = 200, probation_frac: float = 0.15,
                 window_frac: float = 0.1) -> dict[str, Any]:
    """NAB's threshold optimisation: the one threshold over the whole corpus (``detection =
    score >= threshold``) that maximises the corpus score of ``profile``.

    Candidates are ``n_thresholds`` quantiles of the pooled scores, plus one above the maximum (no
    detection, the null score). ``starts=True`` counts each run of flagged points once (its
    :func:`alert_starts`); ``False`` counts every flagged point, as NAB does with raw anomaly
    scores. Like NAB's own figures this chooses the threshold **on the labels**: it is the
    benchmark's optimistic figure, never a substitute for a threshold chosen without them.

    >>> y = np.zeros(200, int); y[120] = 1                         # window (110, 129)
    >>> s = np.zeros(200); s[112:118] = 1.0; s[60] = 0.5
    >>> r = nab_optimise([y], [s], probation_frac=0)  # 0.5 flags the false alarm at 60 too; the alert at 112 is early
    >>> # (1 + scaled_sigmoid(-18/20) / scaled_sigmoid(-1)) / 2 = (1 + 0.9780 / 0.9866) / 2
    >>> r["threshold"] > 0.5, round(r["score"], 1)
    (True, 99.6)
    """
    ys = [_labels(y) for y in labels_list]
    ss = [_scores(s, y.size) for y, s in zip(ys, scores_list)]
    if len(ys) != len(ss) or not ys:
        raise ValueError("nab_optimise needs as many score series as label series (at least one)")
    pooled = np.concatenate(ss)
    cands = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n_thresholds)))
    cands = np.r_[cands, np.nextafter(pooled.max(), np.inf)]
    wins = [nab_windows(y, window_frac) for y in ys]
    best: dict[str, Any] = {"score": -np.inf}
    for thr in cands:
        res = []
        for y, s, w in zip(ys, ss, wins):
            f = s >= thr
            res.append(nab_score(y, alert_starts(f) if starts else f, profile, windows=w, probation_frac=probation_frac))
        sc = nab_corpus(res)
        if sc > best["score"]:
            best = {"score": sc, "threshold": float(thr), "per_series": [r["score"] for r in res]}
    return best
