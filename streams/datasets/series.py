"""Labelled time series: KPI, the Yahoo excerpt, UCR anomaly archive files, and generic
loaders for users' own data (CSV/Parquet, NAB, ``.npy`` pairs)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._core import DatasetFormatError, require

__all__ = [
    "Series",
    "ArrayPair",
    "load_kpi",
    "load_yahoo",
    "load_ucr_anomaly",
    "parse_ucr_anomaly_name",
    "load_csv_series",
    "load_nab",
    "load_npy_pair",
    "parse_timestamps",
]


@dataclass
class Series:
    """A (multivariate) labelled series.

    ``timestamps`` (n,) float64: seconds since the Unix epoch (UTC) when the source has times
    (``meta["time"] == "epoch_s"``), else the source's own index (``meta["time"] == "index"``);
    ``values`` (n, C) float64; ``labels`` (n,) int64, 1 = anomalous point (all 0 when unknown);
    ``columns`` the C value names; ``meta`` anything else (source file, KPI id, train length ...).
    """

    timestamps: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[1])

    def datetimes(self) -> np.ndarray:
        """``timestamps`` as numpy ``datetime64[ms]`` (only for epoch timestamps)."""
        if self.meta.get("time") != "epoch_s":
            raise ValueError(f"series {self.name!r} has index timestamps, not times")
        return (np.round(self.timestamps * 1000.0)).astype("datetime64[ms]")


@dataclass
class ArrayPair:
    """Train/test arrays with test labels, from :func:`load_npy_pair`."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str = ""


# ----------------------------------------------------------------------------- helpers
def _read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"series file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(f"reading {path} needs a Parquet engine: pip install pyarrow ({exc})") from exc
        except Exception as exc:
            raise DatasetFormatError(f"{path}: not a valid Parquet file: {exc}") from exc
    if suffix in {".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz"}:
        sep = "\t" if suffix.startswith(".tsv") else ","
        try:
            return pd.read_csv(path, sep=sep)
        except pd.errors.EmptyDataError as exc:
            raise DatasetFormatError(f"{path}: empty file") from exc
        except pd.errors.ParserError as exc:
            raise DatasetFormatError(f"{path}: malformed CSV: {exc}") from exc
    raise DatasetFormatError(f"{path}: unsupported file type {suffix!r} (expected .csv, .tsv, .csv.gz or .parquet)")


