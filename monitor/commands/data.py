"""``anomon data``: where the datasets are, which are present, and whether their checksums hold."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="list and verify the datasets (data directory: --data-dir, else $ANOMON_DATA, else ../shared/data)",
        description="Datasets anomon reads. The data directory is --data-dir, else $ANOMON_DATA, else "
        "../shared/data beside the checkout, else ~/.cache/anomon/data. Nothing is downloaded.",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default: $ANOMON_DATA or ../shared/data)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    pl = dsub.add_parser("list", help="list the datasets with presence and checksum status (default action)")
    pl.add_argument("--no-checksums", action="store_true", help="only check presence (skip hashing)")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pv = dsub.add_parser("verify", help="verify the SHA-256 of every dataset file; exit 1 on a mismatch or missing file")
    pv.add_argument("names", nargs="*", help="datasets to verify (default: all)")
    pv.add_argument("--allow-missing", action="store_true", help="missing files are not an error (mismatches still are)")
    pv.add_argument("--json", action="store_true", help="print JSON instead of lines")
    pp = dsub.add_parser("path", help="print the resolved data directory")
    for q in (pl, pv, pp):
        q.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory")
    p.set_defaults(func=run, data_command="list", no_checksums=False, json=False)


def _status(name: str, root, checksums: bool) -> list[dict]:
    from streams.datasets import dataset_status

    return dataset_status(name, root, checksums=checksums)


def _summary(files: list[dict]) -> tuple[str, str]:
    present = sum(f["present"] for f in files)
    pres = "yes" if present == len(files) else ("no" if present == 0 else f"{present}/{len(files)}")
    states = {f["checksum"] for f in files}
    for s in ("mismatch", "missing", "unlisted", "skipped"):
        if s in states:
            if s == "missing" and present:
                return pres, "incomplete"
            return pres, s
    return pres, "ok"


#: Datasets made of WFDB records (a folder of them, any record names): present when one record loads.
RECORD_DATASETS = {"mitdb": "mitdb"}


def _record_files(rec: str, folder: str, root, checksums: bool) -> list[dict]:
    """The status rows of one record's files (header, signal files, annotations)."""
    from streams.datasets import DatasetError, file_status, read_header

    base = root / folder
    names = [f"{rec}.hea"]
    try:
        names += [f for f in read_header(base / f"{rec}.hea").signal_files if f not in names]
    except (DatasetError, FileNotFoundError):  # a broken header is reported in the record's problems
        pass
    names.append(f"{rec}.atr")
    return [file_status(f"{folder}/{n}", root, checksums=checksums) for n in names]


def _records_row(name: str, root, checksums: bool) -> dict:
    """A record dataset's presence: the records of its folder that load (header with a rate, signal
    files, annotations), whatever their names; its checksum state over the files of those records."""
    from streams.datasets import wfdb_record_status

    folder = RECORD_DATASETS[name]
    recs = wfdb_record_status(root / folder)
    loads = [r["record"] for r in recs if r["loads"]]
    files = [f for r in loads for f in _record_files(r, folder, root, checksums)]
    _, chk = _summary(files) if files else ("no", "missing")
    return {"present": "yes" if loads else "no", "checksum": chk, "files": files, "records": loads,
            "records_not_loading": {r["record"]: r["problems"] for r in recs if not r["loads"]},
            "rates_hz": sorted({r["fs"] for r in recs if r["loads"] and r["fs"]})}


def run(args: argparse.Namespace) -> int:
    from streams.datasets import DATASETS, data_dir, wfdb_record_status

    root = data_dir(args.data_dir)
    if args.data_command == "path":
        print(root)
        return 0
    if args.data_command == "verify":
        return _verify(args, root)
    rows = []
    for name, info in DATASETS.items():
        if name in RECORD_DATASETS:
            row = _records_row(name, root, not args.no_checksums)
        else:
            files = _status(name, root, not args.no_checksums)
            pres, chk = _summary(files)
            row = {"present": pres, "checksum": chk, "files": files}
        rows.append({"name": name, "path": info.path, **row, "source": info.source, "licence": info.licence,
                     "loader": info.loader.__name__})
    # WFDB records directly in the data directory: not a catalogue dataset, read with --wfdb DIR
    loose = [r for r in wfdb_record_status(root) if r["loads"]] if root.is_dir() else []
    if args.json:
        print(json.dumps({"data_dir": str(root), "datasets": rows,
                          "wfdb_records": [{"record": r["record"], "fs": r["fs"]} for r in loose]}, indent=2))
        return 0
    print(f"data directory: {root}{'' if root.is_dir() else '  (does not exist)'}")
    w = max(len(r["name"]) for r in rows)
    wp = max(len(r["path"]) for r in rows)
    print(f"{'NAME':{w}s}  {'PATH':{wp}s}  PRESENT  CHECKSUM    LOADER")
    for r in rows:
        print(f"{r['name']:{w}s}  {r['path']:{wp}s}  {r['present']:7s}  {r['checksum']:10s}  {r['loader']}")
    for r in rows:
        if "records" in r and (r["records"] or r["records_not_loading"]):
            rates = ", ".join(f"{f:g}" for f in r["rates_hz"])
            line = f"\n{r['name']}: {len(r['records'])} record(s) load ({_names(r['records'])}" + (
                f"; {rates} Hz)" if rates else ")")
            print(line)
            for rec, problems in r["records_not_loading"].items():
                print(f"  {rec} does not load: {problems[0]}")
    if loose:
        print(f"\nWFDB records in {root} itself ({_names([r['record'] for r in loose])}): read them with "
              f"--wfdb {root} --record NAME")
    missing = [r for r in rows if r["present"] != "yes"]
    if missing:
        print("\nmissing datasets and their public sources:")
        for r in missing:
            print(f"  {r['name']}: {r['source']} ({r['licence']})")
    return 0


def _names(names: list[str], most: int = 8) -> str:
    """``a, b, c`` (the first ``most``, then how many in all).

    >>> _names(["1", "2", "3"], most=2)
    '1, 2, ... (3 in all)'
    """
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _verify(args: argparse.Namespace, root) -> int:
    from monitor.errors import UserError
    from streams.datasets import DATASETS

    names = args.names or list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise UserError(f"unknown dataset(s) {unknown}; known: {', '.join(DATASETS)}")
    bad = missing = ok = unlisted = 0
    report = []
    for name in names:
        for f in _status(name, root, True):
            f["dataset"] = name
            report.append(f)
            state = f["checksum"]
            if state == "ok":
                ok += 1
            elif state == "mismatch":
                bad += 1
            elif state == "missing":
                missing += 1
            else:
                unlisted += 1
            if not args.json:
                if state == "mismatch":
                    print(f"MISMATCH  {f['path']}: expected {f['expected']}, got {f['actual']}")
                elif state == "missing":
                    print(f"MISSING   {f['path']} ({DATASETS[name].source})")
                elif state == "unlisted":
                    print(f"UNLISTED  {f['path']} (no checksum to compare)")
    failed = bad > 0 or (missing > 0 and not args.allow_missing)
    if args.json:
        print(json.dumps({"data_dir": str(root), "ok": ok, "mismatch": bad, "missing": missing,
                          "unlisted": unlisted, "passed": not failed, "files": report}, indent=2))
    else:
        print(f"{ok} ok, {bad} mismatched, {missing} missing, {unlisted} unlisted in {root}",
              file=sys.stdout if not failed else sys.stderr)
    return 1 if failed else 0
