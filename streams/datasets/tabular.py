"""Tabular anomaly sets: ODDS (.npz / .mat) and KDD Cup 1999 (10%) with DAGMM's preprocessing."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ._core import DatasetFormatError, file_key, require

__all__ = [
    "ODDS_FILES",
    "KDD_COLUMNS",
    "KDD_CATEGORICAL",
    "load_odds",
    "load_odds_file",
    "load_kddcup",
    "load_kddcup_raw",
    "kddcup_dagmm_features",
]

#: ODDS sets in the data directory (``odds/``).
ODDS_FILES = {"thyroid": "odds/thyroid.npz", "arrhythmia": "odds/arrhythmia.mat"}


def load_odds_file(path: str | Path, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Read an ODDS-style ``.npz`` or MATLAB ``.mat`` file with arrays ``X`` (n, d) and ``y``
    (n,) or (n, 1), 1 = anomaly. Returns (X float64, y int64 (n,)). Never unpickles objects."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ODDS file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                missing = [k for k in (x_key, y_key) if k not in keys]
                if missing:
                    raise DatasetFormatError(f"{p}: missing array(s) {missing}; the file has {keys}")
                X, y = z[x_key], z[y_key]
        except DatasetFormatError:
            raise
        except ValueError as exc:  # object arrays need pickle: refused
            raise DatasetFormatError(f"{p}: cannot read without pickle: {exc}") from exc
        except Exception as exc:
            raise DatasetFormatError(f"{p}: not a valid .npz file: {exc}") from exc
    elif suffix == ".mat":
        import scipy.io

        try:
            m = scipy.io.loadmat(p)
        except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
            raise DatasetFormatError(f"{p}: MATLAB v7.3 files are not supported (save with -v7): {exc}") from exc
        except Exception as exc:
            raise DatasetFormatError(f"{p}: not a valid MATLAB file: {exc}") from exc
        keys = [k for k in m if not k.startswith("__")]
        missing = [k for k in (x_key, y_key) if k not in m]
        if missing:
            raise DatasetFormatError(f"{p}: missing variable(s) {missing}; the file has {keys}")
        X, y = m[x_key], m[y_key]
    else:
        raise DatasetFormatError(f"{p}: unsupported ODDS file type {suffix!r} (expected .npz or .mat)")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{p}: field {x_key!r} is not numeric: {exc}") from exc
    y = np.asarray(y)
    if X.ndim != 2:
        raise DatasetFormatError(f"{p}: field {x_key!r} has shape {X.shape}; expected (n, d)")
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1 or len(y) != len(X):
        raise DatasetFormatError(f"{p}: field {y_key!r} has shape {y.shape}; expected ({len(X)},)")
    yf = y.astype(np.float64)
    if not np.all(np.isin(yf, (0.0, 1.0))):
        raise DatasetFormatError(f"{p}: field {y_key!r} must hold only 0 and 1 (1 = anomaly); found {np.unique(yf)[:10]}")
    return np.ascontiguousarray(X), yf.astype(np.int64)


def load_odds(name: str, data_dir: str | Path | None = None, *, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ODDS set by name: ``thyroid`` (3772 x 6, 93 anomalies) or ``arrhythmia`` (452 x 274, 66).
    Returns (X float64, y int64), y = 1 for anomalies."""
    key = name.lower()
    if key not in ODDS_FILES:
        raise ValueError(f"unknown ODDS dataset {name!r}; known: {sorted(ODDS_FILES)}")
    path = require(ODDS_FILES[key], data_dir, verify=verify, dataset=key)
    return load_odds_file(path)


# ----------------------------------------------------------------------------- KDD Cup 99
KDD_COLUMNS = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment",
    "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted",
    "num_root", "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds",
    "is_host_login", "is_guest_login", "count", "srv_count", "serror_rate", "srv_serror_rate",
    "rerror_rate", "srv_rerror_rate", "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate",
    "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate", "label",
]
KDD_CATEGORICAL = ("protocol_type", "service", "flag")
KDD_FILE = "kddcup99/kddcup.data_10_percent.gz"

_lock = threading.Lock()
_raw_cache: dict[tuple, object] = {}
_feat_cache: dict[tuple, tuple[np.ndarray, np.ndarray, list[str]]] = {}


