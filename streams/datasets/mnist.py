"""MNIST from the ``mnist.pkl.gz`` pickle, read with a restricted unpickler.

The pickle is never loaded with plain :func:`pickle.load`: :class:`SafeArrayUnpickler`
resolves only the globals that rebuild numpy arrays and refuses everything else, so a
tampered file cannot run code.
"""
from __future__ import annotations

import gzip
import io
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._core import DatasetFormatError, file_key, require

__all__ = ["SafeArrayUnpickler", "UnsafePickleError", "safe_load_arrays", "load_mnist", "load_mnist_file"]


class UnsafePickleError(DatasetFormatError, pickle.UnpicklingError):
    """The pickle asks for a global outside the numpy-array allow-list."""


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in {"latin1", "latin-1", "iso-8859-1"}:
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors)


def _allowed() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): ma._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): ma._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    try:  # protocol-5 pickles of numpy >= 1.16 go through _frombuffer
        from numpy._core import numeric as nm
    except ImportError:  # pragma: no cover
        from numpy.core import numeric as nm  # type: ignore[no-redef]
    if hasattr(nm, "_frombuffer"):
        allowed[("numpy.core.numeric", "_frombuffer")] = nm._frombuffer
        allowed[("numpy._core.numeric", "_frombuffer")] = nm._frombuffer
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
    allowed[("_codecs", "encode")] = _latin1_encode
    # the builtins latin1 pickles of py2 numpy may reference; none can run code
    for name, obj in (("bytearray", bytearray), ("set", set), ("frozenset", frozenset), ("slice", slice),
                      ("complex", complex)):
        allowed[("builtins", name)] = obj
        allowed[("__builtin__", name)] = obj
    return allowed


class SafeArrayUnpickler(pickle.Unpickler):
    """Unpickler for containers (tuples, lists, dicts) of numpy arrays and plain Python values.

    ``find_class`` resolves only numpy's array-reconstruction globals and a few inert
    builtins; any other global raises :class:`UnsafePickleError` before it is imported or
    called. Object arrays are refused after loading as well.

    >>> import io, pickle, numpy as np
    >>> data = pickle.dumps((np.arange(3, dtype=np.float32), [1, 2]), protocol=2)
    >>> SafeArrayUnpickler(io.BytesIO(data)).load()
    (array([0., 1., 2.], dtype=float32), [1, 2])
    >>> evil = b"cos\\nsystem\\n(S'echo pwned'\\ntR."
    >>> SafeArrayUnpickler(io.BytesIO(evil)).load()
    Traceback (most recent call last):
    ...
    streams.datasets.mnist.UnsafePickleError: refusing to unpickle global os.system (only numpy array reconstruction is allowed)
    """

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def __init__(self, file, *, source: str = "<pickle>", **kwargs):
        kwargs.setdefault("encoding", "latin1")
        super().__init__(file, **kwargs)
        self.source = source
        if SafeArrayUnpickler._ALLOWED is None:
            SafeArrayUnpickler._ALLOWED = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        obj = (self._ALLOWED or {}).get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name} (only numpy array reconstruction is allowed)"
                + ("" if self.source == "<pickle>" else f" in {self.source}")
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing persistent id {pid!r} in {self.source}")


def _check_no_objects(obj: Any, source: str) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafePickleError(f"{source}: object arrays are not allowed")
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _check_no_objects(x, source)
    elif isinstance(obj, dict):
        for x in obj.values():
            _check_no_objects(x, source)


def safe_load_arrays(fileobj_or_path: Any, *, source: str | None = None) -> Any:
    """Load a (possibly gzip-compressed) pickle of numpy arrays with :class:`SafeArrayUnpickler`."""
    if isinstance(fileobj_or_path, (str, Path)):
        p = Path(fileobj_or_path)
        src = source or str(p)
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as f:
            return safe_load_arrays(f, source=src)
    src = source or "<pickle>"
    try:
        obj = SafeArrayUnpickler(fileobj_or_path, source=src).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetFormatError(f"{src}: not a valid pickle of numpy arrays: {exc}") from exc
    _check_no_objects(obj, src)
    return obj


_cache_lock = threading.Lock()
_cache: dict[tuple, tuple] = {}

MnistSplits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load_mnist_file(path: str | Path) -> MnistSplits:
    """Read an ``mnist.pkl.gz``-style pickle: ((Xtr, ytr), (Xva, yva), (Xte, yte))."""
    p = Path(path)
    with gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb") as raw:
        # decompress at once: much faster than many small reads through GzipFile
        data = raw.read()
    obj = safe_load_arrays(io.BytesIO(data), source=str(p))
    try:
        splits = tuple((np.asarray(X), np.asarray(y)) for X, y in obj)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{p}: expected ((X, y), (X, y), (X, y)), got {type(obj).__name__}") from exc
    if len(splits) != 3:
        raise DatasetFormatError(f"{p}: expected 3 splits (train, valid, test), got {len(splits)}")
    out = []
    for i, (X, y) in enumerate(splits):
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise DatasetFormatError(f"{p}: split {i} has X {X.shape} and y {y.shape}; expected (n, d) and (n,)")
        out.append((np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)))
    return tuple(out)  # type: ignore[return-value]


def load_mnist(data_dir: str | Path | None = None, *, verify: bool = True, copy: bool = True) -> MnistSplits:
    """MNIST as ((Xtrain 50000, y), (Xvalid 10000, y), (Xtest 10000, y)); X float32 (n, 784) in
    [0, 1), y int64 digits. Parsed once per process (cached on path, mtime and size); each call
    returns fresh copies unless ``copy=False`` (then the cached arrays, read-only)."""
    path = require("mnist/mnist.pkl.gz", data_dir, verify=verify, dataset="mnist")
    key = file_key(path)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        hit = load_mnist_file(path)
        for X, y in hit:
            X.flags.writeable = False
            y.flags.writeable = False
        with _cache_lock:
            _cache.clear()  # keep one copy only
            _cache[key] = hit
    if not copy:
        return hit
    return tuple((X.copy(), y.copy()) for X, y in hit)  # type: ignore[return-value]


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
