"""Dataset loaders for every file in the shared data directory, and generic loaders for users'
own data.

The data directory is resolved by :func:`data_dir`: an explicit argument, else
``$ANOMON_DATA``, else ``../shared/data`` beside the checkout, else ``~/.cache/anomon/data``
(``$XDG_CACHE_HOME``). A missing file raises :class:`DatasetMissingError` naming the file and
its public source; files listed in ``SHA256SUMS`` are verified (once per process per file
version) and a mismatch raises :class:`ChecksumError`. Nothing is ever downloaded.

:data:`DATASETS` is the catalogue: name -> :class:`DatasetInfo` (path, source, licence, loader).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from ._core import (
    ENV_VAR,
    KNOWN_SHA256,
    ChecksumError,
    DatasetError,
    DatasetFormatError,
    DatasetMissingError,
    ROWS as _ROWS,
    data_dir,
    expected_sha256,
    require,
    sha256_file,
    verify_file,
)
from .graphs import GraphData, load_graph, load_graph_npz, load_wikics, symmetrize
from .mitdb import (
    BEAT_SYMBOLS,
    MITDB_RECORDS,
    BeatSet,
    MitdbRecord,
    beats_from_record,
    beat_window,
    load_mitdb_beats,
    load_mitdb_record,
    load_wfdb_dir,
    load_wfdb_record,
)
from .resample import rational_ratio, resample_record
from .wfdb_folder import load_folder_record, record_names, record_problems
from .wfdb_header import WfdbHeader, header_fs, read_header
from .mnist import SafeArrayUnpickler, UnsafePickleError, load_mnist, load_mnist_file, safe_load_arrays
from .series import (
    ArrayPair,
    Series,
    load_csv_series,
    load_kpi,
    load_nab,
    load_npy_pair,
    load_ucr_anomaly,
    load_yahoo,
    parse_timestamps,
    parse_ucr_anomaly_name,
)
from .tabular import KDD_COLUMNS, kddcup_dagmm_features, load_kddcup, load_kddcup_raw, load_odds, load_odds_file
from .ucr import UCRDataset, load_ecg5000, load_ucr, load_ucr_tsv


class DatasetInfo(NamedTuple):
    """A catalogue entry: ``path`` relative to the data directory (file or folder), public
    ``source``, ``licence``, and the ``loader`` that reads it."""

    path: str
    source: str
    licence: str
    loader: Callable

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the dataset needs, relative to the data directory."""
        for row in _ROWS.values():
            if row.path == self.path:
                return row.files
        return (self.path,)


DATASETS: dict[str, DatasetInfo] = {
    name: DatasetInfo(row.path, row.source, row.licence, globals()[row.loader]) for name, row in _ROWS.items()
}


def dataset_status(name: str, root: str | Path | None = None, *, checksums: bool = True) -> list[dict]:
    """Per file of dataset ``name``: {"file", "path", "present", "checksum"} where checksum is
    ``"ok"``, ``"mismatch"``, ``"unlisted"``, ``"missing"`` or ``"skipped"``."""
    base = data_dir(root)
    return [file_status(rel, base, checksums=checksums) for rel in DATASETS[name].files]


def file_status(rel: str, root: str | Path, *, checksums: bool = True) -> dict:
    """{"file", "path", "present", "checksum"} of ``rel`` in the data directory ``root`` (see
    :func:`dataset_status`); ``expected`` and ``actual`` digests on a mismatch."""
    p = Path(root) / rel
    st = {"file": rel, "path": str(p), "present": p.is_file(), "checksum": "missing"}
    if st["present"]:
        exp = expected_sha256(rel, root)
        if not checksums:
            st["checksum"] = "skipped"
        elif exp is None:
            st["checksum"] = "unlisted"
        else:
            actual = sha256_file(p)
            st["checksum"] = "ok" if actual == exp else "mismatch"
            if actual != exp:
                st["expected"], st["actual"] = exp, actual
    return st


def wfdb_record_status(directory: str | Path, annotator: str | None = "atr") -> list[dict]:
    """Per record of a WFDB folder (:func:`record_names`): {"record", "loads", "fs", "problems"};
    ``loads`` when its header (with a rate), signal files and ``annotator`` annotations are there.
    An absent folder has no records."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for name in record_names(d):
        problems = record_problems(d, name, annotator)
        fs = None
        if (d / f"{name}.hea").is_file():
            try:
                fs = read_header(d / f"{name}.hea").fs
            except (DatasetError, FileNotFoundError):
                pass
        out.append({"record": name, "loads": not problems, "fs": fs, "problems": problems})
    return out


def clear_caches() -> None:
    """Drop the in-process caches of parsed KDD Cup and MNIST arrays (checksums stay cached)."""
    from . import mnist, tabular

    mnist.clear_cache()
    tabular.clear_cache()


__all__ = [
    "ENV_VAR", "DATASETS", "DatasetInfo", "data_dir", "require", "dataset_status", "file_status", "clear_caches",
    "DatasetError", "DatasetMissingError", "ChecksumError", "DatasetFormatError", "UnsafePickleError",
    "KNOWN_SHA256", "expected_sha256", "sha256_file", "verify_file",
    "UCRDataset", "load_ucr", "load_ucr_tsv", "load_ecg5000",
    "MitdbRecord", "BeatSet", "BEAT_SYMBOLS", "MITDB_RECORDS", "load_mitdb_record", "load_mitdb_beats",
    "load_wfdb_record", "load_wfdb_dir", "beats_from_record", "beat_window", "resample_record", "rational_ratio",
    "record_names", "load_folder_record", "record_problems", "WfdbHeader", "read_header", "header_fs",
    "wfdb_record_status",
    "load_mnist", "load_mnist_file", "SafeArrayUnpickler", "safe_load_arrays",
    "load_odds", "load_odds_file", "load_kddcup", "load_kddcup_raw", "kddcup_dagmm_features", "KDD_COLUMNS",
    "GraphData", "load_graph", "load_graph_npz", "load_wikics", "symmetrize",
    "Series", "ArrayPair", "load_kpi", "load_yahoo", "load_ucr_anomaly", "parse_ucr_anomaly_name",
    "load_csv_series", "load_nab", "load_npy_pair", "parse_timestamps",
]