def _read_kdd(path: Path, cache: bool = True):
    import pandas as pd

    key = file_key(path)
    with _lock:
        hit = _raw_cache.get(key)
    if hit is not None:
        return hit
    dtypes = {c: np.float64 for c in KDD_COLUMNS}
    for c in (*KDD_CATEGORICAL, "label"):
        dtypes[c] = "category"
    try:
        df = pd.read_csv(path, header=None, names=KDD_COLUMNS, dtype=dtypes, engine="c", compression="infer")
    except pd.errors.ParserError as exc:
        raise DatasetFormatError(f"{path}: malformed KDD Cup CSV: {exc}") from exc
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: malformed KDD Cup CSV (expected 42 columns, 41 features and a label; "
                                 f"numeric fields must be numbers): {exc}") from exc
    if df.shape[1] != 42:
        raise DatasetFormatError(f"{path}: expected 42 columns, got {df.shape[1]}")
    if df.isna().any().any():
        row = int(np.flatnonzero(df.isna().any(axis=1).to_numpy())[0])
        col = df.columns[df.iloc[row].isna().to_numpy()][0]
        raise DatasetFormatError(f"{path}: line {row + 1}: missing value in field {col!r} (expected 42 fields)")
    if cache:
        with _lock:
            _raw_cache.clear()
            _raw_cache[key] = df
    return df


def load_kddcup_raw(data_dir: str | Path | None = None, *, verify: bool = True):
    """The KDD Cup 1999 10% file as a DataFrame: 494,021 rows, the 41 named features and
    ``label`` with the original strings (``normal.``, ``smurf.``, ...); categorical columns have
    pandas ``category`` dtype. Parsed once per process; each call returns a copy."""
    path = require(KDD_FILE, data_dir, verify=verify, dataset="kddcup99")
    return _read_kdd(path).copy()


def kddcup_dagmm_features(df) -> tuple[np.ndarray, list[str]]:
    """DAGMM preprocessing of a KDD DataFrame (columns as :data:`KDD_COLUMNS`): the 38 numeric
    features in file order, then one-hot columns of ``protocol_type``, ``service`` and ``flag``
    (categories sorted, only those present). Nothing else is dropped or scaled."""
    numeric = [c for c in KDD_COLUMNS[:-1] if c not in KDD_CATEGORICAL]
    n = len(df)
    cats_codes = []
    for col in KDD_CATEGORICAL:
        s = df[col]
        if not isinstance(s.dtype, __import__("pandas").CategoricalDtype):
            s = s.astype("category")
        s = s.cat.remove_unused_categories()
        cats = sorted(str(c) for c in s.cat.categories)
        s = s.cat.rename_categories([str(c) for c in s.cat.categories]).cat.reorder_categories(cats)
        cats_codes.append((col, cats, s.cat.codes.to_numpy(dtype=np.int64)))
    d = len(numeric) + sum(len(c) for _, c, _ in cats_codes)
    X = np.zeros((n, d), dtype=np.float64)
    X[:, : len(numeric)] = df[numeric].to_numpy(dtype=np.float64)
    names = list(numeric)
    off = len(numeric)
    rows = np.arange(n)
    for col, cats, codes in cats_codes:
        X[rows, off + codes] = 1.0
        names += [f"{col}={c}" for c in cats]
        off += len(cats)
    return X, names


def load_kddcup(
    data_dir: str | Path | None = None, variant: str = "dagmm", *, verify: bool = True, copy: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """KDD Cup 1999 10% with DAGMM's preprocessing: returns (X float64 (494021, d), y int64,
    feature_names).

    ``variant="dagmm"``: one-hot ``protocol_type`` (3), ``service`` (66 in the 10% file) and
    ``flag`` (11) next to the 38 numeric features, so d = 38 + 80 = **118** for this file (the
    DAGMM paper's 120 counts the two extra service values of the complete KDD99 set). Labels:
    ``normal.`` = 1 (the anomaly in DAGMM's protocol), every attack = 0.
    ``variant="rev"``: the same features with ``normal.`` = 0 and attacks = 1 (kddcup-rev; the
    attack subsampling of that protocol is the job's, not the loader's).

    Parsed once per process (about 2 s); later calls copy the cached arrays (``copy=False``
    returns the cached, read-only arrays without copying).
    """
    if variant not in {"dagmm", "rev"}:
        raise ValueError(f"unknown KDD Cup variant {variant!r}; use 'dagmm' or 'rev'")
    path = require(KDD_FILE, data_dir, verify=verify, dataset="kddcup99")
    key = file_key(path)
    with _lock:
        hit = _feat_cache.get(key)
    if hit is None:
        df = _read_kdd(path, cache=False)  # keep only the features in memory
        X, names = kddcup_dagmm_features(df)
        normal = (df["label"].astype(str) == "normal.").to_numpy()
        y_normal = normal.astype(np.int64)
        X.flags.writeable = False
        y_normal.flags.writeable = False
        hit = (X, y_normal, names)
        with _lock:
            _feat_cache.clear()
            _feat_cache[key] = hit
    X, y_normal, names = hit
    y = y_normal if variant == "dagmm" else 1 - y_normal
    if variant == "rev":
        y.flags.writeable = False
    if copy:
        return X.copy(), y.copy(), list(names)
    return X, y, list(names)


def clear_cache() -> None:
    with _lock:
        _raw_cache.clear()
        _feat_cache.clear()
