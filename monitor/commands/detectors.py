"""``anomon detectors``: list the registered detectors and their score components."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detectors", help="list registered detectors and their score components")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models import available_detectors

    for name, cls in available_detectors().items():
        comps = ", ".join(c.name for c in cls.components)
        print(f"{name:20s} {cls.input_kind:8s} {comps}")
    return 0
