"""A time budget for ``anomon batch compare`` (``--time-budget 10m``): epochs and training-sample sizes
scaled to the data, with what was chosen and why.

The budget is shared out as it is spent: before each detector × dataset cell, what is left is split
evenly over the cells still to run and their seeds. A detector with epochs (``epochs``, and
``pretrain_epochs`` in the same proportion) or a training-sample cap (``max_train``) is first timed on
the cell's data in two pilots (one and two epochs, or ``max_train`` of :data:`PILOT_ROWS` and half
of it; fit + score of the protocol's first seed split), which give a fixed cost and a cost per epoch
or per training row; it gets the largest setting whose extrapolated time fits its share, never more
than its default. Settings the user gave (``params``) are kept as given. The
others (isolation forest, ECOD, PCA ...) run as they are; their time is taken from what is left.
The first pilot of each detector class is run once more beforehand, untimed (imports and
lazy set-up would count as cost). The pilots' time counts against the budget. An estimate is linear in epochs and in ``max_train``
(brute-force queries; neighbour trees make it pessimistic), so runs tend to end under the budget.

Examples
--------
>>> parse_duration("10m"), parse_duration("1h30m"), parse_duration("90s"), parse_duration(45)
(600.0, 5400.0, 90.0, 45.0)
>>> scaled_epochs(share_s=10.0, epoch_s=0.5, default=100, fixed_s=2.0)
16
>>> scaled_epochs(share_s=1000.0, epoch_s=0.5, default=100)
100
>>> scaled_rows(share_s=2.0, row_s=0.001, n_train=50000, default=20000)
2000
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Callable

from monitor import durations
from monitor.errors import ConfigError

#: Largest ``max_train`` of a pilot.
PILOT_ROWS = 1000
#: Smallest ``max_train`` the budget chooses (or every training row, when fewer).
MIN_ROWS = 200
#: Keys scaled together with ``epochs``.
EPOCH_KEYS = ("epochs", "pretrain_epochs")



def parse_duration(value: Any) -> float:
    """Seconds of ``"10m"``, ``"1h30m"``, ``"90s"``, ``"2.5m"`` or a plain number of seconds."""
    try:
        secs = durations.parse_duration(value, bare_seconds=True)
    except ValueError:
        raise ConfigError(f"time_budget: {value!r} is not a duration; give e.g. 10m, 1h30m, 90s or seconds") from None
    if not secs > 0:
        raise ConfigError(f"time_budget: {value!r} must be positive")
    return secs


def linear_cost(x1: float, s1: float, x2: float, s2: float) -> tuple[float, float]:
    """(fixed seconds, seconds a unit) of two timings ``s1`` at ``x1`` and ``s2`` at ``x2 > x1`` units.

    The slope is at least a tenth of ``s2 / x2`` (timing noise can make ``s2 <= s1``).

    >>> linear_cost(1, 3.0, 2, 4.0)
    (2.0, 1.0)
    """
    unit = max((s2 - s1) / (x2 - x1), 0.1 * s2 / x2, 1e-6)
    return max(s2 - unit * x2, 0.0), unit


def scaled_epochs(share_s: float, epoch_s: float, default: int, fixed_s: float = 0.0) -> int:
    """Epochs that fit ``share_s`` at ``fixed_s`` + ``epoch_s`` a epoch: at least 1, at most ``default``."""
    return int(max(1, min(int(default), int((share_s - fixed_s) // max(epoch_s, 1e-6)))))


def scaled_rows(share_s: float, row_s: float, n_train: int, default: int | None, fixed_s: float = 0.0) -> int:
    """``max_train`` that fits ``share_s`` at ``fixed_s`` + ``row_s`` a training row: between
    :data:`MIN_ROWS` (or ``n_train``) and ``default`` (or ``n_train``)."""
    cap = min(int(default), n_train) if default else n_train
    rows = int((share_s - fixed_s) / max(row_s, 1e-9))
    return int(max(min(MIN_ROWS, cap), min(cap, rows)))


def scalable(cls) -> bool:
    """Whether the budget scales detector class ``cls`` (it has ``epochs`` or ``max_train``)."""
    names = set(cls._param_names())
    return "epochs" in names or "max_train" in names


def _default(cls, key: str) -> Any:
    p = inspect.signature(cls.__init__).parameters.get(key)
    return None if p is None or p.default is inspect.Parameter.empty else p.default


class TimeBudget:
    """Shares ``seconds`` out over the cells of a compare run (see the module docstring)."""

    def __init__(self, seconds: float, n_seed_runs: int):
        self.seconds = float(seconds)
        self.left_runs = int(n_seed_runs)  # detector × dataset × seed runs not yet planned
        self.t0 = time.perf_counter()
        self.choices: dict[str, dict[str, Any]] = {}
        self._warm: set = set()  # classes fitted once already (imports, lazy set-up)

    def left_s(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)

    def report(self) -> dict[str, Any]:
        """What metrics.json and the report say: the budget, the time spent, every choice."""
        return {"seconds": self.seconds, "spent_s": round(time.perf_counter() - self.t0, 1),
                "choices": self.choices}

    def plan(self, det: str, dataset: str, cls, params: dict[str, Any], user: dict[str, Any], n_seeds: int,
             pilot: Callable[[dict[str, Any]], tuple[float, int]]) -> dict[str, Any]:
        """``params`` for the ``n_seeds`` runs of one cell, scaled to its share of what is left.

        ``pilot(params) -> (seconds, n_train)`` times one fit + score with ``params`` on the data;
        ``user`` holds the settings the user gave (never scaled).
        """
        names = set(cls._param_names())
        share = max(self.left_s(), 0.0) / max(self.left_runs, 1)  # seconds a seed run
        self.left_runs -= n_seeds
        choice: dict[str, Any] = {"share_s": round(share, 2)}
        out = dict(params)
        if "epochs" in names and "epochs" not in user:
            default = {k: params.get(k, _default(cls, k)) for k in EPOCH_KEYS if k in names}
            default = {k: int(v) for k, v in default.items() if v}
            if default.get("epochs"):
                def run(e: int) -> float:
                    ratio = e / default["epochs"]
                    return pilot({**params, **{k: (e if k == "epochs" else min(v, max(1, round(v * ratio))))
                                               for k, v in default.items() if k not in user}})[0]

                if cls not in self._warm:  # the first fit of a class pays for imports and lazy set-up
                    self._warm.add(cls)
                    run(1)
                s1 = run(1)
                s2 = run(2) if default["epochs"] >= 2 else s1
                fixed, per = linear_cost(1, s1, 2, s2) if default["epochs"] >= 2 else (0.0, s1)
                epochs = scaled_epochs(share, per, default["epochs"], fixed)
                ratio = epochs / default["epochs"]
                for k, v in default.items():
                    if k not in user:
                        out[k] = epochs if k == "epochs" else max(1, round(v * ratio))
                choice.update({k: [default[k], out[k]] for k in default}, pilot_s=round(s1 + s2, 3),
                              pilot="1 and 2 epochs", fixed_s=round(fixed, 3), epoch_s=round(per, 4),
                              reason="epochs fitted to the share" if epochs < default["epochs"]
                              else "the default fits the share")
        elif "max_train" in names and "max_train" not in user:
            default = params.get("max_train", _default(cls, "max_train"))
            rows = min(int(default), PILOT_ROWS) if default else PILOT_ROWS
            if cls not in self._warm:
                self._warm.add(cls)
                pilot({**params, "max_train": max(rows // 4, 1)})
            s2, n_train = pilot({**params, "max_train": rows})
            spent, tried = s2, f"max_train {min(rows, n_train)}"
            if n_train > rows:  # a second, smaller pilot gives the cost a training row
                s1, _ = pilot({**params, "max_train": rows // 2})
                spent, tried = s1 + s2, f"max_train {rows // 2} and {rows}"
                fixed, per = linear_cost(rows // 2, s1, rows, s2)
                chosen = scaled_rows(share, per, n_train, default, fixed)
            else:
                chosen = n_train
            out["max_train"] = chosen
            choice.update(max_train=[default, chosen], n_train=n_train, pilot_s=round(spent, 3), pilot=tried,
                          reason="training sample fitted to the share" if chosen < min(default or n_train, n_train)
                          else "every row the default takes fits the share")
        else:
            choice["reason"] = ("set by the user" if (("epochs" in names and "epochs" in user)
                                                      or ("max_train" in names and "max_train" in user))
                                else "nothing to scale (runs as it is)")
        self.choices.setdefault(det, {})[dataset] = choice
        return out

    def note(self, det: str, dataset: str) -> str:
        """One line saying what was chosen for a cell."""
        c = self.choices.get(det, {}).get(dataset, {})
        knobs = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in c.items() if isinstance(v, list))
        pilot = f"; pilot ({c['pilot']}) {c['pilot_s']:.2f} s" if "pilot" in c else ""
        return f"time budget: {det} on {dataset}: {knobs or c.get('reason', '')} ({c.get('share_s', 0):.1f} s a seed{pilot})"