def _need_columns(df, cols: Sequence[str], path: Path, role: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{path}: {role} column(s) {missing} not found; the file has columns {list(df.columns)}")


_UNIT_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _epoch_seconds(dt) -> np.ndarray:
    """float64 seconds since the epoch of a UTC datetime Series, whatever its resolution."""
    import pandas as pd

    return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def parse_timestamps(col, unit: str = "auto", *, source: str = "<series>", name: str = "timestamp") -> tuple[np.ndarray, str]:
    """Parse a timestamp column into (float64 array, kind) where kind is ``"epoch_s"`` (seconds
    since the epoch, UTC) or ``"index"`` (numbers kept as they are).

    ``unit``: ``"auto"`` (numbers: ``>= 1e17`` ns, ``>= 1e14`` us, ``>= 1e11`` ms, ``>= 1e8`` s,
    smaller numbers are an index; strings: ISO 8601 / pandas-parsable dates, naive = UTC),
    or one of ``"s"``, ``"ms"``, ``"us"``, ``"ns"``, ``"iso"``, ``"index"``.

    >>> parse_timestamps([1472918400, 1472918700])
    (array([1.4729184e+09, 1.4729187e+09]), 'epoch_s')
    >>> parse_timestamps(["2016-09-03T16:00:00Z"])[0]
    array([1.4729184e+09])
    >>> parse_timestamps([1, 2, 3])
    (array([1., 2., 3.]), 'index')
    """
    import pandas as pd

    s = pd.Series(col)
    if unit not in {"auto", "iso", "index", *(_UNIT_SCALE)}:
        raise ValueError(f"unknown timestamp unit {unit!r}")
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if pd.api.types.is_datetime64_any_dtype(s):
        dt = pd.to_datetime(s, utc=True)
        return _epoch_seconds(dt), "epoch_s"
    if unit in _UNIT_SCALE or unit == "index" or (unit == "auto" and numeric):
        if not numeric:
            vals = pd.to_numeric(s, errors="coerce")
            if vals.isna().any():
                i = int(np.flatnonzero(vals.isna().to_numpy())[0])
                raise DatasetFormatError(f"{source}: row {i + 1}: {name} {s.iloc[i]!r} is not a number (unit {unit!r})")
            s = vals
        v = s.to_numpy(dtype=np.float64)
        if np.isnan(v).any():
            i = int(np.flatnonzero(np.isnan(v))[0])
            raise DatasetFormatError(f"{source}: row {i + 1}: {name} is missing")
        if unit == "index":
            return v, "index"
        if unit == "auto":
            top = float(np.nanmax(np.abs(v))) if len(v) else 0.0
            if top >= 1e17:
                unit = "ns"
            elif top >= 1e14:
                unit = "us"
            elif top >= 1e11:
                unit = "ms"
            elif top >= 1e8:
                unit = "s"
            else:
                return v, "index"
        return v * _UNIT_SCALE[unit], "epoch_s"
    # strings: ISO dates
    dt = pd.to_datetime(s, utc=True, errors="coerce", format="mixed" if unit in {"auto", "iso"} else None)
    if dt.isna().any():
        i = int(np.flatnonzero(dt.isna().to_numpy())[0])
        raise DatasetFormatError(f"{source}: row {i + 1}: {name} {s.iloc[i]!r} is not a date/time")
    return _epoch_seconds(dt), "epoch_s"


def _values(df, cols: Sequence[str], path: Path) -> np.ndarray:
    import pandas as pd

    out = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetFormatError(f"{path}: row {i + 1}: value column {c!r} holds {df[c].iloc[i]!r}, not a number")
        out[:, j] = v.to_numpy(dtype=np.float64)
    return out


def _labels(col, path: Path, name: str) -> np.ndarray:
    import pandas as pd

    v = pd.to_numeric(pd.Series(col), errors="coerce")
    if v.isna().any():
        i = int(np.flatnonzero(v.isna().to_numpy())[0])
        raise DatasetFormatError(f"{path}: row {i + 1}: label column {name!r} holds {pd.Series(col).iloc[i]!r}, not 0/1")
    a = v.to_numpy(dtype=np.float64)
    bad = ~np.isin(a, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetFormatError(f"{path}: row {i + 1}: label column {name!r} holds {a[i]!r}; labels must be 0 or 1")
    return a.astype(np.int64)


# ----------------------------------------------------------------------------- generic loaders
def load_csv_series(
    path: str | Path,
    timestamp_col: str | None,
    value_cols: str | Sequence[str] | None = None,
    label_col: str | None = None,
    *,
    timestamp_unit: str = "auto",
    name: str | None = None,
    sort: bool = False,
) -> Series:
    """A series from a CSV (``.csv``, ``.tsv``, ``.csv.gz``) or Parquet (``.parquet``) file.

    ``timestamp_col``: the time column (epoch s/ms/us/ns or ISO dates, see
    :func:`parse_timestamps`), or None to use the row number. ``value_cols``: one name or a
    list; default every numeric column except the timestamp and label. ``label_col``: optional
    0/1 column. Missing columns raise :class:`DatasetFormatError` naming them and the file.
    ``sort=True`` sorts rows by time; otherwise decreasing times are an error.
    """
    p = Path(path)
    df = _read_table(p)
    used = [c for c in (timestamp_col, label_col) if c is not None]
    _need_columns(df, [timestamp_col] if timestamp_col is not None else [], p, "timestamp")
    if label_col is not None:
        _need_columns(df, [label_col], p, "label")
    if value_cols is None:
        import pandas as pd

        value_cols = [c for c in df.columns if c not in used and pd.api.types.is_numeric_dtype(df[c])]
        if not value_cols:
            raise DatasetFormatError(f"{p}: no numeric value columns besides {used}; the file has {list(df.columns)}")
    elif isinstance(value_cols, str):
        value_cols = [value_cols]
    value_cols = list(value_cols)
    _need_columns(df, value_cols, p, "value")
    if timestamp_col is None:
        ts, kind = np.arange(len(df), dtype=np.float64), "index"
    else:
        ts, kind = parse_timestamps(df[timestamp_col], timestamp_unit, source=str(p), name=f"timestamp column {timestamp_col!r}")
    vals = _values(df, value_cols, p)
    labels = _labels(df[label_col], p, label_col) if label_col is not None else np.zeros(len(df), dtype=np.int64)
    if len(ts) > 1:
        back = np.flatnonzero(np.diff(ts) < 0)
        if back.size:
            if not sort:
                i = int(back[0]) + 1
                raise DatasetFormatError(f"{p}: row {i + 1}: timestamps go backwards; pass sort=True to sort the rows")
            order = np.argsort(ts, kind="stable")
            ts, vals, labels = ts[order], vals[order], labels[order]
    return Series(ts, vals, labels, name or p.stem,
                  {"source": str(p), "time": kind, "timestamp_col": timestamp_col, "label_col": label_col},
                  [str(c) for c in value_cols])


def load_nab(data_csv: str | Path, labels_json: str | Path, key: str | None = None) -> Series:
    """A NAB-format series: ``data_csv`` with ``timestamp`` and ``value`` columns, and a labels
    JSON mapping file names (``"realKnownCause/nyc_taxi.csv"``) to a list of ``[start, end]``
    windows (``combined_windows.json``) or to a list of anomaly timestamps
    (``combined_labels.json``). Points inside a window (inclusive) or at a listed time are 1.
    ``key`` selects the JSON entry; by default the one whose path ends with the CSV's name.
    """
    p = Path(data_csv)
    lp = Path(labels_json)
    series = load_csv_series(p, "timestamp", "value", name=p.stem)
    if not lp.is_file():
        raise FileNotFoundError(f"NAB labels file not found: {lp}")
    try:
        with open(lp, encoding="utf-8") as f:
            table = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{lp}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(table, dict):
        raise DatasetFormatError(f"{lp}: expected an object mapping data files to label windows")
    if key is None:
        matches = [k for k in table if k == p.name or k.replace("\\", "/").endswith("/" + p.name)]
        if len(matches) != 1:
            hint = "several entries match" if matches else "no entry matches"
            raise DatasetFormatError(f"{lp}: {hint} {p.name!r}; pass key= (entries: {sorted(table)[:10]}...)")
        key = matches[0]
    if key not in table:
        raise DatasetFormatError(f"{lp}: no entry {key!r}; entries: {sorted(table)[:10]}")
    entries = table[key]
    if not isinstance(entries, list):
        raise DatasetFormatError(f"{lp}: entry {key!r} must be a list of [start, end] windows or timestamps")
    labels = np.zeros(len(series), dtype=np.int64)
    ts = series.timestamps
    windows: list[tuple[float, float]] = []
    for i, w in enumerate(entries):
        if isinstance(w, (list, tuple)):
            if len(w) != 2:
                raise DatasetFormatError(f"{lp}: entry {key!r}[{i}] must be [start, end], got {w!r}")
            (a, b), _ = parse_timestamps(list(w), source=str(lp), name=f"window {key!r}[{i}]")
            if b < a:
                raise DatasetFormatError(f"{lp}: entry {key!r}[{i}]: window ends before it starts: {w!r}")
            labels[(ts >= a) & (ts <= b)] = 1
            windows.append((float(a), float(b)))
        else:
            (t,), _ = parse_timestamps([w], source=str(lp), name=f"label {key!r}[{i}]")
            labels[np.isclose(ts, t, rtol=0, atol=1e-6)] = 1
            windows.append((float(t), float(t)))
    series.labels = labels
    series.meta.update({"labels_json": str(lp), "nab_key": key, "windows": windows})
    return series


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix in {".txt", ".csv"}:
            import pandas as pd

            df = pd.read_csv(path, header=None, sep=r"[,;\s]+", engine="python", comment="#")
            first = pd.to_numeric(df.iloc[0], errors="coerce") if len(df) else None
            if first is not None and first.isna().any():  # a header line
                df = df.iloc[1:]
            arr = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
            if np.isnan(arr).any():
                r, c = (int(v[0]) for v in np.nonzero(np.isnan(arr)))
                raise DatasetFormatError(f"{path}: line {r + 1 + int(df.index[0])}, field {c + 1}: not a number")
            return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr
    except DatasetFormatError:
        raise
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: cannot read {what} (object arrays are refused, no pickle): {exc}") from exc
    except Exception as exc:
        raise DatasetFormatError(f"{path}: cannot read {what}: {exc}") from exc
    raise DatasetFormatError(f"{path}: unsupported {what} file type {suffix!r} (expected .npy, .txt or .csv)")


def load_npy_pair(train_npy: str | Path, test_npy: str | Path, labels_path: str | Path) -> ArrayPair:
    """Train/test arrays (``.npy``, first axis = time or samples; 1-D becomes (n, 1)) plus the
    test labels (``.npy``, or ``.txt``/``.csv`` with one 0/1 a line), as in the SMD/SMAP/MSL
    layouts. Labels must match the test length and be 0/1; train and test must have the same
    number of channels. Never unpickles."""
    tr, te, lp = Path(train_npy), Path(test_npy), Path(labels_path)
    X_train = _load_array(tr, "train array")
    X_test = _load_array(te, "test array")
    y = np.asarray(_load_array(lp, "label"))
    for arr, path in ((X_train, tr), (X_test, te)):
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise DatasetFormatError(f"{path}: array dtype {arr.dtype} is not numeric")
    X_train = X_train.reshape(-1, 1) if X_train.ndim == 1 else X_train
    X_test = X_test.reshape(-1, 1) if X_test.ndim == 1 else X_test
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DatasetFormatError(f"{te}: test shape {X_test.shape} does not match train shape {X_train.shape} past axis 0")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X_test):
        raise DatasetFormatError(f"{lp}: {y.shape} labels for {len(X_test)} test rows; expected one label per test row")
    yf = y.astype(np.float64)
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetFormatError(f"{lp}: label {i + 1} is {y[i]!r}; labels must be 0 or 1")
    return ArrayPair(np.asarray(X_train, dtype=np.float64), np.asarray(X_test, dtype=np.float64),
                     yf.astype(np.int64), te.stem)


# ----------------------------------------------------------------------------- shipped series
def load_kpi(data_dir: str | Path | None = None, *, verify: bool = True) -> Series:
    """The AIOps KPI series ``timeseries/kpi.csv``: 8784 points every 5 min, 13 anomalous;
    ``meta["kpi_id"]`` the KPI ID."""
    path = require("timeseries/kpi.csv", data_dir, verify=verify, dataset="kpi")
    s = load_csv_series(path, "timestamp", ["value"], "label", timestamp_unit="s", name="kpi")
    import pandas as pd

    ids = pd.read_csv(path, usecols=["KPI ID"])["KPI ID"].astype(str).unique().tolist()
    s.meta["kpi_id"] = ids[0] if len(ids) == 1 else ids
    return s


def load_yahoo(data_dir: str | Path | None = None, *, verify: bool = True) -> Series:
    """The Yahoo S5 excerpt ``timeseries/yahoo_sub_5.csv``: 1400 x 5 values, 5 anomalous points;
    timestamps are the file's index (1..1400)."""
    path = require("timeseries/yahoo_sub_5.csv", data_dir, verify=verify, dataset="yahoo")
    return load_csv_series(path, "timestamp", [f"value_{i}" for i in range(5)], "anomaly",
                           timestamp_unit="index", name="yahoo_sub_5")


_UCR_ANOMALY_RE = re.compile(r"^(?:(?P<num>\d+)_)?UCR_Anomaly_(?P<name>.+)_(?P<train>\d+)_(?P<begin>\d+)_(?P<end>\d+)$")


def parse_ucr_anomaly_name(filename: str | Path) -> dict[str, Any]:
    """Parse ``[NNN_]UCR_Anomaly_<name>_<train end>_<begin>_<end>.txt``.

    >>> parse_ucr_anomaly_name("UCR_Anomaly_robotDOG1_10000_19280_19360.txt")
    {'name': 'robotDOG1', 'number': None, 'train_end': 10000, 'anomaly_begin': 19280, 'anomaly_end': 19360}
    """
    stem = Path(filename).name
    if stem.lower().endswith(".txt"):
        stem = stem[:-4]
    m = _UCR_ANOMALY_RE.match(stem)
    if not m:
        raise DatasetFormatError(f"{filename}: not a UCR anomaly archive name "
                                 "([NNN_]UCR_Anomaly_<name>_<train end>_<begin>_<end>.txt)")
    out = {"name": m["name"], "number": int(m["num"]) if m["num"] else None, "train_end": int(m["train"]),
           "anomaly_begin": int(m["begin"]), "anomaly_end": int(m["end"])}
    if not out["train_end"] <= out["anomaly_begin"] <= out["anomaly_end"]:
        raise DatasetFormatError(f"{filename}: expected train end <= anomaly begin <= anomaly end in the name")
    return out


def load_ucr_anomaly(name_or_path: str | Path = "robotDOG1", data_dir: str | Path | None = None,
                     *, verify: bool = True) -> Series:
    """A UCR anomaly archive series (KDD Cup 2021): one value a line (or whitespace separated).

    ``name_or_path``: a path to such a file, a file name in ``timeseries/``, or a short name
    (``"robotDOG1"``) looked up there. Train length and anomaly span come from the file name;
    the archive counts points from 1, so the anomaly ``begin..end`` (inclusive) are 0-based
    indices ``begin-1 .. end-1`` and the training part is ``values[:train_end]``.
    ``meta``: ``train_end``, ``anomaly_begin``, ``anomaly_end`` (as named), ``anomaly_slice``.
    """
    p = Path(name_or_path)
    if not p.is_file():
        root_name = str(name_or_path)
        if "UCR_Anomaly_" in root_name or root_name.endswith(".txt"):
            rel = f"timeseries/{Path(root_name).name}"
        else:
            from ._core import data_dir as _dd

            folder = _dd(data_dir) / "timeseries"
            hits = sorted(folder.glob(f"*UCR_Anomaly_{root_name}_*.txt")) if folder.is_dir() else []
            if not hits and root_name.lower() == "robotdog1":
                rel = "timeseries/UCR_Anomaly_robotDOG1_10000_19280_19360.txt"
            elif len(hits) == 1:
                rel = f"timeseries/{hits[0].name}"
            elif hits:
                raise ValueError(f"several UCR anomaly files match {root_name!r}: {[h.name for h in hits]}")
            else:
                raise FileNotFoundError(f"no UCR anomaly file for {root_name!r} in {folder} "
                                        "(public source: UCR Time Series Anomaly Archive, KDD Cup 2021)")
        p = require(rel, data_dir, verify=verify, dataset="ucr-anomaly")
    info = parse_ucr_anomaly_name(p)
    import pandas as pd

    try:
        df = pd.read_csv(p, header=None, sep=r"\s+", engine="c", dtype=np.float64)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DatasetFormatError(f"{p}: expected numbers separated by whitespace: {exc}") from exc
    v = df.to_numpy(dtype=np.float64).ravel()  # some archive files hold all values on one line
    v = v[~np.isnan(v)] if np.isnan(v).any() and df.shape[1] > 1 else v
    n = len(v)
    b, e = info["anomaly_begin"], info["anomaly_end"]
    if e > n:
        raise DatasetFormatError(f"{p}: anomaly end {e} (from the file name) is past the series length {n}")
    labels = np.zeros(n, dtype=np.int64)
    labels[b - 1:e] = 1
    meta = dict(info, source=str(p), time="index", anomaly_slice=(b - 1, e))
    return Series(np.arange(n, dtype=np.float64), v.reshape(-1, 1), labels, f"UCR_Anomaly_{info['name']}", meta, ["value"])
