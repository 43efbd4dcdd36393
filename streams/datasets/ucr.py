"""UCR-format time series classification sets (``label<TAB>v1<TAB>...vT`` a line)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._core import DatasetFormatError, require

__all__ = ["UCRDataset", "load_ucr", "load_ucr_tsv", "load_ecg5000", "UCR_NAMES"]

#: name -> folder relative to the data directory
UCR_NAMES: dict[str, str] = {
    "ECG5000": "ecg5000",
    "ECG200": "ucr/ECG200",
    "ECGFiveDays": "ucr/ECGFiveDays",
    "TwoLeadECG": "ucr/TwoLeadECG",
}


@dataclass
class UCRDataset:
    """A UCR train/test split. ``X_*`` are (n, T) float64, ``y_*`` int64 class labels as stored."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str

    @property
    def length(self) -> int:
        return int(self.X_train.shape[1])

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """TRAIN then TEST stacked: (X (n_train + n_test, T), y)."""
        return np.concatenate([self.X_train, self.X_test]), np.concatenate([self.y_train, self.y_test])


def load_ucr_tsv(path: str | Path, sep: str = "\t") -> tuple[np.ndarray, np.ndarray]:
    """Read one UCR-format file: each line a label then the values (tab separated; ``sep=None``
    splits on any whitespace, as the older ``.txt`` archive files need). Returns
    (X (n, T) float64, y (n,) int64). Varying-length sets keep their NaN padding.

    Raises :class:`DatasetFormatError` naming the file and line on malformed input.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"UCR file not found: {p}")
    try:
        if sep is None:
            df = pd.read_csv(p, sep=r"\s+", header=None, engine="c", dtype=np.float64)
        else:
            df = pd.read_csv(p, sep=sep, header=None, engine="c", dtype=np.float64)
    except pd.errors.EmptyDataError as exc:
        raise DatasetFormatError(f"{p}: empty UCR file") from exc
    except pd.errors.ParserError as exc:
        raise DatasetFormatError(f"{p}: malformed UCR file: {exc}") from exc
    except ValueError as exc:  # a non-numeric field: find the first one for the message
        raise DatasetFormatError(f"{p}: {_first_bad_field(p, sep) or exc}") from exc
    arr = df.to_numpy(dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DatasetFormatError(f"{p}: expected a label and at least one value per line, got {arr.shape[1]} column(s)")
    labels = arr[:, 0]
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetFormatError(f"{p}:{i + 1}: class label {labels[i]!r} is not an integer")
    return np.ascontiguousarray(arr[:, 1:]), labels.astype(np.int64)


def _first_bad_field(p: Path, sep: str | None) -> str | None:
    with open(p, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            for col, tok in enumerate(line.split(sep), 1):
                tok = tok.strip()
                if not tok:
                    continue
                try:
                    float(tok)
                except ValueError:
                    return f"line {lineno}, field {col}: not a number: {tok[:40]!r}"
    return None


def load_ucr(name: str, data_dir: str | Path | None = None, *, verify: bool = True) -> UCRDataset:
    """Load a UCR set shipped in the data directory: ``ECG5000`` (``ecg5000/``), ``ECG200``,
    ``ECGFiveDays``, ``TwoLeadECG`` (``ucr/NAME/``). Other names are looked up in ``ucr/NAME/``."""
    canon = {k.lower(): k for k in UCR_NAMES}.get(name.lower(), name)
    folder = UCR_NAMES.get(canon, f"ucr/{canon}")
    parts = []
    for split in ("TRAIN", "TEST"):
        path = require(f"{folder}/{canon}_{split}.tsv", data_dir, verify=verify, dataset=canon)
        parts.append(load_ucr_tsv(path))
    (xtr, ytr), (xte, yte) = parts
    if xtr.shape[1] != xte.shape[1]:
        raise DatasetFormatError(f"{canon}: TRAIN has length {xtr.shape[1]} but TEST has {xte.shape[1]}")
    return UCRDataset(xtr, ytr, xte, yte, canon)


def load_ecg5000(data_dir: str | Path | None = None, *, verify: bool = True) -> UCRDataset:
    """UCR ECG5000: TRAIN 500 and TEST 4500 beats x 140 values; class 1 is normal."""
    return load_ucr("ECG5000", data_dir, verify=verify)
