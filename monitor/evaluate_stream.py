"""Streaming evaluation: run a detector online over a folder of labelled series and score it.

:func:`evaluate_stream` is what ``anomon evaluate-stream`` runs. Per series:

1. **Training span.** The first rows of the series that the protocol calls normal: ``train_rows``
   (the first N rows), ``train_frac`` (the first fraction), the training prefix a UCR anomaly archive
   file names, or the ``train/`` file of an SMD-style folder. With ``train_glob`` the files it
   matches (anomaly-free recordings, e.g. SKAB's ``anomaly-free.csv``) train **one** model for every
   series instead. Labels are never read in the training span.
2. **Normalisation.** Each channel is brought to the training span's robust scale (median, floored
   ``1.4826 * MAD``: :func:`models.normalize.robust_location_scale`), as a bundle's calibration does.
3. **Fit and threshold without test labels.** The training windows are split in time: the detector
   is fitted on the first ``1 - calib_frac`` of them and the threshold is the ``1 - fpr`` quantile of
   the scores of the rest (held out, so a detector that memorises its training windows is not
   calibrated on them). With ``likelihood=True`` the window scores pass through the anomaly
   likelihood (:mod:`models.anomaly_likelihood`, Ahmad et al. 2017) and the threshold is the
   paper's fixed rule instead: log-likelihood >= ``likelihood_threshold`` (0.5: L >= 1 - 1e-5).
4. **Online run.** The whole series (training span, then the rest) is fed in order, in records of
   ``chunk`` readings, to the daemon's own :class:`streams.windowing.Windower` (one series = one
   key); every complete window is scored as it comes. A window's score belongs to its **end point**;
   with a stride S > 1 a point holds the score of the last window ending at or before it (what a
   monitor knows at that time).
5. **Detections.** ``flag = score >= threshold``; a run of flagged points is one alert, and its
   first point (the alert start, :func:`monitor.stream_metrics.alert_starts`) is the detection
   NAB counts.
6. **Metrics** on the test span only (the points after the training span): NAB standard / low-FP /
   low-FN (windows from the test labels), range-based P/R/F1 of the alerts, point-wise P/R/F1 at the
   threshold, ROC AUC and VUS-PR of the scores, UCR top-1 where the series holds exactly one
   anomaly, and the oracle best F1 (threshold on the labels; never a headline). Points of the test
   span before the first complete window have no score: they are counted (``unscored_points``),
   not scored.

``metrics.json`` holds ``series`` (per series), ``mean`` (the mean over series of every figure)
and ``nab_corpus`` (NAB's own normalisation of the summed raw scores, per profile).
"""
from __future__ import annotations

import fnmatch
import gzip
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor import stream_metrics as sm
from monitor.errors import UserError

log = logging.getLogger("anomon.evaluate_stream")

#: Label columns looked for, in this order, when ``label_col`` is not given.
LABEL_COLUMNS = ("label", "labels", "anomaly", "is_anomaly", "anomaly_label", "outlier")
#: Columns never used as values (SKAB's changepoint marks, time columns).
_NON_VALUE = {"changepoint", "changepoints", "timestamp", "datetime", "time", "date"}
_UCR_RE = re.compile(r"UCR_Anomaly_.+_\d+_\d+_\d+$")
_SERIES_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
METRICS_VERSION = 1


@dataclass
class LabelledSeries:
    """One series: ``values`` (n, C) float64, ``labels`` (n,) 0/1, and its training span ``[0, train_end)``."""

    name: str
    values: np.ndarray
    labels: np.ndarray
    train_end: int | None
    source: str
    changepoints: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])


# --------------------------------------------------------------------------- loading
def _suffix(p: Path) -> str:
    name = p.name.lower()
    for s in _SERIES_SUFFIXES:
        if name.endswith(s):
            return s
    return ""


def _open_text(p: Path):
    return gzip.open(p, "rt", encoding="utf-8", errors="replace") if p.name.lower().endswith(".gz") \
        else open(p, encoding="utf-8", errors="replace")


