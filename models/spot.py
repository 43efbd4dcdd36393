"""SPOT and DSPOT: streaming thresholds from extreme value theory (Siffer et al., KDD 2017).

The excesses of a score over a high initial threshold ``t`` follow a generalised Pareto
distribution (GPD, Pickands-Balkema-de Haan). Fitting it gives the threshold ``z_q`` that a
score exceeds with probability ``q``:

    z_q = t + sigma/gamma * ((q * n / N_t) ** -gamma - 1)        (gamma != 0)
    z_q = t - sigma * log(q * n / N_t)                            (gamma == 0)

where ``n`` is the number of scores seen and ``N_t`` the number of peaks (scores above ``t``).
The GPD is fitted by maximum likelihood with Grimshaw's reduction to one variable, solved on a
grid (robust, vectorised, no iteration that can fail). :class:`SPOT` updates the fit online with
every new peak; scores above ``z_q`` are flagged and not learnt from. :class:`DSPOT` works on
the score minus a moving average of the last ``depth`` normal scores, for drifting streams.

Both are initialised from calibration scores (the training/validation scores of the model).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> s = SPOT(q=1e-3).fit(rng.exponential(size=5000))
>>> 6.5 < s.threshold < 7.5  # the exact 1e-3 quantile of Exp(1) is log(1000) = 6.9
True
>>> flags = s.update(np.array([0.5, 12.0]))
>>> flags.tolist()
[False, True]
"""
from __future__ import annotations

import base64
import json  # noqa: F401 - the from_state example
from typing import Any

import numpy as np

from models.base import InputError, NotFittedError

#: version of :meth:`SPOT.state` (read back by :func:`from_state`)
STATE_FORMAT = 1


