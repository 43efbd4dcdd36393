"""The layout rules: `models/` and `streams/` never import `monitor/` or each other; the CLI explains every subcommand."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"models": {"monitor", "streams"}, "streams": {"monitor", "models"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden(package):
    bad = []
    for f in sorted((REPO / package).rglob("*.py")):
        hit = _imports(f) & FORBIDDEN[package]
        if hit:
            bad.append(f"{f.relative_to(REPO)} imports {sorted(hit)}")
    assert not bad, "layout rule broken:\n" + "\n".join(bad)


def test_top_level_layout():
    for d in ("monitor", "models", "streams", "deploy", "tests"):
        assert (REPO / d).is_dir(), d
    assert (REPO / "pyproject.toml").is_file() and (REPO / "README.md").is_file()
    assert (REPO / ".ci" / "run").is_file()


def test_cli_help_explains_every_subcommand():
    from monitor.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert len(sub.choices) >= 8, sorted(sub.choices)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name in sub.choices:
        assert helps.get(name), f"`anomon {name}` has no help line"
    out = subprocess.run([sys.executable, "-m", "monitor.cli", "--help"], capture_output=True, text=True, check=True)
    for name in sub.choices:
        assert name in out.stdout
