"""The detector contract: one small protocol for batch and streaming detectors.

A detector follows scikit-learn's conventions:

* ``__init__`` only stores hyperparameters (keyword arguments, JSON-able);
* everything learned ends in ``_`` and is set by :meth:`Detector.fit`;
* ``fit`` returns ``self``.

Scoring is kept apart from the alert decision (see :mod:`models.thresholds`).
:meth:`Detector.score` returns :class:`Scores`: one float array per declared
:class:`Component`, and **higher always means more anomalous**.

Persistence never uses pickle: :meth:`Detector.save` writes ``config.json``
(format version, detector name, hyperparameters, JSON state) and
``weights.safetensors`` (arrays). :func:`load_detector` reads them back.

Examples
--------
>>> import numpy as np
>>> from models import get_detector
>>> rng = np.random.default_rng(0)
>>> det = get_detector("robust-zscore")().fit(rng.normal(size=(200, 3)))
>>> s = det.score(np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]))
>>> list(s)
['max_abs_z', 'mean_sq_z']
>>> bool(s["max_abs_z"][1] > s["max_abs_z"][0])
True
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"

T = TypeVar("T", bound="Detector")


# --------------------------------------------------------------------------- errors
class DetectorError(Exception):
    """Base class of every error raised by a detector or threshold."""


class NotFittedError(DetectorError, RuntimeError):
    """Raised when a detector or threshold is used before ``fit``."""


class InputError(DetectorError, ValueError):
    """Raised when the data given to ``fit`` or ``score`` has the wrong shape or values."""


class IncompatibleModelError(DetectorError):
    """Raised when a saved model cannot be loaded: wrong format, wrong detector, corrupt file."""


# --------------------------------------------------------------------------- scores
@dataclass(frozen=True)
class Component:
    """A named score component.

    Parameters
    ----------
    name
        The key under which the score appears in :class:`Scores`.
    description
        One line saying what it measures.
    direction
        Always ``"higher"``: a higher value means more anomalous. Kept explicit so
        that downstream code (thresholds, dashboards) never has to guess.
    """

    name: str
    description: str = ""
    direction: str = "higher"

    def __post_init__(self) -> None:
        if self.direction != "higher":
            raise ValueError(
                f"component {self.name!r}: direction must be 'higher' (higher = more anomalous); "
                "negate the score instead of declaring another direction"
            )


class Scores(Mapping[str, np.ndarray]):
    """Per-sample scores, one float64 array per component, all of the same length.

    Examples
    --------
    >>> s = Scores({"a": [1.0, 2.0]}, components=(Component("a"),))
    >>> len(s), s.n, s["a"].dtype.name
    (1, 2, 'float64')
    >>> s.take([1])["a"].tolist()
    [2.0]
    """

    __slots__ = ("_values", "components")

    def __init__(self, values: Mapping[str, Any], components: tuple[Component, ...] | None = None):
        vals = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()}
        lengths = {len(v) for v in vals.values()}
        if len(lengths) > 1:
            raise InputError(f"score components have different lengths: { {k: len(v) for k, v in vals.items()} }")
        if components is None:
            components = tuple(Component(k) for k in vals)
        names = [c.name for c in components]
        if sorted(names) != sorted(vals):
            raise InputError(f"scores {sorted(vals)} do not match declared components {sorted(names)}")
        self.components = tuple(components)
        self._values = {c.name: vals[c.name] for c in self.components}

    def __getitem__(self, key: str) -> np.ndarray:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def n(self) -> int:
        """Number of scored samples."""
        return len(next(iter(self._values.values()))) if self._values else 0

    def take(self, idx: Any) -> Scores:
        """Scores of a subset of the samples."""
        return Scores({k: v[idx] for k, v in self._values.items()}, self.components)

    @staticmethod
    def concat(parts: list[Scores]) -> Scores:
        """Concatenate scores of consecutive batches."""
        if not parts:
            raise InputError("Scores.concat needs at least one part")
        comps = parts[0].components
        return Scores({c.name: np.concatenate([p[c.name] for p in parts]) for c in comps}, comps)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: v.tolist() for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"Scores(n={self.n}, components={list(self._values)})"


# --------------------------------------------------------------------------- explanations
#: a step belongs to the explanation's span while its error exceeds the window's median step error
#: by more than this many robust standard deviations (1.4826 * MAD of the step errors)
SPAN_MAD_K = 3.0


@dataclass(frozen=True)
class Explanation:
    """Why windows score high: each channel's share of the score, and the stretch of steps that contributes most.

    Built by :meth:`Detector.explain` from per-cell ``contributions`` (non-negative, one per step and
    channel: squared reconstruction errors, squared z-scores, ...). For tabular input a row is a window
    of one step and its features are the channels.

    Attributes
    ----------
    contributions
        ``(n, T, C)`` float64, non-negative: each step's and channel's part of the score.
    shares
        ``(n, C)`` float64: each channel's share of the window's total, non-negative, each row sums to 1
        (a window with nothing to attribute, a perfect reconstruction, gets equal shares).
    top
        ``(n, k)`` int64: channel indices by decreasing share, ``k = min(top_k, C)`` (ties: lower index first).
    span
        ``(n, 2)`` int64: ``[start, stop)`` step indices, ``stop`` exclusive: the step with the largest
        error, grown to each side while the step error stays above the window's median step error by more
        than ``SPAN_MAD_K`` robust standard deviations.

    Examples
    --------
    >>> c = np.zeros((1, 6, 3))
    >>> c[0, :, :] = 0.1
    >>> c[0, 2:4, 1] = 5.0            # a burst in channel 1, steps 2 and 3
    >>> e = Explanation.from_contributions(c, top_k=2)
    >>> e.top.tolist(), e.span.tolist(), round(float(e.shares[0].sum()), 6)
    ([[1, 0]], [[2, 4]], 1.0)
    >>> e.shares.round(3).tolist()
    [[0.052, 0.897, 0.052]]
    """

    contributions: np.ndarray
    shares: np.ndarray
    top: np.ndarray
    span: np.ndarray

    @property
    def n(self) -> int:
        """Number of explained windows."""
        return int(self.shares.shape[0])

    @classmethod
    def from_contributions(cls, contributions: Any, top_k: int = 3) -> Explanation:
        """The explanation of per-cell contributions ``(n, T, C)`` (or ``(n, d)``: rows of one step)."""
        c = np.asarray(contributions, dtype=np.float64)
        if c.ndim == 2:
            c = c[:, None, :]
        if c.ndim != 3 or c.shape[1] == 0 or c.shape[2] == 0:
            raise InputError(f"contributions must have shape (n, T, C) or (n, d), got {np.shape(contributions)}")
        if not np.isfinite(c).all() or (c < 0).any():
            raise InputError("contributions must be finite and non-negative")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
        n, T, C = c.shape
        per_channel = c.sum(axis=1)
        total = per_channel.sum(axis=1, keepdims=True)
        shares = np.where(total > 0, per_channel / np.where(total > 0, total, 1.0), 1.0 / C)
        top = np.argsort(-shares, axis=1, kind="stable")[:, : min(int(top_k), C)]
        step = c.sum(axis=2)
        peak = step.argmax(axis=1)
        med = np.median(step, axis=1, keepdims=True)
        sigma = 1.4826 * np.median(np.abs(step - med), axis=1, keepdims=True)
        above = step > med + SPAN_MAD_K * sigma
        above[np.arange(n), peak] = True
        idx = np.arange(T)[None, :]
        start = np.where(~above & (idx < peak[:, None]), idx, -1).max(axis=1) + 1
        stop = np.where(~above & (idx > peak[:, None]), idx, T).min(axis=1)
        span = np.stack([start, stop], axis=1).astype(np.int64)
        return cls(c, shares, top.astype(np.int64), span)


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[T]) -> type[T]:
    """Class decorator: make a detector available by its ``name``."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__qualname__} must define a class attribute `name`")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"detector name {name!r} already registered by {_REGISTRY[name].__qualname__}")
    if not cls.components:
        raise TypeError(f"{cls.__qualname__} must declare its score components")
    if cls.default_component and cls.default_component not in [c.name for c in cls.components]:
        raise TypeError(f"{cls.__qualname__}.default_component {cls.default_component!r} is not one of its components")
    _REGISTRY[name] = cls
    return cls


