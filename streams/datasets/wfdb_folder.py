"""A folder of WFDB records from any database (PhysioNet's layout): record names from its ``RECORDS``
file or its ``*.hea`` headers, and a checked load of one record whose errors name the missing file.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for n in ("b2", "a1"):
...     _ = (d / f"{n}.hea").write_text(f"{n} 1 250 10\\n{n}.dat 16\\n")
>>> record_names(d)
['a1', 'b2']
>>> _ = (d / "RECORDS").write_text("b2\\n")
>>> record_names(d)
['b2']
"""
from __future__ import annotations

from pathlib import Path

from ._core import DatasetFormatError
from .mitdb import MitdbRecord, load_wfdb_record
from .wfdb_header import header_fs, read_header

__all__ = ["record_names", "load_folder_record", "record_problems"]


def record_names(directory: str | Path) -> list[str]:
    """The records of a WFDB folder: the lines of its ``RECORDS`` file when it has one (PhysioNet's
    index; names may hold sub-folders, ``p00/p000020``), else the stems of its ``*.hea`` files, sorted."""
    d = Path(directory)
    idx = d / "RECORDS"
    if idx.is_file():
        names = [ln.strip().rstrip("/") for ln in idx.read_text(encoding="utf-8", errors="replace").splitlines()]
        return [n for n in names if n and not n.startswith("#")]
    return sorted(h.stem for h in d.glob("*.hea") if h.is_file())


def _names_hint(d: Path) -> str:
    names = record_names(d) if d.is_dir() else []
    if not names:
        return f"{d} holds no WFDB records (*.hea)"
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return f"records in {d}: {', '.join(names[:8])}{more}"


def record_problems(directory: str | Path, name: str, annotator: str | None = "atr") -> list[str]:
    """Why record ``name`` of ``directory`` would not load (empty when it loads): a missing header, a
    header without a sampling rate, a missing signal file, a missing annotation file (``annotator``
    None: annotations are not needed). Each problem names the file."""
    d = Path(directory)
    hea = d / f"{name}.hea"
    if not hea.is_file():
        return [f"WFDB header not found: {hea}"]
    try:
        h = read_header(hea)
        header_fs(hea)
    except (DatasetFormatError, FileNotFoundError) as exc:
        return [str(exc)]
    out = []
    for f in h.signal_files:
        if not (hea.parent / f).is_file():
            out.append(f"signal file of record {name} not found: {hea.parent / f} (named in {hea})")
    if annotator:
        ann = hea.parent / f"{Path(name).name}.{annotator}"
        if not ann.is_file():
            out.append(f"annotation file of record {name} not found: {ann}")
    return out


def load_folder_record(directory: str | Path, name: str, annotator: str = "atr") -> MitdbRecord:
    """Record ``name`` of the WFDB folder ``directory`` with its ``annotator`` annotations (required).

    Raises :class:`FileNotFoundError` naming the missing folder, header, signal or annotation file
    (with the folder's records when the header is missing) and :class:`DatasetFormatError` for a
    header without a sampling rate or an unreadable file.
    """
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"WFDB folder not found: {d}")
    problems = record_problems(d, name, annotator)
    if problems:
        first = problems[0]
        if first.startswith("WFDB header not found"):
            raise FileNotFoundError(f"{first}: no record {name!r}; {_names_hint(d)}")
        if "no sampling rate" in first or "WFDB record line" in first or "empty WFDB header" in first:
            raise DatasetFormatError(first)
        if first.startswith("annotation file"):
            first += (f"; beat windows need the record's beat annotations (annotator {annotator!r}; "
                      "--annotator EXT reads another)")
        raise FileNotFoundError(first)
    return load_wfdb_record(d / name, annotator, record_name=name)
