"""``anomon models``: the model registry (``REGISTRY/NAME/VERSION/`` and a ``current`` pointer).

``list`` the names with their current version; ``show NAME`` its versions and promotions; ``add NAME
BUNDLE`` copy a bundle in (``anomon train`` writes one); ``promote NAME VERSION`` move the pointer (the
version must load and score); ``rollback NAME`` move it back to the version promoted before. A daemon
serving ``REGISTRY/NAME/current`` hot-swaps to the new version (see :mod:`monitor.registry`).
"""
from __future__ import annotations

import argparse
import json

from monitor.registry import Registry, default_registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="the model registry: list, show, add, promote, rollback",
        description="Versions of each model under REGISTRY/NAME/VERSION/ with a current pointer "
        "(REGISTRY/NAME/current) that a daemon serves and follows: point model.dir (or a [[models]] "
        "entry's dir) at REGISTRY/NAME/current. Registry: --registry, else ANOMON_REGISTRY, else ./models.")
    p.add_argument("--registry", metavar="DIR", help="registry folder (default: ANOMON_REGISTRY or ./models)")
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s.add_parser("list", help="model names, current versions, version counts").add_argument(
        "--json", action="store_true", help="one JSON object")
    sh = s.add_parser("show", help="the versions and promotion history of one model")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true", help="one JSON object")
    a = s.add_parser("add", help="copy a bundle in as a new version (the first becomes current)")
    a.add_argument("name")
    a.add_argument("bundle", help="a bundle folder (anomon train --out DIR)")
    a.add_argument("--version", help="version name (default: the bundle's own version)")
    a.add_argument("--promote", action="store_true", help="make it current")
    pr = s.add_parser("promote", help="make VERSION current (it must load and score)")
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--reason", default="", help="kept in the history")
    rb = s.add_parser("rollback", help="make the version promoted before the current one current again")
    rb.add_argument("name")
    rb.add_argument("--reason", default="", help="kept in the history")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reg = Registry(args.registry or default_registry())
    if args.action == "list":
        rows = [{"name": n, "current": reg.current(n), "versions": len(reg.versions(n)),
                 "serve": str(reg.current_path(n))} for n in reg.names()]
        if args.json:
            print(json.dumps({"registry": str(reg.root), "models": rows}))
        elif not rows:
            print(f"no models in {reg.root} (add one: anomon models add NAME BUNDLE_DIR)")
        else:
            w = max(len(r["name"]) for r in rows)
            for r in rows:
                print(f"{r['name']:<{w}}  current {r['current'] or '-':<14} {r['versions']} version(s)  "
                      f"serve {r['serve']}")
        return 0
    if args.action == "show":
        d = reg.describe(args.name)
        if args.json:
            print(json.dumps(d))
            return 0
        print(f"{d['name']}: current {d['current'] or '-'}  (serve {reg.current_path(args.name)})")
        for v in d["versions"]:
            thr = ", ".join(f"{k} {x:.4g}" for k, x in v["thresholds"].items())
            print(f"  {'*' if v['current'] else ' '} {v['version']:<14} {v['detector']:<16} {v['window']:<16} {thr}")
        for e in d["history"][-10:]:
            print(f"    {e['at']}  {e['action']:<8} {e['version']}  {e.get('reason', '')}".rstrip())
        return 0
    if args.action == "add":
        v = reg.add(args.name, args.bundle, args.version)
        if args.promote and reg.current(args.name) != v:
            reg.promote(args.name, v, reason="added with --promote")
        print(f"{args.name} {v} added to {reg.root}; current {reg.current(args.name)}")
        return 0
    if args.action == "promote":
        old = reg.promote(args.name, args.version, reason=args.reason)
        print(f"{args.name}: current {args.version} (was {old or '-'})")
        return 0
    if args.action == "rollback":
        frm, to = reg.rollback(args.name, reason=args.reason)
        print(f"{args.name}: rolled back from {frm} to {to}")
        return 0
    raise AssertionError(args.action)
