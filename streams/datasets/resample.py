"""Resample a WFDB record to another sampling rate: the signal with :func:`scipy.signal.resample_poly`
(a rational approximation ``up / down`` of the ratio, zero-phase, so times keep their place) and the
annotation sample indices scaled alike.

Examples
--------
>>> rational_ratio(128, 360)
(45, 16)
>>> rational_ratio(250, 360)
(36, 25)
>>> rational_ratio(360, 360)
(1, 1)
"""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from .mitdb import MitdbRecord

__all__ = ["rational_ratio", "resample_record"]

#: Largest ``down`` of the rational approximation (the FIR filter grows with up and down).
MAX_DENOMINATOR = 1000


def rational_ratio(fs_from: float, fs_to: float, max_denominator: int = MAX_DENOMINATOR) -> tuple[int, int]:
    """``(up, down)`` with ``up / down`` the closest fraction to ``fs_to / fs_from`` whose ``down`` is
    at most ``max_denominator`` (exact for rates given in whole or decimal hertz)."""
    if not (fs_from > 0 and fs_to > 0):
        raise ValueError(f"sampling rates must be positive, got {fs_from!r} -> {fs_to!r}")
    r = (Fraction(str(float(fs_to))) / Fraction(str(float(fs_from)))).limit_denominator(max_denominator)
    return r.numerator, r.denominator


def resample_record(rec: MitdbRecord, fs: float) -> tuple[MitdbRecord, dict[str, Any]]:
    """``rec`` resampled to ``fs`` Hz, and what was done (``from_hz``, ``to_hz``, ``up``, ``down``,
    ``effective_hz``: ``from_hz * up / down``, equal to ``to_hz`` unless the ratio was approximated).

    An annotation at sample ``s`` moves to ``round(s * up / down)`` (clipped to the new length):
    ``resample_poly`` is zero-phase, so output sample ``j`` lies at input time ``j * down / up``.
    A record already at ``fs`` comes back as it is.
    """
    from scipy.signal import resample_poly

    up, down = rational_ratio(rec.fs, fs)
    info = {"record": rec.record, "from_hz": float(rec.fs), "to_hz": float(fs), "up": up, "down": down,
            "effective_hz": float(rec.fs) * up / down, "method": "scipy.signal.resample_poly"}
    if up == down:
        return rec, info
    sig = resample_poly(np.asarray(rec.signal, dtype=np.float64), up, down, axis=0)
    n = sig.shape[0]
    samples = np.rint(np.asarray(rec.ann_samples, dtype=np.float64) * up / down).astype(np.int64)
    samples = np.clip(samples, 0, max(n - 1, 0))
    out = replace(rec, signal=np.ascontiguousarray(sig), fs=float(rec.fs) * up / down, ann_samples=samples,
                  ann_symbols=np.asarray(rec.ann_symbols).copy(), comments=list(rec.comments))
    return out, info