def _read_csv(p: Path, label_col: str | None, need_labels: bool) -> LabelledSeries:
    """A CSV/TSV with a header: the separator sniffed (``,``, ``;`` or tab), a label column, numeric values."""
    import pandas as pd

    try:
        with _open_text(p) as f:
            head = f.readline()
    except OSError as exc:
        raise UserError(f"{p}: cannot read: {exc}") from None
    if not head.strip():
        raise UserError(f"{p}: empty file; remove it from the folder")
    sep = max((",", ";", "\t"), key=head.count)
    try:
        df = pd.read_csv(p, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{p}: malformed CSV: {str(exc).splitlines()[0]}") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    lab = None
    if label_col is not None:
        if label_col not in df.columns:
            if need_labels:
                raise UserError(f"{p}: no label column {label_col!r} (the file has {list(map(str, df.columns))}); "
                                "pass --label-col NAME")
        else:
            lab = label_col
    else:
        lab = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
    if lab is None and need_labels:
        raise UserError(f"{p}: no label column (looked for {', '.join(LABEL_COLUMNS)}; the file has "
                        f"{list(map(str, df.columns))}); add a 0/1 label column or pass --label-col NAME")
    cp = None
    for c in ("changepoint", "changepoints"):
        if c in cols:
            cp = pd.to_numeric(df[cols[c]], errors="coerce").fillna(0).to_numpy() > 0
    value_cols, skipped = [], []
    for c in df.columns:
        if c == lab or str(c).strip().lower() in _NON_VALUE:
            continue
        if pd.api.types.is_numeric_dtype(df[c]):
            value_cols.append(c)
            continue
        num = pd.to_numeric(df[c], errors="coerce")
        if num.notna().mean() >= 0.9:  # a numeric column with a few bad fields: say where, never drop it
            r = int(np.flatnonzero((num.isna() & df[c].notna()).to_numpy())[0])
            raise UserError(f"{p}: row {r + 2}, column {c!r}: {df[c].iloc[r]!r} is not a number; fix or drop the row")
        skipped.append(str(c))
    if skipped:
        log.warning("%s: text column(s) %s are not values and are not used", p, skipped)
    if not value_cols:
        raise UserError(f"{p}: no numeric value column besides the labels; the file has {list(map(str, df.columns))}")
    vals = df[value_cols].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise UserError(f"{p}: row {r + 2}, column {value_cols[c]!r}: missing or non-finite value; "
                        "fill or drop such rows first")
    if lab is not None:
        y = pd.to_numeric(df[lab], errors="coerce").to_numpy()
        okay = np.isin(y, (0, 1))
        if not okay.all():
            r = int(np.flatnonzero(~okay)[0])
            raise UserError(f"{p}: row {r + 2}: label {df[lab].iloc[r]!r} in column {lab!r} is not 0 or 1")
        y = y.astype(np.int64)
    else:
        y = np.zeros(len(df), np.int64)
    return LabelledSeries(p.stem, vals, y, None, str(p), cp, {"columns": [str(c) for c in value_cols],
                                                             "skipped_columns": skipped})


def _read_ucr(p: Path) -> LabelledSeries:
    from streams.datasets.series import parse_ucr_anomaly_name

    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    info = parse_ucr_anomaly_name(name)
    import pandas as pd

    try:
        df = pd.read_csv(p, header=None, sep=r"\s+", dtype=np.float64)
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{p}: expected numbers separated by whitespace: {str(exc).splitlines()[0]}") from None
    v = df.to_numpy(dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    b, e = info["anomaly_begin"], info["anomaly_end"]
    if e > v.size:
        raise UserError(f"{p}: anomaly end {e} (from the file name) is past the series length {v.size}")
    y = np.zeros(v.size, np.int64)
    y[b - 1:e] = 1  # the archive counts from 1, both ends inclusive
    return LabelledSeries(name[:-4] if name.lower().endswith(".txt") else name, v[:, None], y, info["train_end"],
                          str(p), None, {"ucr": info})


def _read_smd(root: Path) -> list[LabelledSeries]:
    """An SMD-style folder: ``train/X``, ``test/X``, ``test_label/X`` (one 0/1 a line); train then test = one series."""
    out = []
    for tp in sorted((root / "test").iterdir()):
        if not _suffix(tp):
            continue
        stem = tp.name.split(".")[0]
        trs = [q for q in (root / "train").glob(stem + ".*") if _suffix(q)]
        labs = [q for q in (root / "test_label").glob(stem + ".*") if _suffix(q)]
        if not trs or not labs:
            raise UserError(f"{tp}: no matching train/{stem}.* or test_label/{stem}.* file; an SMD-style folder "
                            "needs all three")
        try:
            tr = np.loadtxt(trs[0], delimiter=",", ndmin=2)
            te = np.loadtxt(tp, delimiter=",", ndmin=2)
            y = np.loadtxt(labs[0], ndmin=1)
        except ValueError as exc:
            raise UserError(f"{tp}: cannot read numbers: {exc}") from None
        if tr.shape[1] != te.shape[1]:
            raise UserError(f"{tp}: {te.shape[1]} columns but {trs[0]} has {tr.shape[1]}")
        if y.shape[0] != te.shape[0] or not np.isin(y, (0, 1)).all():
            raise UserError(f"{labs[0]}: expected one 0/1 label per test row ({te.shape[0]}), got {y.shape[0]} values")
        out.append(LabelledSeries(stem, np.vstack([tr, te]), np.r_[np.zeros(len(tr), np.int64), y.astype(np.int64)],
                                  len(tr), str(tp), None, {"smd": True}))
    return out


def _read_nab(p: Path, labels_json: Path) -> LabelledSeries:
    from streams.datasets import DatasetError
    from streams.datasets.series import load_nab

    try:
        s = load_nab(p, labels_json)
    except (DatasetError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    return LabelledSeries(p.stem, s.values, s.labels, None, str(p), None, {"nab_windows": s.meta.get("windows")})


def _nab_labels_file(root: Path) -> Path | None:
    for q in sorted(root.glob("*.json")):
        try:
            d = json.loads(q.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d and all(isinstance(v, list) for v in d.values()):
            return q
    return None


def load_folder(data: str | Path, *, label_col: str | None = None, train_glob: str | None = None,
                exclude: str | None = None) -> tuple[list[LabelledSeries], list[LabelledSeries]]:
    """The labelled series under ``data`` and the training-only series ``train_glob`` matches.

    Recognised: CSV/TSV files with a header and a 0/1 label column (any of :data:`LABEL_COLUMNS`,
    or ``label_col``; ``,``, ``;`` or tab separated; ``.gz`` too), UCR anomaly archive files
    (``NNN_UCR_Anomaly_NAME_TRAIN_BEGIN_END.txt[.gz]``), NAB-style CSVs (``timestamp,value``) with a
    labels JSON (``combined_windows.json``-style) in the folder, and an SMD-style folder
    (``train/``, ``test/``, ``test_label/``). Files are searched recursively; README/LICENSE files,
    other extensions and paths (relative to ``data``) matching ``exclude`` are skipped.
    """
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder; point it at a folder of labelled series files")
    if (root / "train").is_dir() and (root / "test").is_dir() and (root / "test_label").is_dir():
        return _read_smd(root), []
    nab_json = _nab_labels_file(root)
    series: list[LabelledSeries] = []
    train: list[LabelledSeries] = []
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if not _suffix(p) or p.name.upper().startswith(("README", "LICENSE", "SHA256")):
            continue
        if exclude and fnmatch.fnmatch(rel, exclude):
            continue
        if train_glob and fnmatch.fnmatch(rel, train_glob):
            train.append(_read_csv(p, label_col, need_labels=False))
            continue
        stem = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
        if _UCR_RE.search(stem.rsplit(".", 1)[0]):
            series.append(_read_ucr(p))
        elif _suffix(p).startswith((".csv", ".tsv")):
            if nab_json is not None and label_col is None:
                with _open_text(p) as f:
                    head = f.readline().strip().lower().split(",")
                if "timestamp" in head and "value" in head and not set(LABEL_COLUMNS) & set(head):
                    series.append(_read_nab(p, nab_json))
                    continue
            series.append(_read_csv(p, label_col, need_labels=True))
        else:
            raise UserError(f"{p}: a .txt file that is not a UCR anomaly archive file "
                            "(NNN_UCR_Anomaly_NAME_TRAIN_BEGIN_END.txt); convert it to a CSV with a label column")
    if train_glob and not train:
        raise UserError(f"--train-file-glob {train_glob!r} matches no file under {root} (paths are relative to it)")
    if not series:
        raise UserError(f"--data {root}: no labelled series found (CSV with a label column, UCR anomaly archive "
                        ".txt, NAB CSV + labels JSON, or train/ test/ test_label/)")
    for s in [*series, *train]:
        rel = Path(s.source).relative_to(root).as_posix()
        s.meta["rel"] = rel
        if "/" in rel:  # files in subfolders are named by their path (SKAB: valve1/0, other/0)
            s.name = rel.rsplit("/", 1)[0] + "/" + s.name
    return series, train


# --------------------------------------------------------------------------- running one series
def _windows(X: np.ndarray, T: int, S: int) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    if len(X) < T:
        return np.zeros((0, T, X.shape[1]), np.float32)
    return np.ascontiguousarray(sliding_window_view(X, T, axis=0)[::S].transpose(0, 2, 1), dtype=np.float32)


class _Scorer:
    """A fitted detector and its component: window batches (k, T, C) -> scores (k,)."""

    def __init__(self, det: Any, component: str):
        self.det, self.component = det, component

    def __call__(self, W: np.ndarray) -> np.ndarray:
        X = W.reshape(len(W), -1) if self.det.input_kind == "tabular" else W
        return np.asarray(self.det.score(X)[self.component], dtype=np.float64)


def fit_scorer(detector: str, params: dict[str, Any], windows: np.ndarray, component: str | None,
               calib_frac: float, fpr: float) -> tuple[_Scorer, float, dict[str, Any]]:
    """Fit ``detector`` on the first ``1 - calib_frac`` of ``windows`` (in time order), threshold at the
    ``1 - fpr`` quantile of the held-out rest's scores. Returns (scorer, threshold, info)."""
    from models import get_detector
    from models.base import DetectorError

    cls = detector if isinstance(detector, type) else get_detector(detector)
    try:
        det = cls(**params)
    except TypeError as exc:
        raise UserError(f"--params for {detector}: {exc} (its parameters: {', '.join(cls._param_names())})") from None
    comp = component or cls.default_component_name()
    if comp not in [c.name for c in cls.components]:
        raise UserError(f"--component {comp!r}: {detector} has {', '.join(c.name for c in cls.components)}")
    n_cal = max(int(round(calib_frac * len(windows))), 1)
    n_fit = len(windows) - n_cal
    if n_fit < 2:
        raise UserError(f"the training span gives {len(windows)} windows: too few to fit and calibrate; "
                        "give a longer training span, or a shorter --window / --stride")
    scorer = _Scorer(det, comp)
    X = windows[:n_fit]
    try:
        det.fit(X.reshape(len(X), -1) if det.input_kind == "tabular" else X)
        cal = scorer(windows[n_fit:])
    except DetectorError as exc:
        raise UserError(f"{detector}: {exc}") from None
    thr = float(np.quantile(cal, 1.0 - fpr))
    return scorer, thr, {"fit_windows": int(n_fit), "calibration_windows": int(n_cal), "component": comp}


def stream_scores(values: np.ndarray, name: str, scorer: Any, T: int, S: int, chunk: int = 64,
                  batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``values`` (n, C) in order, ``chunk`` readings a record, through the daemon's
    :class:`~streams.windowing.Windower` (series key ``name``); score the windows as they complete
    (in micro-batches of up to ``batch``). Returns (window end indices, window scores)."""
    from streams.records import Readings
    from streams.windowing import ManualClock, Windower, WindowSpec

    n, C = values.shape
    w = Windower(WindowSpec(length=T, stride=S, channels=C, pack_after_s=None), clock=ManualClock())
    ends: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    pending: list[Any] = []
    held = 0

    def flush() -> None:
        nonlocal pending, held
        if pending:
            X = np.concatenate([b.X for b in pending])
            scores.append(scorer(X))
            ends.append(np.concatenate([b.end_ts for b in pending]).astype(np.int64))
            pending, held = [], 0

    ts = np.arange(n, dtype=np.int64)
    for off, i in enumerate(range(0, n, chunk)):
        batches, rejected = w.add(0, off, Readings(name, ts[i:i + chunk], values[i:i + chunk]))
        if rejected:  # (cannot happen with increasing index timestamps; never drop silently)
            raise RuntimeError(f"{name}: the windower rejected readings: {[r.message for r in rejected]}")
        for b in batches:
            pending.append(b)
            held += len(b)
        if held >= batch:
            flush()
    flush()
    if not ends:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ends), np.concatenate(scores)


def to_points(n: int, ends: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-point scores: each window's score at its end point, carried forward to the next end
    (NaN before the first window).

    >>> to_points(6, np.array([2, 4]), np.array([1.0, 3.0])).tolist()
    [nan, nan, 1.0, 1.0, 3.0, 3.0]
    """
    out = np.full(n, np.nan)
    if len(ends):
        idx = np.searchsorted(ends, np.arange(n), side="right") - 1
        ok = idx >= 0
        out[ok] = scores[idx[ok]]
    return out


def series_metrics(labels: np.ndarray, scores: np.ndarray, flags: np.ndarray, vus_buffer: int,
                   nab_windows: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Every streaming metric of one (test) span; see the module docstring."""
    det = sm.alert_starts(flags)
    out: dict[str, Any] = {"points": int(labels.size), "anomalous_points": int(labels.sum()),
                           "anomaly_ranges": len(sm.ranges(labels)), "alerts": int(det.sum()),
                           "flagged_points": int(flags.sum())}
    nab_raw = {}
    for prof in sm.NAB_PROFILES:
        r = sm.nab_score(labels, det, prof, windows=nab_windows, probation_frac=0.0)
        out[f"nab_{prof}"] = r["score"]
        nab_raw[prof] = {k: r[k] for k in ("raw", "null", "perfect", "tp", "fp", "fn", "windows")}
    out["nab_detail"] = nab_raw
    rp = sm.range_precision_recall(labels, flags)
    out.update(range_precision=rp["precision"], range_recall=rp["recall"], range_f1=rp["f1"])
    pw = sm.pointwise_prf(labels, flags)
    out.update(point_precision=pw["precision"], point_recall=pw["recall"], point_f1=pw["f1"],
               point_tp=int(np.count_nonzero(flags & (labels > 0))), point_fp=int(np.count_nonzero(flags & (labels == 0))),
               point_fn=int(np.count_nonzero(~flags & (labels > 0))))
    out["roc_auc"] = sm.roc_auc(labels, scores)
    out["vus_pr"] = sm.vus_pr(labels, scores, max_buffer=vus_buffer, n_thresholds=250) if labels.any() else float("nan")
    out["ucr_top1"] = sm.ucr_top1(labels, scores)
    out["ucr_top1_pm100"] = sm.ucr_top1(labels, scores, tolerance=100)
    bf = sm.best_f1(labels, scores)
    out["oracle_best_point_f1"] = bf["f1"]
    return out


#: Figures averaged in ``mean`` (the headline table).
HEADLINE = ("nab_standard", "nab_reward_low_FP_rate", "nab_reward_low_FN_rate", "range_precision", "range_recall",
            "range_f1", "point_precision", "point_recall", "point_f1", "roc_auc", "vus_pr", "ucr_top1",
            "ucr_top1_pm100", "oracle_best_point_f1")


def _clean(x: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _seeded(detector: str, params: dict[str, Any], seed: int | None) -> dict[str, Any]:
    from models import get_detector

    p = dict(params)
    if seed is not None:
        names = (detector if isinstance(detector, type) else get_detector(detector))._param_names()
        for k in ("seed", "random_state"):
            if k in names and k not in p:
                p[k] = seed
    return p


def evaluate_stream(data: str | Path | None, detector: Any, *, params: dict[str, Any] | None = None, window: int = 32,
                    stride: int = 1, train_frac: float | None = None, train_rows: int | None = None,
                    train_glob: str | None = None, label_col: str | None = None, component: str | None = None,
                    fpr: float = 0.01, calib_frac: float = 0.2, likelihood: bool = False,
                    likelihood_params: dict[str, Any] | None = None, likelihood_threshold: float = 0.5,
                    train_stride: int | None = None, seed: int | None = 0, chunk: int = 64, exclude: str | None = None,
                    series: list[LabelledSeries] | None = None, train_series: list[LabelledSeries] | None = None,
                    nab_windows: Any = None) -> dict[str, Any]:
    """Run ``detector`` (a registered name, or a :class:`models.base.Detector` subclass) online over
    every labelled series of ``data``; returns the metrics dict (``series``, ``mean``, ``nab_corpus``,
    ``config``). See the module docstring for the protocol.

    ``series`` / ``train_series`` give loaded series instead of ``data``; ``nab_windows``, a function
    ``(LabelledSeries, test_start) -> windows`` (inclusive index pairs of the test span), adds NAB
    scores on those windows beside the default ones: ``nab_custom_<profile>`` and ``nab_custom_detail``
    per series, ``nab_custom_corpus`` overall (the SKAB changepoint protocol uses it).
    """
    from models.anomaly_likelihood import AnomalyLikelihood
    from models.normalize import robust_location_scale

    if window < 1 or stride < 1:
        raise UserError("--window and --stride must be positive integers")
    if train_frac is not None and not 0.0 < train_frac < 1.0:
        raise UserError(f"--train-frac must be in (0, 1), got {train_frac}")
    if not 0.0 < fpr < 1.0:
        raise UserError(f"--fpr must be in (0, 1), got {fpr}")
    if series is None:
        series, train_series = load_folder(data, label_col=label_col, train_glob=train_glob, exclude=exclude)
    train_series = train_series or []
    params = _seeded(detector, params or {}, seed)
    T, S, St = window, stride, train_stride or stride
    t0 = time.perf_counter()

    shared = None
    if train_series:
        C = {s.values.shape[1] for s in train_series}
        if len(C) != 1:
            raise UserError(f"--train-file-glob files have different channel counts: {sorted(C)}")
        pooled = np.vstack([s.values for s in train_series])
        loc, sc, _ = robust_location_scale(pooled)
        W = np.concatenate([_windows((s.values - loc) / sc, T, St) for s in train_series])
        if len(W) == 0:
            raise UserError(f"the --train-file-glob files are shorter than one window ({T} rows)")
        shared = (loc, sc, *fit_scorer(detector, params, W, component, calib_frac, fpr))

    per: dict[str, dict[str, Any]] = {}
    plots: dict[str, dict[str, Any]] = {}
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise UserError(f"several series are named {dup[0]!r}: give each series a distinct name")
    for s in series:
        n = len(s)
        if n < T:
            raise UserError(f"{s.source}: {n} rows, shorter than one window (--window {T}); use a shorter window "
                            "or drop the file")
        if train_rows is not None:
            tr_end = int(train_rows)
        elif train_frac is not None:
            tr_end = int(math.floor(train_frac * n))
        elif s.train_end is not None:
            tr_end = int(s.train_end)
        elif shared is not None:
            tr_end = 0
        else:
            raise UserError(f"{s.source}: no training span: pass --train-frac F, --train-rows N or "
                            "--train-file-glob GLOB (UCR archive files and SMD folders carry their own)")
        if tr_end >= n:
            raise UserError(f"{s.source}: the training span ({tr_end} rows) leaves no test rows of {n}")
        if shared is None:
            if tr_end < T + 2:
                raise UserError(f"{s.source}: the training span has {tr_end} rows, fewer than a window (--window {T}) "
                                "plus two; give a longer one")
            loc, sc, _ = robust_location_scale(s.values[:tr_end])
            Z = (s.values - loc) / sc
            scorer, thr, info = fit_scorer(detector, params, _windows(Z[:tr_end], T, St), component, calib_frac, fpr)
        else:
            if tr_end >= 2 * T:  # the series' own normal part sets its scale; else the training files'
                loc, sc, _ = robust_location_scale(s.values[:tr_end])
            else:
                loc, sc = shared[0], shared[1]
            Z = (s.values - loc) / sc
            scorer, thr, info = shared[2], shared[3], dict(shared[4], shared_model=True)
        ends, wscores = stream_scores(Z, s.name, scorer, T, S, chunk=chunk)
        if likelihood:
            al = AnomalyLikelihood(**(likelihood_params or {}))
            wscores = al.update_many(wscores, log=True)
            thr = float(likelihood_threshold)
        pts = to_points(n, ends, wscores)
        first = int(ends[0]) if len(ends) else n
        start = max(tr_end, first)
        unscored = start - tr_end
        y, sc_t = s.labels[start:], pts[start:]
        flags = sc_t >= thr
        m = series_metrics(y, sc_t, flags, vus_buffer=T)
        if nab_windows is not None:
            det_t = sm.alert_starts(flags)
            m["nab_custom_detail"] = {}
            for prof in sm.NAB_PROFILES:
                r = sm.nab_score(y, det_t, prof, windows=nab_windows(s, start), probation_frac=0.0)
                m[f"nab_custom_{prof}"] = r["score"]
                m["nab_custom_detail"][prof] = {k: r[k] for k in ("raw", "null", "perfect", "tp", "fp", "fn", "windows")}
        m.update(train_rows=tr_end, test_start=start, unscored_points=unscored, windows_scored=int(len(ends)),
                 threshold=thr, train_anomalous_points=int(s.labels[:tr_end].sum()), source=s.meta.get("rel", s.source),
                 **info)
        per[s.name] = m
        plots[s.name] = {"x": s.values[:, 0], "labels": s.labels, "scores": pts, "threshold": thr, "start": start}
        log.info("%s: NAB standard %.1f, range F1 %.3f, point F1 %.3f, %d alerts", s.name, m["nab_standard"],
                 m["range_f1"], m["point_f1"], m["alerts"])
    mean = {k: _nanmean([per[s][k] for s in per]) for k in HEADLINE}
    corpus = {prof: sm.nab_corpus([per[s]["nab_detail"][prof] for s in per]) for prof in sm.NAB_PROFILES}
    custom = ({prof: sm.nab_corpus([per[s]["nab_custom_detail"][prof] for s in per]) for prof in sm.NAB_PROFILES}
              if nab_windows is not None else None)
    cfg = {"detector": getattr(detector, "name", detector), "params": params, "window": T, "stride": S, "train_stride": St,
           "train_frac": train_frac, "train_rows": train_rows, "train_glob": train_glob, "fpr": fpr,
           "calib_frac": calib_frac, "likelihood": likelihood, "likelihood_params": likelihood_params or {},
           "likelihood_threshold": likelihood_threshold if likelihood else None, "seed": seed, "chunk": chunk,
           "data": str(data) if data is not None else None}
    out = {"format_version": METRICS_VERSION, "kind": "evaluate-stream", "config": cfg, "n_series": len(per),
           "mean": mean, "nab_corpus": corpus, "series": per, "seconds": round(time.perf_counter() - t0, 3)}
    if custom is not None:
        out["nab_custom_corpus"] = custom
    out["_plots"] = plots
    return out


def _nanmean(v: list[Any]) -> float | None:
    a = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


# --------------------------------------------------------------------------- outputs
def write_outputs(result: dict[str, Any], out: str | Path, html: bool = True, max_figures: int = 12) -> dict[str, Path]:
    """Write ``metrics.json`` (strict JSON: NaN as null) and, with ``html``, ``report.html``."""
    from monitor.report import write_metrics

    plots = result.pop("_plots", {})
    paths = {"metrics": write_metrics(out, _clean(result))}
    if html:
        paths["report"] = _report(result, plots, out, max_figures)
    return paths


def _report(result: dict[str, Any], plots: dict[str, Any], out: str | Path, max_figures: int) -> Path:
    from monitor.report import Report, use_agg
    from monitor.report_figures import series_figure

    use_agg()
    cfg = result["config"]
    rep = Report(f"anomon evaluate-stream: {cfg['detector']} on {result['n_series']} series")
    m = result["mean"]
    rep.cards([("NAB standard", result["nab_corpus"]["standard"], "corpus-normalised"),
               ("NAB low FP", result["nab_corpus"]["reward_low_FP_rate"], ""),
               ("NAB low FN", result["nab_corpus"]["reward_low_FN_rate"], ""),
               ("range F1", m["range_f1"], "mean over series"), ("point F1", m["point_f1"], "no point adjustment"),
               ("VUS-PR", m["vus_pr"], f"buffers 0..{cfg['window']}"), ("ROC AUC", m["roc_auc"], "point-wise")])
    rep.text("Thresholds were chosen without test labels ("
             + (f"log anomaly likelihood >= {cfg['likelihood_threshold']}" if cfg["likelihood"]
                else f"the {1 - cfg['fpr']:.3g} quantile of held-out training scores")
             + "); detections are alert starts. oracle_best_point_f1 picks its threshold on the test labels and is "
             "shown only for reference.", "note")
    rep.link("metrics.json", "metrics.json", "All figures: ")
    rep.heading("Per series", id="series")
    cols = ["series", "nab_standard", "range_f1", "point_f1", "vus_pr", "roc_auc", "ucr_top1", "alerts",
            "anomaly_ranges", "unscored_points"]
    rows = [{"series": k, **{c: v.get(c) for c in cols[1:]}} for k, v in result["series"].items()]
    rep.table(rows, cols)
    rep.heading("Configuration", id="config")
    rep.json(cfg)
    rep.heading("Scores", id="figures")
    for name in list(plots)[:max_figures]:
        p = plots[name]
        n = len(p["x"])
        step = max(n // 4000, 1)
        t = np.arange(n)[::step]
        spans = [(a, b - 1) for a, b in sm.ranges(p["labels"])]
        flags = np.nan_to_num(p["scores"], nan=-np.inf) >= p["threshold"]
        flags[:p["start"]] = False
        alerts = [(a, b - 1) for a, b in sm.ranges(flags)]
        rep.figure(series_figure(f"{name} (test from row {p['start']})", t, p["x"][::step], spans, t,
                                 np.nan_to_num(p["scores"][::step], nan=np.nanmin(p["scores"]) if np.isfinite(
                                     p["scores"]).any() else 0.0), p["threshold"], alerts, "score",
                                 time_label="row"))
    if len(plots) > max_figures:
        rep.text(f"({len(plots) - max_figures} more series not plotted)", "note")
    return rep.write(out)