def _log_lik(Y: np.ndarray, gamma: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    n = Y.size
    with np.errstate(divide="ignore", invalid="ignore"):
        z = 1.0 + (gamma / sigma)[:, None] * Y[None, :]
        ll = -n * np.log(sigma) - (1.0 + 1.0 / gamma) * np.log(z).sum(axis=1)
    ll[~np.isfinite(ll)] = -np.inf
    ll[(sigma <= 0)] = -np.inf
    return ll


def fit_gpd(excesses: np.ndarray, grid: int = 48) -> tuple[float, float]:
    """Maximum-likelihood (gamma, sigma) of a GPD for positive ``excesses`` (Grimshaw's reduction).

    >>> rng = np.random.default_rng(1)
    >>> g, s = fit_gpd(rng.exponential(scale=2.0, size=20000))
    >>> abs(g) < 0.05, round(s, 1)
    (True, 2.0)
    """
    Y = np.asarray(excesses, dtype=np.float64)
    Y = Y[Y > 0]
    if Y.size < 2:
        return 0.0, float(Y.mean()) if Y.size else 1.0
    ymin, ymax, ymean = float(Y.min()), float(Y.max()), float(Y.mean())
    eps = 1e-8 / max(ymean, 1e-300)
    a = -1.0 / ymax
    b = 2.0 * (ymean - ymin) / max(ymin, 1e-12) ** 2
    b = min(b, 1e6 / ymean)
    neg = a + (-eps - a) * (1.0 - np.geomspace(1.0, 1e-6, grid))  # (a, 0)
    pos = np.geomspace(max(eps, 1e-6 / ymean), max(b, 2 * eps), grid)
    x = np.concatenate([neg[1:], pos])
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.log1p(x[:, None] * Y[None, :]).mean(axis=1)
    sigma = gamma / x
    ok = np.isfinite(gamma) & np.isfinite(sigma) & (sigma > 0) & (np.abs(gamma) > 1e-12)
    best_g, best_s = 0.0, ymean
    best_ll = -Y.size * np.log(ymean) - Y.size  # exponential (gamma = 0)
    if ok.any():
        ll = _log_lik(Y, gamma[ok], sigma[ok])
        i = int(np.argmax(ll))
        if ll[i] > best_ll:
            best_g, best_s = float(gamma[ok][i]), float(sigma[ok][i])
    return best_g, best_s


def _quantile(t: float, gamma: float, sigma: float, q: float, n: int, n_peaks: int) -> float:
    r = q * n / max(n_peaks, 1)
    if abs(gamma) < 1e-9:
        return float(t - sigma * np.log(r))
    return float(t + sigma / gamma * (r ** (-gamma) - 1.0))


class SPOT:
    """Streaming Peaks-Over-Threshold.

    Parameters
    ----------
    q
        Target probability that a normal score exceeds the threshold (the false-positive rate).
    level
        Quantile of the calibration scores used as the initial threshold ``t`` (0.98 in the paper).
    max_peaks
        Peaks kept for the fit (a bounded ring: the oldest are forgotten). Keeps memory and the fit cost bounded.
    refit_every
        Refit the GPD after this many new peaks (1 = after every peak, as in the paper).
    """

    kind = "spot"

    def __init__(self, q: float = 1e-3, level: float = 0.98, max_peaks: int = 2000, refit_every: int = 1):
        if not 0 < q < 1:
            raise InputError(f"SPOT: q must be in (0, 1), got {q}")
        if not 0 < level < 1:
            raise InputError(f"SPOT: level must be in (0, 1), got {level}")
        if q >= 1 - level:
            raise InputError(f"SPOT: q={q} must be below 1 - level={1 - level:.4g} (the peaks' share)")
        self.q = q
        self.level = level
        self.max_peaks = max_peaks
        self.refit_every = refit_every

    # -- internal transform (DSPOT overrides)
    def _x(self, s: float) -> float:
        return s

    def fit(self, scores: np.ndarray) -> SPOT:
        """Initialise from calibration scores (of normal data)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.size < 10:
            raise InputError(f"SPOT: needs at least 10 calibration scores, got {s.size}")
        if not np.isfinite(s).all():
            raise InputError("SPOT: calibration scores hold NaN or inf")
        x = self._init_transform(s)
        self.t_ = float(np.quantile(x, self.level))
        peaks = x[x > self.t_] - self.t_
        if peaks.size == 0:
            peaks = np.array([max(abs(self.t_), 1.0) * 1e-6])
        self.peaks_ = peaks[-self.max_peaks:].copy()
        self.n_ = int(x.size)
        self.n_peaks_ = int(peaks.size)
        self._new_peaks = []
        self._refit()
        return self

    def _init_transform(self, s: np.ndarray) -> np.ndarray:
        return s

    def _refit(self) -> None:
        self.gamma_, self.sigma_ = fit_gpd(self.peaks_)
        self.z_ = _quantile(self.t_, self.gamma_, self.sigma_, self.q, self.n_, self.n_peaks_)

    @property
    def threshold(self) -> float:
        """The current threshold, in score units."""
        self._check()
        return self.z_

    def _check(self) -> None:
        if not hasattr(self, "z_"):
            raise NotFittedError("SPOT is not initialised: call fit(calibration_scores) first")

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Classify a stream of scores in order and learn from the normal ones. Returns the flags."""
        self._check()
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        out = np.zeros(s.size, dtype=bool)
        # fast path: nothing above t -> just count
        for i, v in enumerate(s.tolist()):
            if not np.isfinite(v):
                out[i] = True
                continue
            x = self._x(v)
            if x > self.z_:
                out[i] = True
                self._flag(v)
                continue
            self.n_ += 1
            if x > self.t_:
                self.n_peaks_ += 1
                self._new_peaks.append(x - self.t_)
                if len(self._new_peaks) >= self.refit_every:
                    self.peaks_ = np.concatenate([self.peaks_, self._new_peaks])[-self.max_peaks:]
                    self._new_peaks = []
                    self._refit()
                else:  # the quantile moves with n and N_t even between refits
                    self.z_ = _quantile(self.t_, self.gamma_, self.sigma_, self.q, self.n_, self.n_peaks_)
            self._learn(v)
        return out

    def _learn(self, v: float) -> None:
        pass

    def _flag(self, v: float) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {"kind": self.kind, "q": self.q, "level": self.level, "t": self.t_, "gamma": self.gamma_,
                "sigma": self.sigma_, "threshold": self.threshold, "n": self.n_, "n_peaks": self.n_peaks_}

    def state(self) -> dict[str, Any]:
        """Everything :func:`from_state` needs to go on exactly where this one is (JSON-able, format
        :data:`STATE_FORMAT`; arrays as base64 float64)."""
        self._check()
        return {"format": STATE_FORMAT, "kind": self.kind, "q": self.q, "level": self.level,
                "max_peaks": self.max_peaks, "refit_every": self.refit_every, "t": self.t_,
                "peaks": _b64(self.peaks_), "new_peaks": [float(v) for v in self._new_peaks], "n": self.n_,
                "n_peaks": self.n_peaks_, "gamma": self.gamma_, "sigma": self.sigma_, "z": self.z_}

    def _set_state(self, d: dict[str, Any]) -> None:
        self.t_, self.peaks_ = float(d["t"]), _unb64(d["peaks"])
        self._new_peaks = [float(v) for v in d["new_peaks"]]
        self.n_, self.n_peaks_ = int(d["n"]), int(d["n_peaks"])
        self.gamma_, self.sigma_, self.z_ = float(d["gamma"]), float(d["sigma"]), float(d["z"])


class DSPOT(SPOT):
    """SPOT on the score minus a moving average of the last ``depth`` normal scores (drifting streams).

    >>> rng = np.random.default_rng(0)
    >>> d = DSPOT(q=1e-3, depth=50).fit(rng.normal(size=3000))
    >>> drift = rng.normal(size=3000) + np.linspace(0, 10, 3000)
    >>> float(d.update(drift).mean()) < 0.01   # a slow drift is followed, not flagged
    True

    A sustained shift (``relearn_after`` flagged scores in a row; default: ``depth``) is taken as
    the new normal level: the moving average restarts from those scores. Flagged scores are never
    learnt otherwise, so after a level shift the moving average could never follow (one series had
    77 % of its windows flagged). The shift itself is flagged: its first ``relearn_after`` scores.

    >>> d = DSPOT(q=1e-3, depth=50).fit(rng.normal(size=3000))
    >>> shifted = d.update(rng.normal(size=2000) + 8.0)
    >>> int(shifted[:50].sum()), int(shifted[50:].sum()) < 20, d.relearned_
    (50, True, 1)
    """

    kind = "dspot"

    def __init__(self, q: float = 1e-3, level: float = 0.98, max_peaks: int = 2000, refit_every: int = 1,
                 depth: int = 50, relearn_after: int | None = None):
        super().__init__(q=q, level=level, max_peaks=max_peaks, refit_every=refit_every)
        if depth < 2:
            raise InputError("DSPOT: depth must be >= 2")
        if relearn_after is not None and relearn_after < 1:
            raise InputError("DSPOT: relearn_after must be >= 1 (or None: the depth)")
        self.depth = depth
        self.relearn_after = relearn_after

    def _init_transform(self, s: np.ndarray) -> np.ndarray:
        d = self.depth
        if s.size <= d + 10:
            raise InputError(f"DSPOT: needs more than depth + 10 = {d + 10} calibration scores")
        c = np.cumsum(np.concatenate([[0.0], s]))
        ma = (c[d:-1] - c[:-d - 1]) / d  # mean of the d scores before each score
        self.window_ = s[-d:].copy()
        self._pos = 0
        self._sum = float(self.window_.sum())
        self._run: list[float] = []  # the flagged scores in a row, up to now
        self.relearned_ = 0
        return s[d:] - ma

    def _x(self, s: float) -> float:
        return s - self._sum / self.depth

    def _flag(self, v: float) -> None:
        run = self._run
        run.append(v)
        if len(run) >= (self.relearn_after or self.depth):  # a sustained shift: the new level
            self.window_ = np.resize(np.asarray(run[-self.depth:], dtype=np.float64), self.depth)
            self._pos = 0
            self._sum = float(self.window_.sum())
            run.clear()
            self.relearned_ += 1

    def _learn(self, v: float) -> None:
        if self._run:
            self._run.clear()
        old = self.window_[self._pos]
        self.window_[self._pos] = v
        self._pos = (self._pos + 1) % self.depth
        self._sum += v - old

    @property
    def threshold(self) -> float:
        """The current threshold in score units (the local mean + the EVT threshold of the residuals)."""
        self._check()
        return self.z_ + self._sum / self.depth

    def state(self) -> dict[str, Any]:
        d = super().state()
        d.update({"depth": self.depth, "relearn_after": self.relearn_after, "window": _b64(self.window_),
                  "pos": self._pos, "sum": self._sum, "run": [float(v) for v in self._run],
                  "relearned": self.relearned_})
        return d

    def _set_state(self, d: dict[str, Any]) -> None:
        super()._set_state(d)
        self.window_ = _unb64(d["window"])
        if self.window_.size != self.depth:
            raise InputError(f"DSPOT state: window of {self.window_.size} scores, depth {self.depth}")
        self._pos, self._sum = int(d["pos"]), float(d["sum"])
        self._run = [float(v) for v in d["run"]]
        self.relearned_ = int(d["relearned"])


def from_state(d: dict[str, Any]) -> SPOT:
    """A SPOT or DSPOT that goes on exactly where the one whose :meth:`SPOT.state` gave ``d`` was.

    >>> rng = np.random.default_rng(1)
    >>> a = DSPOT(q=1e-3, depth=20, refit_every=5).fit(rng.normal(size=500))
    >>> _ = a.update(rng.normal(size=300))
    >>> b = from_state(json.loads(json.dumps(a.state())))
    >>> x = rng.normal(size=400) + np.r_[np.zeros(200), np.full(200, 6.0)]
    >>> bool((a.update(x) == b.update(x)).all()), bool(a.threshold == b.threshold)
    (True, True)
    """
    if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
        raise InputError(f"SPOT state format {d.get('format') if isinstance(d, dict) else None!r} is not "
                         f"supported (this anomon reads {STATE_FORMAT})")
    if d.get("kind") == "spot":
        t: SPOT = SPOT(q=d["q"], level=d["level"], max_peaks=d["max_peaks"], refit_every=d["refit_every"])
    elif d.get("kind") == "dspot":
        t = DSPOT(q=d["q"], level=d["level"], max_peaks=d["max_peaks"], refit_every=d["refit_every"],
                  depth=d["depth"], relearn_after=d["relearn_after"])
    else:
        raise InputError(f"SPOT state: unknown kind {d.get('kind')!r} (spot, dspot)")
    try:
        t._set_state(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"SPOT state: {type(exc).__name__}: {exc}") from None
    return t


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f8").copy()


def make_threshold(kind: str, calibration: np.ndarray, q: float, **kw: Any) -> SPOT:
    """Build and fit ``"spot"`` or ``"dspot"`` from calibration scores."""
    if kind == "spot":
        return SPOT(q=q, **{k: v for k, v in kw.items() if k in ("level", "max_peaks", "refit_every")}).fit(calibration)
    if kind == "dspot":
        return DSPOT(q=q, **{k: v for k, v in kw.items()
                             if k in ("level", "max_peaks", "refit_every", "depth", "relearn_after")}).fit(calibration)
    raise InputError(f"unknown online threshold kind {kind!r} (spot, dspot)")
