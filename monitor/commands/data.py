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


def run(args: argparse.Namespace) -> int:
    from streams.datasets import DATASETS, data_dir

    root = data_dir(args.data_dir)
    if args.data_command == "path":
        print(root)
        return 0
    if args.data_command == "verify":
        return _verify(args, root)
    rows = []
    for name, info in DATASETS.items():
        files = _status(name, root, not args.no_checksums)
        pres, chk = _summary(files)
        rows.append({"name": name, "path": info.path, "present": pres, "checksum": chk, "source": info.source,
                     "licence": info.licence, "loader": info.loader.__name__, "files": files})
    if args.json:
        print(json.dumps({"data_dir": str(root), "datasets": rows}, indent=2))
        return 0
    print(f"data directory: {root}{'' if root.is_dir() else '  (does not exist)'}")
    w = max(len(r["name"]) for r in rows)
    wp = max(len(r["path"]) for r in rows)
    print(f"{'NAME':{w}s}  {'PATH':{wp}s}  PRESENT  CHECKSUM    LOADER")
    for r in rows:
        print(f"{r['name']:{w}s}  {r['path']:{wp}s}  {r['present']:7s}  {r['checksum']:10s}  {r['loader']}")
    missing = [r for r in rows if r["present"] != "yes"]
    if missing:
        print("\nmissing datasets and their public sources:")
        for r in missing:
            print(f"  {r['name']}: {r['source']} ({r['licence']})")
    return 0


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
