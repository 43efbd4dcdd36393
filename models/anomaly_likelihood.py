"""Anomaly likelihood: from raw anomaly scores to the probability that the recent scores are unusual.

The stage of Ahmad, Lavin, Purdy & Agha, "Unsupervised real-time anomaly detection for streaming
data" (Neurocomputing 262, 2017), section 3.3: a raw score alone is noisy (a predictable series
scores low, a noisy one often high), so the detector reports how unlikely the *recent* scores are
under the series' *long-run* score distribution:

* the long-run distribution is a Gaussian with mean ``mu_t`` and standard deviation ``sigma_t`` of
  the short moving averages of the last ``historic_window`` (W) raw scores, re-estimated every
  ``reestimation_period`` scores;
* the recent behaviour is the short moving average ``m_t`` of the last ``averaging_window`` (W')
  raw scores, W' << W;
* the likelihood is ``L_t = 1 - Q((m_t - mu_t) / sigma_t)``, Q the Gaussian tail probability
  (one-sided: only scores *above* the usual count as anomalous, since higher = more anomalous);
  an alert is raised when ``L_t >= 1 - epsilon`` (the paper uses epsilon = 1e-5).

Until ``learning_period + estimation_samples`` scores have been seen the likelihood is 0.5
(nothing is known); the first ``learning_period`` scores are never used for the distribution
(a detector's scores settle while it learns). The defaults are the published ones (NuPIC's
``AnomalyLikelihood``): learning period 288, estimation samples 100, W = 8640, W' = 10,
re-estimation every 100 scores. :meth:`AnomalyLikelihood.log_likelihood` gives the log form used
to threshold near 1: ``log(Q + 1e-10) / log(1e-10)`` (0..1; 0.5 means Q = 1e-5), computed from Q
itself so likelihoods of 1 - 1e-12 keep their resolution.

Differences from NuPIC, on purpose: NuPIC's tail probability is two-sided (an unusually *low*
average also scores high) and its variance floor (3e-4) and mean floor (0.03) assume HTM scores in
[0, 1]; here the tail is one-sided and the floor of sigma is ``min_std`` plus ``rel_std_floor``
times the mean absolute averaged score (scale-free, so any detector's scores work).

One instance holds the state of one series (see :class:`LikelihoodPerSeries` for many). The
river-style API: :meth:`~AnomalyLikelihood.score_one` (no state change),
:meth:`~AnomalyLikelihood.learn_one`, and :meth:`~AnomalyLikelihood.update` (score then learn).
The state round-trips through :meth:`~AnomalyLikelihood.to_dict` / ``from_dict`` (JSON, with a
format version; never pickle).

Examples
--------
>>> import numpy as np
>>> al = AnomalyLikelihood(learning_period=10, estimation_samples=50, historic_window=200,
...                        averaging_window=5, reestimation_period=10)
>>> rng = np.random.default_rng(0)
>>> calm = [al.update(s) for s in rng.normal(1.0, 0.1, 300)]
>>> calm[0], bool(np.max(calm[-100:]) < 0.9999)  # 0.5 while learning; calm scores are never alarming
(0.5, True)
>>> spike = [al.update(s) for s in [5.0, 5.0]]
>>> spike[-1] > 0.9999
True
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

__all__ = ["AnomalyLikelihood", "LikelihoodPerSeries", "FORMAT_VERSION"]

#: Version of the ``to_dict`` schema (read back by ``from_dict``).
FORMAT_VERSION = 1
_LOG_EPS = 1e-10


def _q(z: float) -> float:
    """The Gaussian upper tail probability Q(z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class AnomalyLikelihood:
    """The anomaly likelihood of one series' raw scores (Ahmad et al. 2017); see the module docstring.

    Parameters
    ----------
    learning_period
        Scores at the start that are never used for the distribution (the detector is learning).
    estimation_samples
        Scores after the learning period before the first estimate; until then the likelihood is 0.5.
    historic_window
        W: the long-run window of raw scores the distribution is estimated on.
    reestimation_period
        Scores between re-estimates of the distribution.
    averaging_window
        W': the short moving average compared with the long-run distribution.
    min_std, rel_std_floor
        Floor of sigma: ``min_std + rel_std_floor * mean(|averages|)`` (a constant score history
        would otherwise make every change infinitely unlikely).
    """

    def __init__(self, learning_period: int = 288, estimation_samples: int = 100, historic_window: int = 8640,
                 reestimation_period: int = 100, averaging_window: int = 10, min_std: float = 1e-12,
                 rel_std_floor: float = 0.01):
        self.learning_period = learning_period
        self.estimation_samples = estimation_samples
        self.historic_window = historic_window
        self.reestimation_period = reestimation_period
        self.averaging_window = averaging_window
        self.min_std = min_std
        self.rel_std_floor = rel_std_floor
        for name in ("estimation_samples", "historic_window", "reestimation_period", "averaging_window"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"AnomalyLikelihood: {name} must be a positive integer, got {v!r}")
        if not isinstance(learning_period, int) or learning_period < 0:
            raise ValueError(f"AnomalyLikelihood: learning_period must be an integer >= 0, got {learning_period!r}")
        if averaging_window > historic_window:
            raise ValueError("AnomalyLikelihood: averaging_window must not exceed historic_window")
        if min_std < 0 or rel_std_floor < 0:
            raise ValueError("AnomalyLikelihood: min_std and rel_std_floor must be >= 0")
        self._reset()

    def _reset(self) -> None:
        self.n_seen_ = 0
        self.mean_: float | None = None
        self.std_: float | None = None
        self._since_estimate = 0
        self._history: deque[float] = deque(maxlen=self.historic_window)
        self._recent: deque[float] = deque(maxlen=self.averaging_window)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters, as given to ``__init__``."""
        return {k: getattr(self, k) for k in ("learning_period", "estimation_samples", "historic_window",
                                              "reestimation_period", "averaging_window", "min_std", "rel_std_floor")}

    def __repr__(self) -> str:
        return "AnomalyLikelihood(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    # ---- the distribution
    def _estimate(self) -> None:
        h = np.fromiter(self._history, dtype=np.float64)
        w = min(self.averaging_window, h.size)
        c = np.cumsum(np.r_[0.0, h])
        avg = (c[w:] - c[:-w]) / w  # trailing moving averages of the history
        mean = float(avg.mean())
        std = float(avg.std())
        floor = self.min_std + self.rel_std_floor * float(np.abs(avg).mean())
        self.mean_, self.std_ = mean, max(std, floor, 1e-300)
        self._since_estimate = 0

    @property
    def ready(self) -> bool:
        """Whether a distribution has been estimated (before: the likelihood is 0.5)."""
        return self.mean_ is not None

    # ---- river-style API
    def _tail(self, score: float) -> float:
        """Q of the moving average that ``score`` would make (0.5 before the first estimate)."""
        if self.mean_ is None:
            return 0.5
        recent = list(self._recent)[-(self.averaging_window - 1):] if self.averaging_window > 1 else []
        m = (sum(recent) + score) / (len(recent) + 1)
        return _q((m - self.mean_) / self.std_)

    def score_one(self, score: float) -> float:
        """The likelihood ``1 - Q(...)`` of the moving average ending at ``score``; the state is unchanged."""
        return 1.0 - self._tail(self._check(score))

    def log_score_one(self, score: float) -> float:
        """The log form of :meth:`score_one`: ``log(Q + 1e-10) / log(1e-10)``, in [0, 1]."""
        return self.log_likelihood_of_tail(self._tail(self._check(score)))

    def learn_one(self, score: float) -> AnomalyLikelihood:
        """Add one raw score to the short and long windows; re-estimate when due. Returns self."""
        s = self._check(score)
        self.n_seen_ += 1
        self._recent.append(s)
        if self.n_seen_ > self.learning_period:
            self._history.append(s)
            self._since_estimate += 1
            if self.mean_ is None:
                if len(self._history) >= self.estimation_samples:
                    self._estimate()
            elif self._since_estimate >= self.reestimation_period:
                self._estimate()
        return self

    def update(self, score: float) -> float:
        """:meth:`score_one` then :meth:`learn_one`: the likelihood of this score, as it arrives."""
        out = self.score_one(score)
        self.learn_one(score)
        return out

    def update_many(self, scores: Any, log: bool = False) -> np.ndarray:
        """:meth:`update` for each score in order; ``log=True`` returns the log form.

        >>> AnomalyLikelihood(learning_period=0, estimation_samples=2).update_many([1.0, 1.0, 1.0]).tolist()
        [0.5, 0.5, 0.5]
        """
        out = np.empty(len(scores), dtype=np.float64)
        for i, s in enumerate(np.asarray(scores, dtype=np.float64).reshape(-1)):
            q = self._tail(self._check(s))
            out[i] = self.log_likelihood_of_tail(q) if log else 1.0 - q
            self.learn_one(s)
        return out

    @staticmethod
    def log_likelihood(likelihood: float) -> float:
        """The log form of a likelihood: ``log(1 - L + 1e-10) / log(1e-10)``.

        >>> AnomalyLikelihood.log_likelihood(0.5) < 0.04, round(AnomalyLikelihood.log_likelihood(1 - 1e-5), 3)
        (True, 0.5)
        """
        return AnomalyLikelihood.log_likelihood_of_tail(1.0 - likelihood)

    @staticmethod
    def log_likelihood_of_tail(q: float) -> float:
        """The log form from the tail probability Q = 1 - L (exact for L close to 1)."""
        return float(math.log(max(q, 0.0) + _LOG_EPS) / math.log(_LOG_EPS))

    @staticmethod
    def _check(score: Any) -> float:
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"AnomalyLikelihood: score {score!r} is not finite")
        return s

    # ---- persistence (JSON, versioned)
    def to_dict(self) -> dict[str, Any]:
        """The hyperparameters and state as JSON-able values (``format_version`` included)."""
        return {"format_version": FORMAT_VERSION, "kind": "anomaly_likelihood", "params": self.get_params(),
                "state": {"n_seen": self.n_seen_, "mean": self.mean_, "std": self.std_,
                          "since_estimate": self._since_estimate, "history": list(self._history),
                          "recent": list(self._recent)}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyLikelihood:
        """The instance :meth:`to_dict` described (refuses an unknown format version).

        >>> a = AnomalyLikelihood(learning_period=0, estimation_samples=3)
        >>> _ = a.update_many([1.0, 2.0, 3.0, 2.0])
        >>> b = AnomalyLikelihood.from_dict(a.to_dict())
        >>> b.score_one(9.0) == a.score_one(9.0), b.n_seen_
        (True, 4)
        """
        v = d.get("format_version")
        if v != FORMAT_VERSION:
            raise ValueError(f"anomaly likelihood state has format_version {v!r}; this version reads {FORMAT_VERSION}")
        self = cls(**d["params"])
        st = d["state"]
        self.n_seen_ = int(st["n_seen"])
        self.mean_ = None if st["mean"] is None else float(st["mean"])
        self.std_ = None if st["std"] is None else float(st["std"])
        self._since_estimate = int(st["since_estimate"])
        self._history.extend(float(x) for x in st["history"])
        self._recent.extend(float(x) for x in st["recent"])
        return self


    # ---- a compact checkpoint (a streaming daemon's per-series state)
    def checkpoint(self) -> dict[str, Any]:
        """The state a restarted stream resumes from, compactly: the estimate (``mean``, ``std``), the
        counters and the short window, but not the long-run history (up to ``historic_window`` scores).

        After :meth:`resume` the likelihood of every score is what it would have been until the next
        re-estimate, which is then made on the scores learnt since (at least ``reestimation_period`` of
        them); :meth:`to_dict` keeps everything. Floats are rounded to 9 significant digits.

        >>> a = AnomalyLikelihood(learning_period=0, estimation_samples=3, reestimation_period=50)
        >>> _ = a.update_many([1.0, 2.0, 3.0, 2.0])
        >>> b = AnomalyLikelihood(learning_period=0, estimation_samples=3, reestimation_period=50)
        >>> _ = b.resume(a.checkpoint())
        >>> round(b.score_one(9.0), 9) == round(a.score_one(9.0), 9), b.n_seen_
        (True, 4)
        """
        def r(x: float | None) -> float | None:
            return None if x is None else float(f"{x:.9g}")

        return {"f": FORMAT_VERSION, "n": self.n_seen_, "mean": r(self.mean_), "std": r(self.std_),
                "since": self._since_estimate, "recent": [r(x) for x in self._recent]}

    def resume(self, d: dict[str, Any]) -> AnomalyLikelihood:
        """Continue from a :meth:`checkpoint` (the long-run history starts empty). Returns self.

        Raises ``ValueError`` naming the field when ``d`` is not a checkpoint this version reads."""
        if d.get("f") != FORMAT_VERSION:
            raise ValueError(f"anomaly likelihood checkpoint has format {d.get('f')!r}; this version reads {FORMAT_VERSION}")
        try:
            n = int(d["n"])
            int(d["since"])  # written for inspection; the re-estimate waits a full period after a resume
            mean = None if d["mean"] is None else float(d["mean"])
            std = None if d["std"] is None else float(d["std"])
            recent = [float(x) for x in d["recent"]]
        except KeyError as exc:
            raise ValueError(f"anomaly likelihood checkpoint: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"anomaly likelihood checkpoint: {exc}") from None
        if (mean is None) != (std is None) or (std is not None and not std > 0) or n < 0:
            raise ValueError("anomaly likelihood checkpoint: inconsistent mean/std/n")
        self._reset()
        self.n_seen_, self.mean_, self.std_ = n, mean, std
        self._since_estimate = 0  # the history restarts empty: the next re-estimate waits a full period
        self._recent.extend(recent[-self.averaging_window:])
        return self


class LikelihoodPerSeries:
    """One :class:`AnomalyLikelihood` per series id, made on first sight with the same parameters.

    >>> lp = LikelihoodPerSeries(learning_period=0, estimation_samples=2)
    >>> lp.update("a", 1.0), lp.update("b", 100.0), len(lp)
    (0.5, 0.5, 2)
    >>> LikelihoodPerSeries.from_dict(lp.to_dict())["b"].n_seen_
    1
    """

    def __init__(self, **params: Any):
        self.params = params
        AnomalyLikelihood(**params)  # validate once
        self._by_series: dict[str, AnomalyLikelihood] = {}

    def __len__(self) -> int:
        return len(self._by_series)

    def __getitem__(self, series: str) -> AnomalyLikelihood:
        st = self._by_series.get(series)
        if st is None:
            st = self._by_series[series] = AnomalyLikelihood(**self.params)
        return st

    def update(self, series: str, score: float) -> float:
        """The likelihood of ``score`` for ``series``, then learn it."""
        return self[series].update(score)

    def get(self, series: str) -> AnomalyLikelihood | None:
        """The state of ``series``, or None (without making one)."""
        return self._by_series.get(series)

    def checkpoint(self, series: str) -> dict[str, Any] | None:
        """:meth:`AnomalyLikelihood.checkpoint` of ``series`` (None when it has no state)."""
        st = self._by_series.get(series)
        return None if st is None else st.checkpoint()

    def resume(self, series: str, d: dict[str, Any]) -> None:
        """Give ``series`` the state of a checkpoint (see :meth:`AnomalyLikelihood.resume`)."""
        self._by_series[series] = AnomalyLikelihood(**self.params).resume(d)

    def forget(self, series: str) -> None:
        """Drop the state of ``series`` (gone idle); it learns again from its next score."""
        self._by_series.pop(series, None)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": "anomaly_likelihood_per_series", "params": self.params,
                "series": {k: v.to_dict() for k, v in self._by_series.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LikelihoodPerSeries:
        v = d.get("format_version")
        if v != FORMAT_VERSION:
            raise ValueError(f"per-series likelihood state has format_version {v!r}; this version reads {FORMAT_VERSION}")
        self = cls(**d["params"])
        self._by_series = {k: AnomalyLikelihood.from_dict(x) for k, x in d["series"].items()}
        return self
