"""The parts of a WFDB header (``.hea``) anomon checks before reading a record: its sampling rate
and the signal files it names.

The WFDB format lets a header leave the sampling rate out (readers then assume 250 Hz); anomon
never assumes a rate, so :func:`header_fs` returns ``None`` there and the loaders raise an error.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "r1.hea").write_text("# a comment\\nr1 2 128 1000\\nr1.dat 16 200 16 0 0 0 0 I\\nr1.dat 16 200 16 0 0 0 0 II\\n")
>>> h = read_header(d / "r1.hea")
>>> h.fs, h.n_signals, h.signal_files
(128.0, 2, ['r1.dat'])
>>> _ = (d / "r2.hea").write_text("r2 1\\nr2.dat 16\\n")
>>> read_header(d / "r2.hea").fs is None
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._core import DatasetFormatError

__all__ = ["WfdbHeader", "read_header", "header_fs"]


@dataclass
class WfdbHeader:
    """A header's record line: ``fs`` in Hz (None when the header gives none), the number of
    signals and samples, the signal files (each once, in order) and the segment count of a
    multi-segment record (0 for a single segment)."""

    path: Path
    record: str
    n_signals: int
    fs: float | None
    n_samples: int | None
    signal_files: list[str] = field(default_factory=list)
    n_segments: int = 0


def read_header(path: str | Path) -> WfdbHeader:
    """Parse the record line (and the signal lines) of a WFDB header; errors name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="latin-1")
    except OSError as exc:
        raise FileNotFoundError(f"WFDB header not readable: {p} ({exc.strerror or exc})") from None
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DatasetFormatError(f"{p}: empty WFDB header (no record line)")
    lineno, rec_line = lines[0]
    parts = rec_line.split()
    if len(parts) < 2:
        raise DatasetFormatError(f"{p}:{lineno}: WFDB record line {rec_line!r} needs at least 'NAME NSIG'")
    name, _, nseg = parts[0].partition("/")
    try:
        n_sig = int(parts[1])
        n_segments = int(nseg) if nseg else 0
    except ValueError:
        raise DatasetFormatError(f"{p}:{lineno}: WFDB record line {rec_line!r}: the signal count "
                                 f"{parts[1]!r} is not an integer") from None
    fs = None
    if len(parts) >= 3:
        raw = parts[2].split("/")[0].split("(")[0]
        try:
            fs = float(raw)
        except ValueError:
            raise DatasetFormatError(f"{p}:{lineno}: WFDB record line {rec_line!r}: sampling rate {parts[2]!r} "
                                     "is not a number") from None
        if not fs > 0:
            raise DatasetFormatError(f"{p}:{lineno}: WFDB record line {rec_line!r}: sampling rate {fs:g} Hz "
                                     "must be positive")
    n_samples = None
    if len(parts) >= 4:
        try:
            n_samples = int(parts[3])
        except ValueError:
            n_samples = None
    files: list[str] = []
    if not n_segments:
        for _, ln in lines[1:1 + n_sig]:
            f = ln.split()[0]
            if f != "~" and f not in files:  # "~": a signal with no samples
                files.append(f)
    return WfdbHeader(p, name, n_sig, fs, n_samples, files, n_segments)


def header_fs(path: str | Path) -> float:
    """The sampling rate a header declares; :class:`DatasetFormatError` when it declares none."""
    h = read_header(path)
    if h.fs is None:
        raise DatasetFormatError(
            f"{h.path}: the WFDB header gives no sampling rate (record line '{h.record} {h.n_signals}'); "
            f"add it as the third field, e.g. '{h.record} {h.n_signals} 360' for 360 Hz")
    return h.fs
