"""Per-series online normalisation: robust location and scale, learnt in a warm-up, adapting slowly.

One model can serve many series of different scales when each series is brought to one scale
before scoring. :class:`OnlineRobustScaler` does it for one series (C channels):

* **Warm-up.** The first ``warmup`` readings are buffered; then the location is their median and the
  scale ``1.4826 * MAD`` (the standard deviation for Gaussian data), per channel. Readings seen
  during the warm-up are not transformed (:meth:`OnlineRobustScaler.transform_one` returns ``None``;
  callers count them as not scored).
* **Slow adaptation.** Afterwards every reading that is *learnt* moves the location by
  ``alpha * scale * sign(x - location)`` (a stochastic median) and the mean absolute deviation by an
  exponential average of ``min(|x - location|, clip * scale)`` (so one spike moves it little).
  Callers do not learn readings they flag (see :meth:`learn_one`), so an anomaly is not absorbed.
* **Scale floor relative to the series' own range**, not an absolute ``1e-6``: the scale never goes
  below ``rel_floor * max(range, |median|)`` where ``range`` is the warm-up's 0.5 %-99.5 % spread
  (:func:`scale_floor`). A channel whose MAD is zero but which moves (a quantised or mostly flat
  channel) gets ``rel_floor`` of its range.
* **Constant channels** (no spread at all in the warm-up, and a level of 0) have no scale to learn.
  Their z is ``0`` while they stay at their level and ``±constant_z`` when they leave it, whatever
  the size of the step: a toggle of a channel that never moved is an anomaly of a fixed, finite
  size, never ``1e6``. Once such a channel has moved and been learnt its scale comes from the
  adaptive estimate like any other.

:class:`SeriesNormalizers` keeps one scaler per series id (created on first sight).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sc = OnlineRobustScaler(warmup=200)
>>> for x in rng.normal(50.0, 2.0, size=(200, 1)):
...     _ = sc.learn_one(x)
>>> sc.ready_
True
>>> z = sc.transform_one(np.array([60.0]))
>>> 4.0 < float(z[0]) < 6.0     # (60 - 50) / 2
True
>>> flat = OnlineRobustScaler(warmup=50).fit(np.zeros((50, 1)))
>>> flat.transform_one(np.array([1.0])).tolist()   # a constant channel toggles: finite, fixed size
[6.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.base import InputError, NotFittedError

#: Version of :meth:`OnlineRobustScaler.to_dict`'s schema (``from_dict`` reads every version up to it).
STATE_VERSION = 1

_MAD_TO_SD = 1.4826
_MEAN_AD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation -> sd for Gaussian data


def scale_floor(X: np.ndarray, rel_floor: float = 0.01) -> np.ndarray:
    """Per-column scale floor: ``rel_floor * max(range, |median|)``; 0 for a constant column at level 0.

    ``range`` is the 0.5 %-99.5 % quantile spread, so a single outlier in training does not set it.

    >>> X = np.array([[0.0, 5.0, 0.0], [10.0, 5.0, 0.0], [20.0, 5.0, 0.0]])
    >>> scale_floor(X, 0.01).round(3).tolist()
    [0.198, 0.05, 0.0]
    """
    X = np.asarray(X, dtype=np.float64)
    lo, hi = np.quantile(X, [0.005, 0.995], axis=0)
    med = np.median(X, axis=0)
    return rel_floor * np.maximum(hi - lo, np.abs(med))


def robust_location_scale(X: np.ndarray, rel_floor: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, floored ``1.4826 * MAD`` and a constant-column mask of ``X`` (n, d).

    A column is *constant* when its floor is 0 (no spread and level 0); its scale is then 1 and
    callers must treat it apart (see :func:`robust_z`).

    >>> med, sc, const = robust_location_scale(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    >>> med.tolist(), sc.round(3).tolist(), const.tolist()
    ([2.0, 0.0], [1.483, 1.0], [False, True])
    """
    X = np.asarray(X, dtype=np.float64)
    med = np.median(X, axis=0)
    mad = np.median(np.abs(X - med), axis=0) * _MAD_TO_SD
    floor = scale_floor(X, rel_floor)
    const = floor <= 0
    scale = np.where(const, 1.0, np.maximum(mad, floor))
    return med, scale, const


