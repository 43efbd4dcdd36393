"""Training a servable bundle from your own data: files (or a topic's history) -> windows -> a bundle.

Shared by ``anomon train`` and ``anomon retrain``. The steps:

1. :func:`read_series` reads CSV/TSV/Parquet (``--time-col``, ``--value-cols``, ``--series-col``,
   ``--label-col``), NAB-style CSVs (``timestamp,value``), ``.npy``/``.npz`` arrays, WFDB records, or a
   folder of such files (one series each, named after the file). Every problem is a one-line
   :class:`TrainingDataError` naming the file, the row (1-based data row, and the file line for
   text files) and the column. ``sort`` / ``dedupe`` repair unsorted / duplicate timestamps and
   count what they changed.
2. :func:`split_series` cuts each series into a training head and a held-back calibration tail
   (``calibration_fraction``, at least one window): training windows lie entirely in the head,
   calibration windows entirely in the tail, so they never overlap. Windows touching a labelled
   anomaly go to neither; they (and the tail) are what the labelled metrics are computed on.
3. :class:`SeriesNorm` ("per-series"): robust statistics (median, IQR / 1.349) of each series'
   own training readings, per channel, stored in the bundle (``anomon.json`` field ``series_norm``,
   format 1) and applied by the daemon to each window by its series id before the model sees it
   (a series the model never saw uses the statistics pooled over every training series).
4. :func:`train_bundle` fits the detector, calibrates thresholds at ``fpr`` on the tail windows,
   writes ``config.json``, ``weights.safetensors``, ``anomon.json`` (:func:`monitor.modelstore.save_bundle`),
   ``train.json`` (spans, counts, metrics on labels) and ``report.html``.

Examples
--------
>>> import numpy as np
>>> s = SeriesData("a", "a.npy", np.arange(100.0), np.arange(100.0)[:, None], None, np.arange(1, 101))
>>> sp = split_series([s], window=10, stride=5, calibration_fraction=0.2)
>>> sp.train.shape, sp.calibration.shape, sp.spans["a"]["calibration"]
((15, 10, 1), (3, 10, 1), [80, 100])
>>> norm = SeriesNorm.fit({"a": np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])})
>>> norm.apply(np.full((1, 2, 1), 2.0, dtype=np.float32), ["a"]).ravel().tolist()
[0.0, 0.0]
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from monitor.errors import UserError

log = logging.getLogger("anomon.training")

TRAIN_FILE = "train.json"
#: format of train.json written by this module
TRAIN_FORMAT = 1
#: format of the ``series_norm`` field of anomon.json
SERIES_NORM_FORMAT = 1
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npy", ".npz")
#: column names taken as the time column when ``--time-col`` is not given (NAB: ``timestamp``)
TIME_NAMES = ("timestamp", "datetime", "time", "ts")
NORMALIZE_MODES = ("per-series", "global", "none")


class TrainingDataError(UserError):
    """Training data that cannot be used: names the file, the row and the column, and what to do."""


# ----------------------------------------------------------------------------- reading
@dataclass
class SeriesData:
    """One series: ``ts`` (n,) float64, ``values`` (n, C) float64, ``labels`` (n,) 0/1 or None, and
    ``rows`` (n,) the 1-based data row of each reading in ``source`` (for messages)."""

    name: str
    source: str
    ts: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray
    columns: list[str] = field(default_factory=list)
    text: bool = False  # a text file: messages also give the file line (row + 1, after the header)
    time_col: str | None = None  # the time column (None: readings are in row order)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class ReadOptions:
    time_col: str | None = None
    value_cols: Sequence[str] | None = None
    series_col: str | None = None
    label_col: str | None = None
    sort: bool = False
    dedupe: bool = False


def _where(source: str, row: int, column: Any, text: bool) -> str:
    line = f" (line {row + 1})" if text else ""
    return f"{source}: row {row}{line}, column {column!r}"


def _suffix(p: Path) -> str:
    s = p.suffix.lower()
    if s == ".gz":
        return "".join(x.lower() for x in p.suffixes[-2:])
    return s


def _sniff_sep(p: Path) -> str:
    import gzip

    opener = gzip.open if p.suffix.lower() == ".gz" else open
    with opener(p, "rt", errors="replace") as f:
        head = f.readline()
    counts = {sep: head.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_frame(p: Path):
    import pandas as pd

    suffix = _suffix(p)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p), False
        except ImportError as exc:
            raise TrainingDataError(f"{p}: reading Parquet needs pyarrow (pip install pyarrow): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on a bad file
            raise TrainingDataError(f"{p}: not a readable Parquet file ({exc})") from None
    try:
        return pd.read_csv(p, sep=_sniff_sep(p), skipinitialspace=True), True
    except pd.errors.EmptyDataError:
        raise TrainingDataError(f"{p}: the file is empty (expected a header row and readings)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{p}: not a readable CSV file ({str(exc).strip()})") from None


def _numeric(col, source: str, name: str, text: bool, rows: np.ndarray) -> np.ndarray:
    """A column as float64; a cell that is not a number, NaN/empty or inf is an error naming it."""
    import pandas as pd

    s = pd.Series(col).reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.float64)
    v = pd.to_numeric(s, errors="coerce")
    bad = v.isna() & s.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TrainingDataError(f"{_where(source, int(rows[i]), name, text)}: {s.iloc[i]!r} is not a number "
                                "(fix the cell, or leave the column out with --value-cols)")
    a = v.to_numpy(dtype=np.float64)
    _finite(a, source, name, text, rows)
    return a


def _finite(a: np.ndarray, source: str, name: Any, text: bool, rows: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "a missing value (NaN)" if np.isnan(a[i]) else f"{a[i]!r} (infinite)"
        raise TrainingDataError(f"{_where(source, int(rows[i]), name, text)}: {what}; "
                                "fill or drop the row (readings must be finite numbers)")


def _labels(col, source: str, name: str, text: bool, rows: np.ndarray) -> np.ndarray:
    a = _numeric(col, source, name, text, rows)
    bad = ~np.isin(a, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TrainingDataError(f"{_where(source, int(rows[i]), name, text)}: label {a[i]:g} is not 0 or 1")
    return a.astype(np.int8)


def _need(df, cols: Sequence[str], p: Path, flag: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise TrainingDataError(f"{p}: column {missing[0]!r} ({flag}) not found; the file has columns "
                                f"{[str(c) for c in df.columns]}")


def _table_series(p: Path, opt: ReadOptions) -> list[SeriesData]:
    from streams.datasets import DatasetError
    from streams.datasets.series import parse_timestamps

    df, text = _read_frame(p)
    df.columns = [str(c).strip() for c in df.columns]
    if not len(df):
        raise TrainingDataError(f"{p}: no readings (only a header)")
    time_col = opt.time_col
    if time_col is None:
        time_col = next((c for c in df.columns if c.lower() in TIME_NAMES), None)
    for flag, col in (("--time-col", opt.time_col), ("--series-col", opt.series_col), ("--label-col", opt.label_col)):
        if col is not None:
            _need(df, [col], p, flag)
    used = {c for c in (time_col, opt.series_col, opt.label_col) if c is not None}
    if opt.value_cols:
        value_cols = list(opt.value_cols)
        _need(df, value_cols, p, "--value-cols")
    else:
        value_cols = [c for c in df.columns if c not in used]
        if not value_cols:
            raise TrainingDataError(f"{p}: no value columns besides {sorted(used)} (name them with --value-cols)")
    rows_all = np.arange(1, len(df) + 1)
    values = np.column_stack([_numeric(df[c], str(p), c, text, rows_all) for c in value_cols])
    labels = _labels(df[opt.label_col], str(p), opt.label_col, text, rows_all) if opt.label_col else None
    if time_col is not None:
        try:
            ts, _ = parse_timestamps(df[time_col], source=str(p), name=f"column {time_col!r}")
        except DatasetError as exc:
            raise TrainingDataError(str(exc)) from None
    else:
        ts = rows_all.astype(np.float64)
    if opt.series_col:
        keys = df[opt.series_col].astype(str).to_numpy()
        _, first = np.unique(keys, return_index=True)
        groups = [keys[i] for i in sorted(first)]
        idx = {g: np.flatnonzero(keys == g) for g in groups}
    else:
        idx = {p.name.split(".")[0]: np.arange(len(df))}
    cols = [str(c) for c in value_cols]
    return [SeriesData(str(g), str(p), ts[i], values[i], None if labels is None else labels[i], rows_all[i], cols, text,
                       time_col) for g, i in idx.items()]


def _array_series(p: Path, opt: ReadOptions) -> list[SeriesData]:
    try:
        if _suffix(p) == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {p.name.split(".")[0]: np.load(p, allow_pickle=False)}
    except (ValueError, OSError) as exc:
        raise TrainingDataError(f"{p}: not a readable NumPy file without pickled objects ({exc})") from None
    label_keys = {k for k in arrays if k == "labels" or k.endswith("_labels")}
    names = [k for k in arrays if k not in label_keys]
    out = []
    for k in names:
        a = arrays[k]
        src = f"{p}[{k}]" if _suffix(p) == ".npz" else str(p)
        if a.dtype.kind not in "biuf":
            raise TrainingDataError(f"{src}: dtype {a.dtype} is not numeric")
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise TrainingDataError(f"{src}: shape {a.shape}; expected (readings,) or (readings, channels)")
        a = a.astype(np.float64)
        rows = np.arange(1, len(a) + 1)
        for j in range(a.shape[1]):
            _finite(a[:, j], src, j, False, rows)
        lab = arrays.get(f"{k}_labels", arrays.get("labels") if len(names) == 1 else None)
        if lab is not None:
            lab = np.asarray(lab).ravel()
            if len(lab) != len(a):
                raise TrainingDataError(f"{src}: {len(lab)} labels for {len(a)} readings")
            lab = _labels(lab, src, "labels", False, rows)
        out.append(SeriesData(k, src, rows.astype(np.float64), a, lab, rows, [str(j) for j in range(a.shape[1])]))
    return out


def _wfdb_series(p: Path) -> list[SeriesData]:
    from streams.datasets import DatasetError
    from streams.datasets.mitdb import load_wfdb_record

    try:
        rec = load_wfdb_record(p, annotation=None)
    except (DatasetError, FileNotFoundError) as exc:
        raise TrainingDataError(str(exc)) from None
    a = rec.signal
    rows = np.arange(1, len(a) + 1)
    src = str(p.with_suffix(".hea") if p.suffix != ".hea" else p)
    for j in range(a.shape[1]):
        _finite(a[:, j], src, rec.channels[j] if j < len(rec.channels) else j, False, rows)
    return [SeriesData(rec.record, src, (rows - 1) / rec.fs, a, None, rows, list(rec.channels))]


def _check_wfdb_rates(series: list[SeriesData], counts: dict[str, Any]) -> None:
    """WFDB records must share one sampling rate (a window counts readings); it goes in ``counts``."""
    rates = {s.name: round(1.0 / float(s.ts[1] - s.ts[0]), 6) for s in series
             if s.source.endswith(".hea") and len(s) > 1}
    if len(set(rates.values())) > 1:
        listed = ", ".join(f"{n} {r:g} Hz" for n, r in sorted(rates.items()))
        raise TrainingDataError(f"WFDB records at different sampling rates ({listed}): a window of --window readings "
                                "would span different times; train on records of one rate")
    if rates:
        counts["sample_rate_hz"] = next(iter(rates.values()))


def _read_one(p: Path, opt: ReadOptions) -> list[SeriesData]:
    s = _suffix(p)
    if s in TABLE_SUFFIXES:
        return _table_series(p, opt)
    if s in ARRAY_SUFFIXES:
        return _array_series(p, opt)
    if s == ".hea" or (not p.exists() and p.with_name(p.name + ".hea").is_file()):
        return _wfdb_series(p)
    raise TrainingDataError(f"{p}: unsupported file type {s or '(none)'!r} (expected .csv, .tsv, .parquet, "
                            ".npy, .npz, a WFDB record .hea, or a folder of these)")


def _select(s: SeriesData, idx: np.ndarray) -> SeriesData:
    """The rows ``idx`` (indices or a mask) of ``s``, in that order."""
    return SeriesData(s.name, s.source, s.ts[idx], s.values[idx], None if s.labels is None else s.labels[idx],
                      s.rows[idx], s.columns, s.text, s.time_col)


def _order(s: SeriesData, opt: ReadOptions, counts: dict[str, int]) -> SeriesData:
    """Check (or with sort / dedupe repair) that the timestamps strictly increase."""
    if len(s) < 2 or s.time_col is None:
        return s
    tcol = s.time_col
    d = np.diff(s.ts)
    back = np.flatnonzero(d < 0)
    if back.size:
        if not opt.sort:
            i = int(back[0]) + 1
            raise TrainingDataError(f"{_where(s.source, int(s.rows[i]), tcol, s.text)}: time {s.ts[i]:g} is "
                                    f"before the previous row's {s.ts[i - 1]:g} (series {s.name!r}); pass --sort "
                                    "to sort the rows by time")
        order = np.argsort(s.ts, kind="stable")
        counts["sorted_rows"] += int(np.sum(order != np.arange(len(order))))
        s = _select(s, order)
        d = np.diff(s.ts)
    dup = np.flatnonzero(d == 0)
    if dup.size:
        if not opt.dedupe:
            i = int(dup[0]) + 1
            raise TrainingDataError(f"{_where(s.source, int(s.rows[i]), tcol, s.text)}: time {s.ts[i]:g} repeats "
                                    f"row {int(s.rows[i - 1])}'s (series {s.name!r}); pass --dedupe to keep the "
                                    "last reading of each time")
        keep = np.ones(len(s), dtype=bool)
        keep[dup] = False  # of equal times keep the last
        counts["duplicate_rows_dropped"] += int((~keep).sum())
        s = _select(s, keep)
    return s


def read_series(path: str | Path, opt: ReadOptions | None = None) -> tuple[list[SeriesData], dict[str, Any]]:
    """Every series of a file or folder, checked; and counts (files, rows, sorted / deduplicated rows)."""
    opt = opt or ReadOptions()
    p = Path(path).expanduser()
    counts: dict[str, Any] = {"files": 0, "rows": 0, "sorted_rows": 0, "duplicate_rows_dropped": 0,
                              "skipped_files": []}
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        use = [f for f in files if _suffix(f) in TABLE_SUFFIXES + ARRAY_SUFFIXES or f.suffix == ".hea"]
        wfdb_parts = {f.with_suffix("").name for f in files if f.suffix == ".hea"}
        counts["skipped_files"] = [f.name for f in files if f not in use and f.with_suffix("").name not in wfdb_parts]
        if not use:
            raise TrainingDataError(f"{p}: no data files (.csv, .tsv, .parquet, .npy, .npz, .hea) in the folder")
    elif p.exists() or p.with_name(p.name + ".hea").is_file():
        use = [p]
    else:
        raise TrainingDataError(f"{p}: no such file or folder")
    out: list[SeriesData] = []
    for f in use:
        got = _read_one(f, opt)
        counts["files"] += 1
        counts["rows"] += sum(len(s) for s in got)
        out.extend(_order(s, opt, counts) for s in got)
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TrainingDataError(f"{p}: series {dup[0]!r} appears in more than one file; series ids must be unique "
                                "(rename the files or use --series-col)")
    _check_wfdb_rates(out, counts)
    first = out[0]
    for s in out[1:]:
        if s.values.shape[1] != first.values.shape[1]:
            raise TrainingDataError(f"{s.source}: {s.values.shape[1]} channels {s.columns} but {first.source} has "
                                    f"{first.values.shape[1]} {first.columns}; every series of a model needs the "
                                    "same channels")
    return out, counts


def check_channels(series: list[SeriesData], channels: int, what: str) -> None:
    """Every series has ``channels`` channels (the model's), or a one-line error naming the file."""
    for s in series:
        if s.values.shape[1] != channels:
            raise TrainingDataError(f"{s.source}: {s.values.shape[1]} channels {s.columns}, but {what} has "
                                    f"{channels}")


# ----------------------------------------------------------------------------- normalisation
class SeriesNorm:
    """Per-series robust normalisation: ``(x - median) / scale`` per channel, scale = IQR / 1.349
    (the standard deviation of a normal series), floored so that a flat channel does not blow up.
    Unknown series use ``fallback`` (the statistics over every training series)."""

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]], fallback: tuple[np.ndarray, np.ndarray]):
        self.stats = stats
        self.fallback = fallback
        self.unknown: set[str] = set()

    @staticmethod
    def _robust(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        med = np.median(v, axis=0)
        q75, q25 = np.percentile(v, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = v.std(axis=0)
        scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
        return med.astype(np.float64), scale.astype(np.float64)

    @classmethod
    def fit(cls, readings: dict[str, np.ndarray]) -> SeriesNorm:
        """From each series' training readings (n, C)."""
        stats = {k: cls._robust(np.asarray(v, dtype=np.float64)) for k, v in readings.items()}
        fallback = cls._robust(np.concatenate([np.asarray(v, dtype=np.float64) for v in readings.values()]))
        return cls(stats, fallback)

    def apply(self, X: np.ndarray, series: Sequence[str]) -> np.ndarray:
        """Normalise windows (n, T, C) of the given series (one id per window), float32."""
        X = np.asarray(X, dtype=np.float32)
        n, C = len(X), X.shape[2]
        med = np.empty((n, 1, C), dtype=np.float32)
        scale = np.empty((n, 1, C), dtype=np.float32)
        last, row = None, None
        for i, sid in enumerate(series):
            if sid != last:
                row = self.stats.get(sid)
                if row is None:
                    if sid not in self.unknown:
                        self.unknown.add(sid)
                        log.warning("series %r was not in the training data: normalised with the pooled statistics",
                                    sid)
                    row = self.fallback
                last = sid
            med[i, 0], scale[i, 0] = row
        return (X - med) / scale

    def to_json(self) -> dict[str, Any]:
        return {"format": SERIES_NORM_FORMAT, "kind": "robust",
                "stats": {k: [m.tolist(), s.tolist()] for k, (m, s) in self.stats.items()},
                "fallback": [self.fallback[0].tolist(), self.fallback[1].tolist()]}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "anomon.json") -> SeriesNorm:
        if not isinstance(d, dict) or d.get("format") != SERIES_NORM_FORMAT:
            raise UserError(f"{where}: field 'series_norm' has format {d.get('format') if isinstance(d, dict) else None!r}"
                            f" (this anomon reads {SERIES_NORM_FORMAT})")
        arr = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
        return cls({k: (arr(m), arr(s)) for k, (m, s) in d["stats"].items()}, (arr(d["fallback"][0]), arr(d["fallback"][1])))


# ----------------------------------------------------------------------------- windows
def _windows(v: np.ndarray, T: int, S: int) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    if len(v) < T:
        return np.zeros((0, T, v.shape[1]), dtype=v.dtype)
    return sliding_window_view(v, T, axis=0)[::S].transpose(0, 2, 1)


@dataclass
class Split:
    """Windows of every series: ``train`` / ``calibration`` (normal, non-overlapping), and ``eval_X`` /
    ``eval_y`` (the tail windows and every window touching a labelled anomaly, with their label);
    the ``*_series`` lists give each window's series id."""

    train: np.ndarray
    calibration: np.ndarray
    train_series: list[str]
    calibration_series: list[str]
    eval_X: np.ndarray
    eval_y: np.ndarray
    eval_series: list[str]
    spans: dict[str, dict[str, Any]]
    counts: dict[str, int]
    train_readings: dict[str, np.ndarray]


def split_series(series: list[SeriesData], window: int, stride: int, calibration_fraction: float = 0.2) -> Split:
    """Training head and calibration tail of every series (see the module docstring)."""
    T, S = int(window), int(stride)
    tr, ca, ev, evy = [], [], [], []
    tr_s, ca_s, ev_s = [], [], []
    spans: dict[str, dict[str, Any]] = {}
    counts = {"train_windows": 0, "calibration_windows": 0, "labelled_windows_excluded": 0,
              "series_without_calibration": 0}
    readings: dict[str, np.ndarray] = {}
    for s in series:
        n = len(s)
        if n < T:
            raise TrainingDataError(f"{s.source}: series {s.name!r} has {n} readings, fewer than one window of {T} "
                                    "(use a smaller --window, or more data)")
        tail = max(int(math.ceil(calibration_fraction * n)), T)
        if n - tail < T:  # too short for both: all of it trains, another series calibrates
            tail = 0
            counts["series_without_calibration"] += 1
        cut = n - tail
        lab = s.labels if s.labels is not None else np.zeros(n, dtype=np.int8)
        head_w = _windows(s.values[:cut], T, S)
        head_bad = _windows(lab[:cut, None], T, S).reshape(len(head_w), -1).max(axis=1) > 0 if len(head_w) else np.zeros(0, bool)
        tail_w = _windows(s.values[cut:], T, S) if tail else np.zeros((0, T, s.values.shape[1]))
        tail_bad = (_windows(lab[cut:, None], T, S).reshape(len(tail_w), -1).max(axis=1) > 0) if len(tail_w) else np.zeros(0, bool)
        tr.append(head_w[~head_bad])
        tr_s += [s.name] * int((~head_bad).sum())
        ca.append(tail_w[~tail_bad])
        ca_s += [s.name] * int((~tail_bad).sum())
        # evaluation: what was not fitted on (the whole tail, and the head windows over anomalies)
        ev.append(head_w[head_bad])
        evy.append(np.ones(int(head_bad.sum()), dtype=np.int8))
        ev.append(tail_w)
        evy.append(tail_bad.astype(np.int8))
        ev_s += [s.name] * (int(head_bad.sum()) + len(tail_w))
        counts["labelled_windows_excluded"] += int(head_bad.sum() + tail_bad.sum())
        good = lab[:cut] == 0
        readings[s.name] = s.values[:cut][good] if good.any() else s.values[:cut]
        t = s.ts
        spans[s.name] = {"source": s.source, "readings": n,
                         "train": [0, cut], "calibration": [cut, n] if tail else None,
                         "train_time": [float(t[0]), float(t[cut - 1])],
                         "calibration_time": [float(t[cut]), float(t[-1])] if tail else None,
                         "train_windows": int((~head_bad).sum()), "calibration_windows": int((~tail_bad).sum()),
                         "labelled_readings": int(lab.sum())}
    cat = lambda parts, C: np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, T, C), np.float32)  # noqa: E731
    C = series[0].values.shape[1]
    sp = Split(cat(tr, C), cat(ca, C), tr_s, ca_s, cat(ev, C), np.concatenate(evy) if evy else np.zeros(0, np.int8),
               ev_s, spans, counts, readings)
    counts["train_windows"], counts["calibration_windows"] = len(sp.train), len(sp.calibration)
    if not len(sp.train):
        raise TrainingDataError("no training windows: every window touches a labelled anomaly or lies in a "
                                "calibration tail (more data, a smaller --window or --calibration-fraction)")
    if not len(sp.calibration):
        raise TrainingDataError(f"no calibration windows: each series needs at least 2 windows ({2 * T} readings) "
                                "so that a held-back tail can calibrate the thresholds")
    return sp