def _load_builtin() -> None:
    # Import the modules that register built-in detectors. Heavy ones (torch) are imported
    # lazily here, so `import models` stays cheap.
    import importlib

    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a detector module left out of this build
            if exc.name == mod:
                continue
            raise


#: Modules whose import registers detectors. A new detector module is added here.
BUILTIN_MODULES: list[str] = [
    "models.statistical",
    "models.river_baselines",
    "models.vrae",
    "models.lstm_ae",
    "models.dense_ae",
    "models.dagmm",
    "models.deep_svdd",
    "models.ocnn",
    "models.aae",
    "models.wae",
    "models.sklearn_baselines",
    "models.classic",
    "models.graph_vae",
    "models.image_ae",
]


def available_detectors() -> dict[str, type[Detector]]:
    """All registered detectors, by name (imports the built-in detector modules)."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get_detector(name: str) -> type[Detector]:
    """The detector class registered under ``name``."""
    if name not in _REGISTRY:
        _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DetectorError(f"unknown detector {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


# --------------------------------------------------------------------------- detector
def data_kind_of(cls: type) -> str:
    """What a detector class reads: its ``data_kind``, else ``rows`` / ``windows`` / ``graphs`` by ``input_kind``."""
    kind = getattr(cls, "data_kind", "")
    return kind or {"tabular": "rows", "window": "windows", "graph": "graphs"}.get(cls.input_kind, cls.input_kind)


class Detector(ABC):
    """Base class of every detector.

    Subclasses set ``name``, ``components`` and ``input_kind``, implement
    :meth:`fit` and :meth:`_score`, and (to be saved) :meth:`_get_state` /
    :meth:`_set_state`.

    ``input_kind`` is ``"tabular"`` for arrays of shape ``(n, d)`` and ``"window"``
    for arrays of shape ``(n, T, C)`` (n windows of T steps and C channels).
    ``data_kind`` says what the values mean, for jobs that pick the detectors fitting a data
    set: ``"rows"`` (feature vectors), ``"images"`` (flattened pixels), ``"windows"``,
    ``"graphs"``; empty = derived from ``input_kind`` (see :func:`data_kind_of`).
    """

    name: ClassVar[str] = ""
    components: ClassVar[tuple[Component, ...]] = ()
    #: The component reported and alerted on unless a protocol or bundle names another; chosen on
    #: development data (``monitor/experiments/default_components.py``). Empty: the first component.
    default_component: ClassVar[str] = ""
    input_kind: ClassVar[str] = "tabular"
    data_kind: ClassVar[str] = ""
    #: Small, fast hyperparameters for the contract test suite.
    _contract_params: ClassVar[dict[str, Any]] = {}
    #: Whether :meth:`explain` is implemented: reconstruction-based detectors (and per-feature z-scores)
    #: can say how much each channel and step contributes to the score.
    can_explain: ClassVar[bool] = False

    # ---- hyperparameters (scikit-learn style)
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    @classmethod
    def default_component_name(cls) -> str:
        """The component to report and alert on by default: ``default_component``, else the first.

        >>> class _Two:
        ...     components, default_component = (Component("a"), Component("b")), ""
        ...     default_component_name = classmethod(Detector.default_component_name.__func__)
        >>> _Two.default_component_name()
        'a'
        """
        return cls.default_component or cls.components[0].name

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters, as given to ``__init__``."""
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- fitting and scoring
    @abstractmethod
    def fit(self: T, X: np.ndarray, y: np.ndarray | None = None) -> T:
        """Learn from (mostly) normal data; returns ``self``."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Score validated input; return one array per declared component."""

    def score(self, X: np.ndarray) -> Scores:
        """Score a batch. Higher = more anomalous, for every component."""
        self._check_fitted()
        X = self._validate(X, fitting=False)
        return Scores(self._score(X), self.components)

    # ---- explanations (optional: detectors with ``can_explain``)
    def _contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-cell contributions to the score of validated input, the shape of ``X``, non-negative."""
        raise NotImplementedError

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each cell's non-negative part of the score, the shape of ``X`` (float64): what :meth:`explain` sums.

        Raises
        ------
        DetectorError
            When the detector cannot explain its scores (``can_explain`` is false).
        """
        if not self.can_explain:
            explainable = sorted(n for n, c in available_detectors().items() if c.can_explain)
            raise DetectorError(f"{self.name} cannot explain its scores; detectors that can: {', '.join(explainable)}")
        self._check_fitted()
        X = self._validate(X, fitting=False)
        c = np.asarray(self._contributions(X), dtype=np.float64)
        if c.shape != X.shape:
            raise DetectorError(f"{self.name}: contributions have shape {c.shape}, the input {X.shape}")
        return np.maximum(c, 0.0)

    def explain(self, X: np.ndarray, top_k: int = 3) -> Explanation:
        """Why each window (row) scores high: each channel's (feature's) share of the score, the ``top_k``
        channels, and the span of steps that contributes most (see :class:`Explanation`).

        Raises
        ------
        DetectorError
            When the detector cannot explain its scores (``can_explain`` is false).
        """
        return Explanation.from_contributions(self.contributions(X), top_k)

    @property
    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X) on normal data, "
                f"or load a saved model with models.load_detector(path)"
            )

    def _validate(self, X: Any, fitting: bool) -> np.ndarray:
        """Check shape and finiteness; returns a float array."""
        try:
            X = np.asarray(X, dtype=np.float64 if self.input_kind == "tabular" else np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{self.name}: input is not numeric: {exc}") from None
        want = 2 if self.input_kind == "tabular" else 3
        if X.ndim != want:
            shape = "(n, d)" if want == 2 else "(n, T, C)"
            raise InputError(f"{self.name}: expected an array of shape {shape}, got shape {X.shape}")
        if X.shape[0] == 0:
            raise InputError(f"{self.name}: empty input (0 samples)")
        if not np.isfinite(X).all():  # (one pass; the position only when there is one to report)
            where = np.argwhere(~np.isfinite(X))[0].tolist()
            raise InputError(f"{self.name}: input holds NaN or inf, first at index {where}")
        if not fitting and hasattr(self, "n_features_in_"):
            want_shape = tuple(np.atleast_1d(self.n_features_in_).tolist())
            got = X.shape[1:] if self.input_kind == "tabular" else X.shape[2:]
            if self.input_kind == "window" and hasattr(self, "window_length_") and X.shape[1] != self.window_length_:
                raise InputError(
                    f"{self.name}: windows have {X.shape[1]} steps, the model was fitted on {self.window_length_}"
                )
            if tuple(got) != want_shape:
                raise InputError(f"{self.name}: input has {got} features/channels, the model was fitted on {want_shape}")
        return X

    # ---- persistence (no pickle)
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned state as (arrays, JSON-able dict). Default: every ``attr_`` that is an array or JSON value."""
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for k, v in vars(self).items():
            if not k.endswith("_") or k.startswith("_"):
                continue
            if isinstance(v, np.ndarray):
                arrays[k] = v
            else:
                json.dumps(v)  # raises TypeError for state that needs its own _get_state
                meta[k] = v
        return arrays, meta

    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        for k, v in {**meta, **arrays}.items():
            setattr(self, k, v)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to directory ``path``: ``config.json`` + ``weights.safetensors``. Returns the path."""
        from safetensors.numpy import save_file

        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays, meta = self._get_state()
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        config = {
            "format_version": FORMAT_VERSION,
            "detector": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.get_params(),
            "state": meta,
            "weights": WEIGHTS_FILE,
        }
        # Write atomically so a reloading daemon never sees half a model.
        with tempfile.NamedTemporaryFile("wb", dir=path, delete=False, suffix=".tmp") as tmp:
            pass
        save_file(arrays, tmp.name)
        os.replace(tmp.name, path / WEIGHTS_FILE)
        tmp_cfg = path / (CONFIG_FILE + ".tmp")
        tmp_cfg.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp_cfg, path / CONFIG_FILE)
        return path

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Load a detector saved by :meth:`save` (must be this class)."""
        det = load_detector(path)
        if not isinstance(det, cls):
            raise IncompatibleModelError(f"{path}: holds a {type(det).__name__}, not a {cls.__name__}")
        return det


def read_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved model."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise IncompatibleModelError(f"{cfg_file}: no such model config (a saved model is a directory with "
                                     f"{CONFIG_FILE} and {WEIGHTS_FILE}; train one with `anomon train`)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompatibleModelError(f"{cfg_file}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise IncompatibleModelError(f"{cfg_file}: expected a JSON object")
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleModelError(
            f"{cfg_file}: format_version {version!r} is not supported (this anomon reads {FORMAT_VERSION})"
        )
    for key in ("detector", "params", "state"):
        if key not in cfg:
            raise IncompatibleModelError(f"{cfg_file}: missing field {key!r}")
    return cfg


def load_as(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Load a model saved by :meth:`Detector.save` into ``cls`` (which need not be registered).

    Never unpickles anything: ``config.json`` is JSON and the weights are safetensors.

    Raises
    ------
    IncompatibleModelError
        When the directory is missing or corrupt, of another format version, or holds another detector.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    cfg = read_model_config(path)
    if cfg["detector"] != cls.name:
        raise IncompatibleModelError(f"{path}: holds a {cfg['detector']!r} model, not {cls.name!r}")
    weights = path / cfg.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise IncompatibleModelError(f"{weights}: weights file missing")
    try:
        arrays = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{weights}: not a valid safetensors file ({exc})") from None
    try:
        det = cls(**cfg["params"])
        det._set_state(arrays, cfg["state"])
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:
        raise IncompatibleModelError(f"{path}: saved {cfg['detector']} does not fit this anomon version: {exc}") from None
    return det


def load_detector(path: str | os.PathLike[str]) -> Detector:
    """Load any registered detector from its directory. Never unpickles anything.

    Raises
    ------
    IncompatibleModelError
        When the directory is missing, corrupt, of another format version or names an unknown detector.
    """
    path = Path(path)
    cfg = read_model_config(path)
    try:
        cls = get_detector(cfg["detector"])
    except DetectorError as exc:
        raise IncompatibleModelError(f"{path / CONFIG_FILE}: {exc}") from None
    return load_as(cls, path)