def robust_z(X: np.ndarray, location: np.ndarray, scale: np.ndarray, constant: np.ndarray,
             constant_z: float = 6.0) -> np.ndarray:
    """``(X - location) / scale``, with constant columns at ``0`` (unchanged) or ``±constant_z`` (moved).

    >>> robust_z(np.array([[3.0, 0.0], [2.0, 7.0]]), np.array([2.0, 0.0]), np.array([1.0, 1.0]),
    ...          np.array([False, True])).tolist()
    [[1.0, 0.0], [0.0, 6.0]]
    """
    z = (np.asarray(X, dtype=np.float64) - location) / scale
    if np.any(constant):
        zc = z[..., constant]
        z[..., constant] = np.sign(zc) * constant_z
    return z


class OnlineRobustScaler:
    """Robust online normalisation of one series (C channels).

    Parameters
    ----------
    warmup
        Readings buffered before the first location/scale is set (at least 10).
    alpha
        Adaptation rate after the warm-up (0 = frozen; 1e-3 follows a change over a few thousand readings).
    rel_floor
        Scale floor as a fraction of the warm-up range (or level): see :func:`scale_floor`.
    clip
        Deviations count at most ``clip`` scales in the adaptive scale.
    constant_z
        The |z| reported when a channel constant in the warm-up moves.
    """

    def __init__(self, warmup: int = 200, alpha: float = 1e-3, rel_floor: float = 0.01, clip: float = 5.0,
                 constant_z: float = 6.0):
        if warmup < 10:
            raise InputError(f"OnlineRobustScaler: warmup must be >= 10 readings, got {warmup}")
        if not 0.0 <= alpha < 1.0:
            raise InputError(f"OnlineRobustScaler: alpha must be in [0, 1), got {alpha}")
        if rel_floor <= 0:
            raise InputError(f"OnlineRobustScaler: rel_floor must be > 0, got {rel_floor}")
        self.warmup = warmup
        self.alpha = alpha
        self.rel_floor = rel_floor
        self.clip = clip
        self.constant_z = constant_z
        self._buf: list[np.ndarray] = []

    @property
    def ready_(self) -> bool:
        """True once the warm-up is over."""
        return hasattr(self, "location_")

    def fit(self, X: np.ndarray) -> OnlineRobustScaler:
        """Set location and scale from a block of readings (n, C) (the warm-up, given at once)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or len(X) < 2:
            raise InputError(f"OnlineRobustScaler: fit needs an array (n >= 2, C), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise InputError("OnlineRobustScaler: warm-up readings hold NaN or inf")
        self.location_, self.scale_, self.constant_ = robust_location_scale(X, self.rel_floor)
        self.floor_ = scale_floor(X, self.rel_floor)
        self.mean_abs_dev_ = self.scale_ / _MEAN_AD_TO_SD
        self.n_channels_ = int(X.shape[1])
        self.n_seen_ = int(len(X))
        self._buf = []
        return self

    def learn_one(self, x: np.ndarray) -> OnlineRobustScaler:
        """Learn one reading (C,). Do not call it for a reading that was flagged."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if not np.isfinite(x).all():
            return self  # never learnt; the caller counts it
        if not self.ready_:
            self._buf.append(x)
            if len(self._buf) >= self.warmup:
                self.fit(np.vstack(self._buf))
            return self
        if x.size != self.n_channels_:
            raise InputError(f"OnlineRobustScaler: reading has {x.size} channels, the series has {self.n_channels_}")
        self.n_seen_ += 1
        a = self.alpha
        if a == 0.0:
            return self
        d = x - self.location_
        moved = self.constant_ & (d != 0)
        if np.any(moved):  # a constant channel that moved (and is learnt): from now on an ordinary channel
            self.constant_ = self.constant_ & ~moved
            self.floor_ = np.where(moved, self.rel_floor * np.abs(d), self.floor_)
            self.mean_abs_dev_ = np.where(moved, np.abs(d) * a, self.mean_abs_dev_)
            self.scale_ = np.where(moved, np.maximum(self.floor_, self.mean_abs_dev_ * _MEAN_AD_TO_SD), self.scale_)
        live = ~self.constant_
        step = a * self.scale_ * np.sign(d)
        self.location_ = np.where(live, self.location_ + step, self.location_)
        ad = np.minimum(np.abs(d), self.clip * self.scale_)
        self.mean_abs_dev_ = np.where(live, (1 - a) * self.mean_abs_dev_ + a * ad, self.mean_abs_dev_)
        self.scale_ = np.where(live, np.maximum(self.mean_abs_dev_ * _MEAN_AD_TO_SD, self.floor_), self.scale_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """z of readings (..., C) with the current state (no learning)."""
        if not self.ready_:
            raise NotFittedError("OnlineRobustScaler: still in its warm-up; call learn_one/fit first")
        return robust_z(X, self.location_, self.scale_, self.constant_, self.constant_z)

    def transform_one(self, x: np.ndarray) -> np.ndarray | None:
        """z of one reading (C,), or ``None`` during the warm-up."""
        if not self.ready_:
            return None
        return self.transform(np.asarray(x, dtype=np.float64).reshape(-1))

    # ---- persistence (JSON, versioned)
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": STATE_VERSION, "params": {
            "warmup": self.warmup, "alpha": self.alpha, "rel_floor": self.rel_floor, "clip": self.clip,
            "constant_z": self.constant_z}}
        if self.ready_:
            d["state"] = {k: getattr(self, k).tolist() for k in
                          ("location_", "scale_", "constant_", "floor_", "mean_abs_dev_")}
            d["state"]["n_seen_"] = self.n_seen_
        else:
            d["warmup_buffer"] = [b.tolist() for b in self._buf]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OnlineRobustScaler:
        version = d.get("version")
        if not isinstance(version, int) or not 1 <= version <= STATE_VERSION:
            raise InputError(f"OnlineRobustScaler state: version {version!r} is not supported (reads 1..{STATE_VERSION})")
        sc = cls(**d["params"])
        if "state" in d:
            st = d["state"]
            for k in ("location_", "scale_", "floor_", "mean_abs_dev_"):
                setattr(sc, k, np.asarray(st[k], dtype=np.float64))
            sc.constant_ = np.asarray(st["constant_"], dtype=bool)
            sc.n_channels_ = int(sc.location_.size)
            sc.n_seen_ = int(st["n_seen_"])
        else:
            sc._buf = [np.asarray(b, dtype=np.float64) for b in d.get("warmup_buffer", [])]
        return sc


class SeriesNormalizers:
    """One :class:`OnlineRobustScaler` per series id, created on first sight with the same parameters.

    >>> norms = SeriesNormalizers(warmup=10)
    >>> for v in range(10):
    ...     _ = norms.learn("small", [v * 0.01]); _ = norms.learn("big", [v * 1000.0])
    >>> round(float(norms.transform("small", [0.1])[0]), 1) == round(float(norms.transform("big", [10000.0])[0]), 1)
    True
    """

    def __init__(self, **params: Any):
        OnlineRobustScaler(**params)  # validate once
        self.params = params
        self.scalers: dict[str, OnlineRobustScaler] = {}

    def get(self, series: str) -> OnlineRobustScaler:
        sc = self.scalers.get(series)
        if sc is None:
            sc = self.scalers[series] = OnlineRobustScaler(**self.params)
        return sc

    def learn(self, series: str, x: Any) -> OnlineRobustScaler:
        return self.get(series).learn_one(np.asarray(x, dtype=np.float64))

    def transform(self, series: str, x: Any) -> np.ndarray | None:
        return self.get(series).transform_one(np.asarray(x, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.scalers)
