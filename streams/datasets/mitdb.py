"""MIT-BIH Arrhythmia records (WFDB): the continuous signal and R-peak-centred beat windows."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._core import DatasetFormatError, require
from .wfdb_header import header_fs

__all__ = [
    "MitdbRecord",
    "BeatSet",
    "BEAT_SYMBOLS",
    "MITDB_RECORDS",
    "load_mitdb_record",
    "load_mitdb_beats",
    "load_wfdb_record",
    "load_wfdb_dir",
    "beats_from_record",
    "beat_window",
]

#: Records shipped in the shared data directory.
MITDB_RECORDS = ("100", "102", "103", "104", "105", "106", "107", "108")

#: WFDB/PhysioNet beat annotation symbols. Everything else ('+' rhythm change, '~' noise,
#: '|' isolated artifact, '!' flutter wave, 'x' non-conducted P, '[', ']', '"' ...) is not a beat.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass
class MitdbRecord:
    """One WFDB record: ``signal`` (n, C) float64 in physical units (mV for MIT-BIH), ``fs`` in Hz,
    and its annotations (sample index and symbol of each, beats and non-beats alike)."""

    record: str
    signal: np.ndarray
    fs: float
    channels: list[str]
    units: list[str]
    ann_samples: np.ndarray
    ann_symbols: np.ndarray  # dtype '<U2'
    comments: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.fs)

    def beat_mask(self) -> np.ndarray:
        """Boolean mask over the annotations: True where the symbol is a beat."""
        return np.isin(self.ann_symbols, sorted(BEAT_SYMBOLS))

    def symbol_counts(self, beats_only: bool = True) -> dict[str, int]:
        syms = self.ann_symbols[self.beat_mask()] if beats_only else self.ann_symbols
        return dict(Counter(syms.tolist()))

    def sample_labels(self, half_width: int = 0) -> np.ndarray:
        """Per-sample labels for streaming: 1 at (and ``half_width`` samples around) every
        non-'N' beat annotation, 0 elsewhere."""
        lab = np.zeros(self.n_samples, dtype=np.int64)
        mask = self.beat_mask() & (self.ann_symbols != "N")
        for s in self.ann_samples[mask]:
            lab[max(0, s - half_width): s + half_width + 1] = 1
        return lab


@dataclass
class BeatSet:
    """Beat windows cut around annotated R peaks.

    ``X`` is (n, T) for one channel or (n, T, C) for several; ``y`` is 0 for 'N' and 1 for
    every other beat symbol; ``samples`` the R-peak sample of each window; ``dropped`` the
    number of beats skipped because their window would cross the start or end of the record.
    """

    X: np.ndarray
    y: np.ndarray
    symbols: np.ndarray
    samples: np.ndarray
    record: str
    fs: float
    window: tuple[int, int]
    channels: list[str]
    dropped: int = 0

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.symbols.tolist()))


def _window(window: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(window, (int, np.integer)):
        if window < 2:
            raise ValueError(f"window length must be >= 2, got {window}")
        before = int(window) // 2
        return before, int(window) - before
    try:
        before, after = (int(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"window must be a total length or (before, after), got {window!r}") from exc
    if before < 0 or after < 1:
        raise ValueError(f"window (before, after) must have before >= 0 and after >= 1, got {window!r}")
    return before, after


def load_wfdb_record(path: str | Path, annotation: str | None = "atr", *, record_name: str | None = None) -> MitdbRecord:
    """Read any WFDB record: ``path`` is the record path without extension (``dir/100``).
    Annotations are read from ``path.<annotation>`` when that file exists. A header that gives no
    sampling rate is an error (WFDB readers would assume 250 Hz)."""
    import wfdb

    p = Path(path)
    if p.suffix in {".hea", ".dat", ".atr"}:
        p = p.with_suffix("")
    hea = p.with_name(p.name + ".hea")
    if not hea.is_file():
        raise FileNotFoundError(f"WFDB header not found: {hea}")
    fs = header_fs(hea)
    try:
        rec = wfdb.rdrecord(str(p))
    except Exception as exc:  # wfdb raises many types on malformed input
        raise DatasetFormatError(f"{hea}: cannot read WFDB record: {exc}") from exc
    if rec.p_signal is None:
        raise DatasetFormatError(f"{hea}: record has no physical signal")
    samples = np.zeros(0, dtype=np.int64)
    symbols = np.zeros(0, dtype="<U2")
    if annotation:
        ann_file = p.with_name(f"{p.name}.{annotation}")
        if ann_file.is_file():
            try:
                ann = wfdb.rdann(str(p), annotation)
            except Exception as exc:
                raise DatasetFormatError(f"{ann_file}: cannot read WFDB annotations: {exc}") from exc
            samples = np.asarray(ann.sample, dtype=np.int64)
            symbols = np.asarray(ann.symbol, dtype="<U2")
    return MitdbRecord(
        record=record_name or p.name,
        signal=np.asarray(rec.p_signal, dtype=np.float64),
        fs=float(fs),
        channels=list(rec.sig_name or []),
        units=list(rec.units or []),
        ann_samples=samples,
        ann_symbols=symbols,
        comments=list(rec.comments or []),
    )


def load_mitdb_record(record: str | int, data_dir: str | Path | None = None, *, verify: bool = True) -> MitdbRecord:
    """An MIT-BIH record from ``mitdb/`` of the data directory: signal (650000, 2) mV at 360 Hz
    (MLII and V1 for most records) with its beat annotations."""
    rec = str(record)
    paths = [require(f"mitdb/{rec}.{ext}", data_dir, verify=verify, dataset="mitdb") for ext in ("hea", "dat", "atr")]
    return load_wfdb_record(paths[0].with_suffix(""), "atr", record_name=rec)


def beat_window(window_s: Sequence[float], fs: float) -> tuple[int, int]:
    """(samples before, samples after) the R peak of a window given in seconds, at ``fs`` Hz.

    >>> beat_window((0.25, 170 / 360), 360)
    (90, 170)
    >>> beat_window((0.25, 170 / 360), 128)
    (32, 60)
    """
    try:
        before_s, after_s = (float(v) for v in window_s)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"beat window must be (seconds before, seconds after), got {window_s!r}") from exc
    if not fs > 0:
        raise ValueError(f"sampling rate must be positive, got {fs!r}")
    return _window((int(round(before_s * fs)), int(round(after_s * fs))))


def beats_from_record(
    rec: MitdbRecord,
    window: int | Sequence[int] = (90, 170),
    channel: int | str | Sequence[int | str] | None = 0,
    keep_symbols: Iterable[str] | None = None,
) -> BeatSet:
    """Cut beat windows around each beat annotation of ``rec`` (see :func:`load_mitdb_beats`)."""
    before, after = _window(window)
    if channel is None:
        chans = list(range(rec.signal.shape[1]))
    elif isinstance(channel, (int, np.integer, str)):
        chans = [channel]
    else:
        chans = list(channel)
    idx = []
    for c in chans:
        if isinstance(c, str):
            if c not in rec.channels:
                raise ValueError(f"record {rec.record} has no channel {c!r}; channels: {rec.channels}")
            idx.append(rec.channels.index(c))
        else:
            if not -rec.signal.shape[1] <= int(c) < rec.signal.shape[1]:
                raise ValueError(f"record {rec.record} has {rec.signal.shape[1]} channels; no channel {c}")
            idx.append(int(c))
    mask = rec.beat_mask()
    if keep_symbols is not None:
        keep = sorted(set(keep_symbols))
        mask &= np.isin(rec.ann_symbols, keep)
    samples = rec.ann_samples[mask]
    symbols = rec.ann_symbols[mask]
    inside = (samples - before >= 0) & (samples + after <= rec.n_samples)
    dropped = int((~inside).sum())
    samples, symbols = samples[inside], symbols[inside]
    offsets = np.arange(-before, after)
    sig = rec.signal[:, idx]  # (n, C)
    X = sig[samples[:, None] + offsets[None, :]]  # (n_beats, T, C)
    if isinstance(channel, (int, np.integer, str)):
        X = X[:, :, 0]
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = (symbols != "N").astype(np.int64)
    return BeatSet(X=X, y=y, symbols=symbols, samples=samples, record=rec.record, fs=rec.fs,
                   window=(before, after), channels=[rec.channels[i] if i < len(rec.channels) else str(i) for i in idx],
                   dropped=dropped)


def load_mitdb_beats(
    record: str | int,
    window: int | Sequence[int] = (90, 170),
    channel: int | str | Sequence[int | str] | None = 0,
    data_dir: str | Path | None = None,
    *,
    keep_symbols: Iterable[str] | None = None,
    verify: bool = True,
) -> BeatSet:
    """Beat windows of an MIT-BIH record, centred on the annotated R peaks.

    ``window`` = (samples before, samples after) the R peak, default (90, 170) = 260 samples
    (0.72 s at 360 Hz), or a total length split evenly (``before = L // 2``). ``channel`` an
    index or name gives X (n, T); a list of them, or None for all, gives X (n, T, C).
    Labels: 0 for 'N', 1 for every other beat symbol. Non-beat annotations ('+', '~', '|', ...)
    are excluded; ``keep_symbols=("N", "V")`` keeps only those beats. Beats whose window would
    cross either end of the record are dropped (count in ``BeatSet.dropped``).
    """
    return beats_from_record(load_mitdb_record(record, data_dir, verify=verify), window, channel, keep_symbols)


def load_wfdb_dir(directory: str | Path, annotation: str | None = "atr") -> dict[str, MitdbRecord]:
    """Every WFDB record (each ``*.hea``) in ``directory``, by record name, in sorted order.
    Annotations are read from ``NAME.<annotation>`` where present."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"WFDB directory not found: {d}")
    heads = sorted(d.glob("*.hea"))
    if not heads:
        raise FileNotFoundError(f"no WFDB records (*.hea) in {d}")
    return {h.stem: load_wfdb_record(h.with_suffix(""), annotation) for h in heads}
