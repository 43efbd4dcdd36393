"""Why a window is anomalous, in the daemon's score records and alert events (``scoring.explain``).

A detector that can explain (:attr:`models.base.Detector.can_explain`) says how much each step and channel
of a window contributes to its score (:meth:`models.base.Detector.contributions`). :class:`WindowExplainer`
runs that on the windows a bundle serves, as :meth:`monitor.modelstore.Bundle.score_windows` prepares them
(decimated, normalised; a tabular detector's features are the window's steps x channels, summed back per
channel and step), and writes the result as the ``"explain"`` field::

    "explain": {"channels": [{"channel": "temp", "index": 2, "share": 0.912}, ...], "span": [10, 13]}

``channels``: the ``scoring.explain_top_k`` channels with the largest shares, largest first (``channel``:
the bundle's channel name when it records ``channel_names``, else the index); ``span``: ``[start, stop)``
steps of the window (0 = its first reading, ``stop`` exclusive) that contribute most.

Only anomalous windows are explained (one more model pass each), so the fast path of normal windows is
unchanged: :meth:`WindowExplainer.annotate` appends the field to their already encoded score records, and
remembers it for the alert "start" event that such a window opens (:meth:`WindowExplainer.for_alert`).

>>> import numpy as np, tempfile
>>> from models import get_detector
>>> from monitor.modelstore import load_bundle, save_bundle
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 8, 3)).astype(np.float32)
>>> d = tempfile.mkdtemp()
>>> _ = save_bundle(get_detector("robust-zscore")().fit(X.reshape(200, -1)), d, window_length=8, stride=8,
...                 channels=3, calibration=X, extra={"channel_names": ["a", "b", "c"]})
>>> ex = WindowExplainer(load_bundle(d), top_k=2)
>>> w = X[:1].copy()
>>> w[0, 5, 1] += 20.0                  # a spike in channel "b", step 5
>>> f = ex.fragments(w)[0]
>>> f["channels"][0]["channel"], f["channels"][0]["index"], len(f["channels"]), f["span"]
('b', 1, 2, [5, 6])
"""
from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from models.base import Explanation
from monitor.errors import ConfigError
from monitor.modelstore import normalize_windows

log = logging.getLogger(__name__)

#: explanations remembered for the alert events of the windows they explain (oldest dropped beyond)
REMEMBER = 4096


def channel_names(bundle: Any) -> list[str] | None:
    """The bundle's channel names (``anomon.json`` field ``channel_names``, one per channel), else None."""
    names = bundle.meta.get("channel_names")
    if isinstance(names, list) and len(names) == bundle.channels and all(isinstance(n, str) for n in names):
        return names
    return None


def make_explainer(bundle: Any, scoring: Any, reload: bool = False) -> WindowExplainer | None:
    """The explainer the daemon uses for ``bundle`` (``scoring.explain``), or None when off.

    A detector that cannot explain is a :class:`~monitor.errors.ConfigError` at start; after a reload
    (the new model may be of another detector) it is logged and explanations stop.
    """
    if not scoring.explain:
        return None
    if not getattr(bundle.detector, "can_explain", False):
        from models import available_detectors

        can = sorted(n for n, c in available_detectors().items() if c.can_explain)
        msg = (f"scoring.explain: the model's detector {bundle.detector.name!r} cannot explain its scores "
               f"(these can: {', '.join(can)}); set scoring.explain = false or serve one of those")
        if not reload:
            raise ConfigError(msg)
        log.error("%s: explanations are off for %s", msg, bundle)
        return None
    return WindowExplainer(bundle, scoring.explain_top_k)


class WindowExplainer:
    """Explanations of the windows a bundle serves (see the module docstring)."""

    def __init__(self, bundle: Any, top_k: int = 3):
        self.bundle = bundle
        self.top_k = max(1, min(int(top_k), bundle.channels))
        names = channel_names(bundle)
        self._labels: list[Any] = names if names is not None else list(range(bundle.channels))
        self._recent: dict[tuple[str, int], dict] = {}
        self.explained = 0

    def explain(self, X: np.ndarray) -> Explanation:
        """The :class:`~models.base.Explanation` of raw windows ``(n, T, C)`` (after the bundle's per-series
        normalisation), with spans in the window's own steps (a decimating bundle's spans mapped back)."""
        b = self.bundle
        X = np.asarray(X, dtype=np.float32)
        dec = max(1, int(b.decimate))
        if dec > 1:
            X = X[:, dec - 1::dec]
        X = normalize_windows(X, b.normalize, b._mean, b._std)
        n, T, C = X.shape
        if b.detector.input_kind == "tabular":
            contrib = b.detector.contributions(X.reshape(n, -1)).reshape(n, T, C)
        else:
            contrib = b.detector.contributions(X)
        e = Explanation.from_contributions(contrib, self.top_k)
        if dec > 1:  # model step i is reading (dec - 1) + i * dec of the window
            span = np.stack([(dec - 1) + e.span[:, 0] * dec, (dec - 1) + (e.span[:, 1] - 1) * dec + 1], axis=1)
            e = Explanation(e.contributions, e.shares, e.top, span)
        return e

    def fragments(self, X: np.ndarray) -> list[dict]:
        """The ``"explain"`` objects of raw windows ``(n, T, C)``."""
        e = self.explain(X)
        labels = self._labels
        out = []
        for top, shares, span in zip(e.top.tolist(), e.shares.tolist(), e.span.tolist()):
            out.append({"channels": [{"channel": labels[i], "index": i, "share": round(shares[i], 4)} for i in top],
                        "span": span})
        return out

    def annotate(self, take: list, flags: np.ndarray, series: list[str], ends_us: list[int],
                 values: list[bytes]) -> None:
        """Explain the anomalous windows of a scored batch and add ``"explain"`` to their score records.

        ``take``: the batch's ``(window batch, timestamps)`` pairs (their windows in ``.X``); ``flags``,
        ``series``, ``ends_us``: per window; ``values``: the records, the batch's last (``len(series)`` of them).
        """
        idx = np.flatnonzero(flags)
        if not len(idx):
            return
        X = np.concatenate([b.X for b, _ in take]) if len(take) > 1 else take[0][0].X
        X = X[idx]
        sids = [series[j] for j in idx.tolist()]
        if getattr(self.bundle, "series_norm", None) is not None:
            X = self.bundle.normalize_series(X, sids)
        base = len(values) - len(series)
        remember = self._recent
        for j, sid, frag in zip(idx.tolist(), sids, self.fragments(X)):
            text = json.dumps(frag, separators=(",", ":")).encode()
            rec = values[base + j]
            if rec.endswith(b"}"):  # (a score record is one JSON object: the field goes before its "}")
                values[base + j] = rec[:-1] + b',"explain":' + text + b"}"
            remember[(sid, int(ends_us[j]))] = frag
        self.explained += len(idx)
        if len(remember) > REMEMBER:
            for k in list(remember)[: len(remember) - REMEMBER // 2]:
                del remember[k]

    def for_alert(self, series: str, end_us: int) -> dict:
        """``{"explain": ...}`` for the alert event of the window ``(series, end_us)`` when it was explained,
        else ``{}``."""
        frag = self._recent.pop((series, int(end_us)), None)
        return {} if frag is None else {"explain": frag}