# ----------------------------------------------------------------------------- fitting
@dataclass
class TrainOptions:
    """What ``anomon train`` fits: window geometry, normalisation, calibration and the detector's settings."""

    window: int
    stride: int
    normalize: str = "per-series"
    fpr: float = 0.01
    calibration_fraction: float = 0.2
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    version: str | None = None
    alert_component: str | None = None


def make_norm(split: Split, mode: str) -> SeriesNorm | None:
    """The normalisation of ``mode``: per-series statistics, one pooled set for every series ("global"), or None."""
    if mode not in NORMALIZE_MODES:
        raise UserError(f"--normalize: {mode!r} is not one of {', '.join(NORMALIZE_MODES)}")
    if mode == "none":
        return None
    norm = SeriesNorm.fit(split.train_readings)
    if mode == "global":
        norm.stats = {}
    return norm


def _prepare(det: Any, X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1) if getattr(det, "input_kind", "window") == "tabular" else X


def _history(det: Any) -> list[float]:
    """The training curve (loss per epoch) when the detector keeps one."""
    h = getattr(det, "history_", None)
    if h:
        key = next((k for k in ("loss", "train_loss", "elbo") if k in h[0]), None)
        if key:
            return [float(r[key]) for r in h]
    h = getattr(det, "loss_history_", None)
    return [float(x) for x in np.asarray(h, dtype=float).ravel()] if h is not None and len(h) else []


