"""Model bundles: a saved detector plus what the daemon needs to serve it.

A bundle is a directory::

    config.json           the detector's hyperparameters and JSON state  (models.base)
    weights.safetensors   its arrays                                      (models.base)
    anomon.json           window length/stride/channels, normalisation, calibrated thresholds,
                          a sample of calibration scores (to start SPOT/DSPOT), name and version

Nothing is ever unpickled. :func:`load_bundle` raises :class:`ModelBundleError` (a one-line
user error) for a missing, corrupt or incompatible bundle. :class:`ModelWatcher` notices a
changed bundle (or is told to reload on SIGHUP) and loads the new one; when that fails, the old
bundle keeps serving.

Examples
--------
>>> import tempfile, numpy as np
>>> from models import get_detector
>>> X = np.random.default_rng(0).normal(size=(300, 8, 1)).astype("float32")
>>> det = get_detector("robust-zscore")().fit(X.reshape(300, -1))
>>> d = tempfile.mkdtemp()
>>> _ = save_bundle(det, d, window_length=8, stride=4, channels=1, calibration=X, fpr=0.01, name="demo")
>>> b = load_bundle(d)
>>> b.meta["window"], sorted(b.thresholds)
({'length': 8, 'stride': 4, 'channels': 1}, ['max_abs_z', 'mean_sq_z'])
>>> b.score_windows(X[:3]).n
3
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import UserError

log = logging.getLogger(__name__)

BUNDLE_FILE = "anomon.json"
BUNDLE_FORMAT = 1
#: calibration scores kept per component (to initialise SPOT/DSPOT)
MAX_CALIBRATION = 5000


class ModelBundleError(UserError):
    """A model bundle that cannot be served: missing, corrupt or incompatible."""


def normalize_windows(X: np.ndarray, mode: str, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """Normalise windows (n, T, C): "none", "window" (z-score each window and channel), "global"
    (training mean and std) or "center" (subtract each window's mean, divide by the training std).

    >>> normalize_windows(np.array([[[1.0], [3.0]]]), "window").ravel().tolist()
    [-1.0, 1.0]
    """
    if mode == "none":
        return X
    if mode == "window":
        m = X.mean(axis=1, keepdims=True)
        s = X.std(axis=1, keepdims=True)
        return ((X - m) / np.maximum(s, 1e-6)).astype(np.float32, copy=False)
    if mode == "global":
        return ((X - mean) / np.maximum(std, 1e-6)).astype(np.float32, copy=False)
    if mode == "center":
        return ((X - X.mean(axis=1, keepdims=True)) / np.maximum(std, 1e-6)).astype(np.float32, copy=False)
    raise ModelBundleError(f"unknown normalisation {mode!r} (none, window, global)")


class Bundle:
    """A loaded bundle: ``detector``, ``meta`` (anomon.json), ``thresholds``, ``version``."""

    def __init__(self, path: Path, detector: Any, meta: dict[str, Any]):
        self.path = path
        self.detector = detector
        self.meta = meta
        self.name: str = meta.get("name") or detector.name
        self.version: str = str(meta.get("version", "0"))
        w = meta["window"]
        self.length, self.stride, self.channels = int(w["length"]), int(w["stride"]), int(w["channels"])
        self.normalize: str = meta.get("normalize", "none")
        self.decimate: int = int(meta.get("decimate", 1))
        self._mean = np.asarray(meta["mean"], dtype=np.float32) if "mean" in meta else None
        self._std = np.asarray(meta["std"], dtype=np.float32) if "std" in meta else None
        self.components: list[str] = [c.name for c in detector.components]
        self.thresholds: dict[str, float] = {k: float(v) for k, v in meta.get("thresholds", {}).items()}
        self.alert_components: list[str] = list(meta.get("alert_components") or [detector.default_component_name()])
        #: the component this bundle reports and alerts on (bundles before it was named: the first alert component)
        self.declared_component: str = str(meta.get("declared_component") or self.alert_components[0])
        self.calibration: dict[str, np.ndarray] = {k: np.asarray(v, dtype=np.float64)
                                                  for k, v in meta.get("calibration", {}).items()}
        self.series_norm: Any = None
        if meta.get("series_norm") is not None:
            from monitor.training import SeriesNorm

            try:
                self.series_norm = SeriesNorm.from_json(meta["series_norm"], str(path / BUNDLE_FILE))
            except (UserError, KeyError, ValueError, TypeError) as exc:
                raise ModelBundleError(f"{path / BUNDLE_FILE}: field 'series_norm' is unusable: {exc}") from None
        self.loaded_at = time.time()

    def normalize_series(self, X: np.ndarray, series: list[str]) -> np.ndarray:
        """Apply the bundle's per-series normalisation (``anomon train --normalize``), one series id per
        window; windows unchanged when the bundle has none. The daemon calls it before :meth:`score_windows`."""
        if self.series_norm is None:
            return X
        return self.series_norm.apply(X, series)

    def score(self, X: np.ndarray, series: list[str] | None = None) -> Any:
        """Score raw windows (n, T, C) of the given series as the daemon does (:meth:`normalize_series`, then
        :meth:`score_windows`)."""
        if self.series_norm is not None:
            X = self.normalize_series(X, list(series) if series is not None else ["?"] * len(X))
        return self.score_windows(np.asarray(X, dtype=np.float32))

    def score_windows(self, X: np.ndarray) -> Any:
        """Score windows (n, T, C) float32 (after :meth:`normalize_series`): normalised, flattened for tabular
        detectors. One model call."""
        if self.decimate > 1:
            X = X[:, self.decimate - 1::self.decimate]
        X = normalize_windows(X, self.normalize, self._mean, self._std)
        if self.detector.input_kind == "tabular":
            X = X.reshape(len(X), -1)
        return self.detector.score(X)

    def __repr__(self) -> str:
        return f"Bundle({self.name} v{self.version}, {self.detector.name}, T={self.length}, S={self.stride}, C={self.channels})"


def prepare_windows(X: np.ndarray, normalize: str = "none", decimate: int = 1) -> tuple[np.ndarray, dict]:
    """Windows (n, T, C) as the model sees them, and the normalisation statistics to store."""
    X = np.asarray(X, dtype=np.float32)
    if decimate > 1:
        X = X[:, decimate - 1::decimate]
    stats: dict = {}
    if normalize in ("global", "center"):
        c = X - X.mean(axis=1, keepdims=True) if normalize == "center" else X
        stats = {"mean": c.mean(axis=(0, 1)), "std": c.std(axis=(0, 1))}
    return normalize_windows(X, normalize, stats.get("mean"), stats.get("std")), stats


def save_bundle(detector: Any, path: str | os.PathLike[str], *, window_length: int, stride: int, channels: int,
                calibration: np.ndarray, fpr: float = 0.01, name: str | None = None, version: str | None = None,
                normalize: str = "none", alert_components: list[str] | None = None, decimate: int = 1,
                extra: dict[str, Any] | None = None) -> Path:
    """Save ``detector`` and its serving metadata. ``calibration``: normal windows (n, T, C) to calibrate thresholds on.

    The detector must have been fitted on windows prepared like :meth:`Bundle.score_windows` does
    (every ``decimate``-th step, then ``normalize``); :func:`prepare_windows` does it.
    """
    from models.thresholds import infer_threshold

    path = Path(path)
    detector.save(path)
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "name": name or detector.name,
        "detector": detector.name,
        "window": {"length": int(window_length), "stride": int(stride), "channels": int(channels)},
        "normalize": normalize,
        "decimate": int(decimate),
        "fpr": float(fpr),
    }
    _, stats = prepare_windows(calibration, normalize, decimate)
    for k, v in stats.items():
        meta[k] = np.asarray(v).tolist()
    b = Bundle(path, detector, dict(meta, thresholds={}))
    scores = b.score_windows(np.asarray(calibration, dtype=np.float32))
    meta["thresholds"] = {k: infer_threshold(v, fpr) for k, v in scores.items()}
    rng = np.random.default_rng(0)
    cal = {}
    for k, v in scores.items():
        if len(v) > MAX_CALIBRATION:
            v = v[np.sort(rng.choice(len(v), MAX_CALIBRATION, replace=False))]
        cal[k] = [float(x) for x in v]
    meta["calibration"] = cal
    meta["alert_components"] = list(alert_components or [detector.default_component_name()])
    meta["declared_component"] = meta["alert_components"][0]
    meta["declared_component_from"] = ("given when the bundle was saved" if alert_components else
                                       f"{detector.name}'s default component (chosen on development data)")
    digest = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()[:12]
    meta["version"] = version or digest
    meta.update(extra or {})
    tmp = path / (BUNDLE_FILE + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path / BUNDLE_FILE)
    return path


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a bundle; every problem is a :class:`ModelBundleError` naming the file."""
    from models.base import DetectorError, load_detector

    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelBundleError(f"model directory {path} does not exist (train one with `anomon train`, "
                               "or let `anomon demo` make one)")
    mf = path / BUNDLE_FILE
    if not mf.is_file():
        raise ModelBundleError(f"{mf}: missing; {path} is not an anomon model bundle")
    try:
        meta = json.loads(mf.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelBundleError(f"{mf}: corrupt (not JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise ModelBundleError(f"{mf}: format {meta.get('format') if isinstance(meta, dict) else None!r} "
                               f"is not supported (this anomon reads {BUNDLE_FORMAT})")
    w = meta.get("window")
    if not isinstance(w, dict) or not all(isinstance(w.get(k), int) and w[k] > 0 for k in ("length", "stride", "channels")):
        raise ModelBundleError(f"{mf}: field 'window' must hold positive integers length, stride, channels")
    try:
        det = load_detector(path)
    except (DetectorError, OSError) as exc:
        raise ModelBundleError(f"{path}: {exc}") from None
    if meta.get("detector") and meta["detector"] != det.name:
        raise ModelBundleError(f"{mf}: names detector {meta['detector']!r} but config.json holds {det.name!r}")
    b = Bundle(path, det, meta)
    unknown = [c for c in b.alert_components if c not in b.components]
    if unknown:
        raise ModelBundleError(f"{mf}: alert_components {unknown} are not components of {det.name} ({b.components})")
    # a smoke test: one zero window must score (catches weights that do not fit the architecture)
    try:
        s = b.score_windows(np.zeros((1, b.length, b.channels), dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - any failure here means the bundle cannot serve
        raise ModelBundleError(f"{path}: the model cannot score a window of shape "
                               f"(1, {b.length}, {b.channels}): {exc}") from None
    if set(s) != set(b.components):
        raise ModelBundleError(f"{path}: scores {sorted(s)} differ from declared components")
    return b


def _fingerprint(path: Path) -> tuple:
    out: list = [os.path.realpath(path)]  # a registry's `current` pointer moved to another version
    for name in (BUNDLE_FILE, "config.json", "weights.safetensors"):
        try:
            st = (path / name).stat()
            out.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


class ModelWatcher:
    """Serve a bundle and reload it when its files change or :meth:`request_reload` is called (SIGHUP).

    A failed reload keeps the old bundle and records the error in ``last_error``.
    """

    def __init__(self, path: str | os.PathLike[str], interval_s: float = 5.0):
        self.path = Path(path).expanduser()
        self.interval_s = interval_s
        self.bundle = load_bundle(self.path)
        self._fp = _fingerprint(self.path)
        self._requested = False
        self._next_check = time.monotonic() + interval_s
        self.last_error: str | None = None
        self.reloads = 0
        self.failures = 0

    def request_reload(self) -> None:
        """Ask for a reload at the next :meth:`poll` (safe to call from a signal handler)."""
        self._requested = True

    def poll(self) -> Bundle | None:
        """Reload when asked or when the files changed; returns the new bundle, or None."""
        now = time.monotonic()
        changed = False
        if not self._requested:
            if self.interval_s <= 0 or now < self._next_check:
                return None
            self._next_check = now + self.interval_s
            fp = _fingerprint(self.path)
            if fp == self._fp:
                return None
            changed = True
            # wait for a writer to finish: the files must be stable for one more check
            time.sleep(0.05)
            if _fingerprint(self.path) != fp:
                return None
        self._requested = False
        fp = _fingerprint(self.path)
        try:
            new = load_bundle(self.path)
            if (new.length, new.channels) != (self.bundle.length, self.bundle.channels):
                raise ModelBundleError(f"{self.path}: new model windows are {new.length}x{new.channels}, "
                                       f"the running windows {self.bundle.length}x{self.bundle.channels}; restart to change")
        except ModelBundleError as exc:
            self._fp = fp
            self.failures += 1
            self.last_error = str(exc)
            log.error("model reload failed, still serving %s: %s", self.bundle, exc)
            return None
        self._fp = fp
        self.bundle = new
        self.reloads += 1
        self.last_error = None
        log.info("model reloaded%s: %s", " (file changed)" if changed else "", new)
        return new
