"""A model trained at 360 Hz scoring the same ECG record sampled at 128 Hz and 250 Hz: with the
record resampled to the model's rate (what anomon does) and without (beat windows cut in samples at
the record's own rate, what anomon did before issue 24: about 2 s and three beats at 128 Hz).

For each MIT-BIH record (default 106 and 105) a detector is fitted on the protocol's training split
(``mitdbNNN-semi``, model seed 0) at 360 Hz. The record is then resampled to 128 and 250 Hz with
``resample_poly`` and written with ``wfdb.wrsamp`` into a temporary folder (deleted afterwards;
nothing is kept), read back as any other database's record would be (``--wfdb DIR``), and scored
on the same split (the protocol's, of the same beats). Threshold: the protocol's rule (95th
percentile of the validation scores). Nothing is chosen here: one detector, its defaults.

    OMP_NUM_THREADS=2 .venv/bin/python -m monitor.experiments.ecg_rates --json docs/results/ecg_rates.json

Examples
--------
>>> old_window(128)
(90, 170)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RECORDS = ("106", "105")
RATES = (128, 250)
DETECTORS = ("knn", "pca")
SEED = 0


def old_window(fs: float) -> tuple[int, int]:
    """The window before issue 24: 90 / 170 samples whatever the record's rate."""
    return (90, 170)


def _write(rec, fs: int, directory: Path, name: str) -> None:
    import wfdb

    from streams.datasets import resample_record

    r, _ = resample_record(rec, fs)
    wfdb.wrsamp(name, fs=fs, units=r.units, sig_name=r.channels, p_signal=r.signal, fmt=["16"] * len(r.channels),
                write_dir=str(directory))
    wfdb.wrann(name, "atr", r.ann_samples, list(r.ann_symbols), write_dir=str(directory), fs=fs)


def _old_protocol(folder: Path, name: str, record: str, ref):
    """The protocol as anomon built it before: (90, 170) samples at the record's rate, no resampling."""
    from monitor.protocols.ecg import _semi
    from streams.datasets import beats_from_record, load_folder_record

    rec = load_folder_record(folder, name)
    keep = ("N", "V") if record == "106" else None
    bs = beats_from_record(rec, window=old_window(rec.fs), channel=0, keep_symbols=keep)
    classes = np.asarray(bs.symbols).astype(str)
    return _semi(ref.protocol, ref.dataset, np.asarray(bs.X)[:, ::2], classes, classes != "N", None, "before 24")


def _metrics(det, data, comp: str) -> dict[str, Any]:
    from monitor.protocols.ecg import evaluate_detector

    m = evaluate_detector(det, data)[0][comp]
    return {"roc_auc": round(float(m["roc_auc"]), 4), "f1": round(float(m["f1"]), 4),
            "fpr": round(float(m["fpr"]), 4), "sizes": data.sizes()}


def run(records=RECORDS, rates=RATES, detectors=DETECTORS, data_dir=None) -> dict[str, Any]:
    from monitor.protocols.ecg import load_protocol, make_detector, prepare
    from streams.datasets import load_mitdb_record

    out: dict[str, Any] = {"seed": SEED, "rates_hz": list(rates), "records": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="anomon-ecg-rates-") as tmp:
        folder = Path(tmp)
        for record in records:
            ref = load_protocol(f"mitdb{record}-semi", data_dir=data_dir)
            rec = load_mitdb_record(record, data_dir)
            for fs in rates:
                _write(rec, fs, folder, f"r{record}_{fs}")
            res: dict[str, Any] = {}
            for name in detectors:
                det = make_detector(name, SEED, {}, ref.protocol)
                det.fit(prepare(det, ref.X_train))
                comp = det.default_component_name()
                row: dict[str, Any] = {"component": comp, "360 Hz (the record as is)": _metrics(det, ref, comp)}
                for fs in rates:
                    new = load_protocol(f"mitdb{record}-semi", wfdb=folder, record=f"r{record}_{fs}")
                    row[f"{fs} Hz resampled to 360 Hz"] = _metrics(det, new, comp)
                    row[f"{fs} Hz not resampled (before)"] = _metrics(det, _old_protocol(folder, f"r{record}_{fs}",
                                                                                          record, ref), comp)
                res[name] = row
            out["records"][record] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", nargs="+", default=list(RECORDS))
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    res = run(a.records, RATES, a.detectors, a.data_dir)
    import sys

    res["command"] = "python -m monitor.experiments.ecg_rates " + " ".join(sys.argv[1:] if argv is None else argv)
    text = json.dumps(res, indent=2)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