def label_metrics(y: np.ndarray, scores: Any, thresholds: dict[str, float]) -> dict[str, dict[str, float]] | None:
    """ROC AUC, PR AUC and F1 (at the calibrated threshold) of every component on labelled windows;
    None when the windows do not hold both classes."""
    from monitor.evaluation import binary_metrics

    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        return None
    out = {}
    for c in scores:
        m = binary_metrics(y, scores[c], thresholds[c])
        out[c] = {k: round(float(m[k]), 4) for k in ("roc_auc", "pr_auc", "f1", "precision", "recall") if k in m}
    return out


def train_bundle(detector: str, split: Split, opts: TrainOptions, out: str | Path,
                 source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit ``detector`` on ``split.train``, calibrate on ``split.calibration``, and write the bundle,
    ``train.json`` and ``report.html`` to ``out``. Returns the train.json content."""
    from models import DetectorError
    from monitor.modelstore import load_bundle, save_bundle
    from monitor.protocols.ecg import make_detector

    out = Path(out).expanduser()
    try:
        det = make_detector(detector, opts.seed, opts.params)
    except DetectorError as exc:
        raise UserError(str(exc)) from None
    norm = make_norm(split, opts.normalize)
    nz = (lambda X, s: norm.apply(X, s)) if norm is not None else (lambda X, s: np.asarray(X, np.float32))  # noqa: E731
    Xtr, Xcal = nz(split.train, split.train_series), nz(split.calibration, split.calibration_series)
    T, C = split.train.shape[1], split.train.shape[2]
    log.info("training %s on %d windows of %dx%d from %d series (calibration: %d tail windows)", detector,
             len(Xtr), T, C, len(split.spans), len(Xcal))
    t0 = time.perf_counter()
    try:
        det.fit(_prepare(det, Xtr))
    except DetectorError as exc:
        raise UserError(f"{detector}: {exc}") from None
    fit_s = time.perf_counter() - t0
    comps = [c.name for c in det.components]
    if opts.alert_component and opts.alert_component not in comps:
        raise UserError(f"--alert-component: {opts.alert_component!r} is not a component of {detector} ({comps})")
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"trained": {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "series": len(split.spans), "train_windows": len(Xtr)}}
    if norm is not None:
        extra["series_norm"] = norm.to_json()
    cols = (source or {}).get("columns") or []
    if len(cols) == C:  # channel names, for explanations (monitor/explain.py)
        extra["channel_names"] = [str(c) for c in cols]
    save_bundle(det, out, window_length=T, stride=opts.stride, channels=C, calibration=Xcal, fpr=opts.fpr,
                name=opts.name, version=opts.version, normalize="none",
                alert_components=[opts.alert_component] if opts.alert_component else None, extra=extra)
    bundle = load_bundle(out)  # what `anomon run` will load: it must load and score
    s_cal = bundle.score_windows(Xcal)
    s_tr = bundle.score_windows(Xtr)
    info: dict[str, Any] = {
        "format": TRAIN_FORMAT,
        "detector": detector,
        "name": bundle.name,
        "version": bundle.version,
        "seed": opts.seed,
        "params": det.get_params(),
        "data": source or {},
        "window": {"length": T, "stride": opts.stride, "channels": C},
        "normalize": opts.normalize,
        "fpr": opts.fpr,
        "calibration": {"fraction": opts.calibration_fraction,
                        "rule": "a held-back tail of each series (at least one window), no overlap with the "
                                "training windows; threshold = the (1 - fpr) quantile of its scores"},
        "counts": split.counts,
        "spans": split.spans,
        "thresholds": bundle.thresholds,
        "calibration_fpr": {c: round(float(np.mean(s_cal[c] > bundle.thresholds[c])), 4) for c in s_cal},
        "train_fpr": {c: round(float(np.mean(s_tr[c] > bundle.thresholds[c])), 4) for c in s_tr},
        "alert_components": bundle.alert_components,
        "fit_seconds": round(fit_s, 3),
        "epochs_run": getattr(det, "n_epochs_", None),
        "history": _history(det),
    }
    s_ev = None
    if len(split.eval_X) and split.eval_y.max(initial=0) > 0:
        s_ev = bundle.score_windows(nz(split.eval_X, split.eval_series))
        info["labels"] = {"windows": int(len(split.eval_y)), "anomalous_windows": int(split.eval_y.sum()),
                          "evaluated_on": "windows not fitted on: every held-back tail window and every window "
                                          "touching a labelled anomaly (window label: any anomalous reading)",
                          "metrics": label_metrics(split.eval_y, s_ev, bundle.thresholds)}
    (out / TRAIN_FILE).write_text(json.dumps(info, indent=2))
    try:
        from monitor.train_report import write_train_report

        write_train_report(out, info, bundle, Xtr=Xtr, Xcal=Xcal, s_train=s_tr, s_cal=s_cal, split=split,
                           X_eval=nz(split.eval_X, split.eval_series) if s_ev is not None else None, s_eval=s_ev)
    except ImportError as exc:  # matplotlib missing: the bundle is complete without the report
        log.warning("report.html not written: %s", exc)
    log.info("saved %s (%s v%s) to %s (fit %.1f s)", detector, bundle.name, bundle.version, out, fit_s)
    return info
