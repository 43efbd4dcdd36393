"""Figures quoted in the README come from committed results (docs/results/*.json): a figure cannot
drift from the run that made it. Each entry: a README pattern with one number, its JSON file, its key."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: (pattern in README.md with one (number) group, results file, key path, decimals the README rounds to)
FIGURES = [
    (r"\(`anomon demo --json docs/results/demo.json`[^)]*\): (\d+) windows scored", "demo.json", "windows_scored", 0),
    (r"(\d+) windows scored, 0 lost", "demo.json", "windows_scored", 0),
    (r"scored, (\d+) lost, \d+ duplicates; windows precision", "demo.json", "windows_lost", 0),
    (r"windows precision ([\d.]+),", "demo.json", "window_precision", 3),
    (r"windows precision [\d.]+,\s+recall ([\d.]+)", "demo.json", "window_recall", 3),
    (r"windows precision [\d.]+,\s+recall [\d.]+, F1 ([\d.]+)", "demo.json", "window_f1", 3),
    (r"alerts precision ([\d.]+), recall [\d.]+, F1 [\d.]+; latency", "demo.json", "precision", 3),
    (r"alerts precision [\d.]+, recall ([\d.]+), F1 [\d.]+; latency", "demo.json", "recall", 3),
    (r"alerts precision [\d.]+, recall [\d.]+, F1 ([\d.]+); latency", "demo.json", "f1", 3),
    (r"latency p50 ([\d.]+) ms, p99 [\d.]+ ms\.", "demo.json", "latency_ms.p50", 1),
    (r"latency p50 [\d.]+ ms, p99 ([\d.]+) ms\.", "demo.json", "latency_ms.p99", 1),
    (r"quoted\s+alerts precision ([\d.]+)", "demo-1-before-calibration-fix.json", "precision", 3),
    (r"windows ([\d.]+) / [\d.]+ / [\d.]+: `docs/results/demo-1", "demo-1-before-calibration-fix.json",
     "window_precision", 3),
]


def _get(d, path):
    for k in path.split("."):
        d = d[k]
    return d


@pytest.mark.parametrize("pattern,fname,key,decimals", FIGURES, ids=[f"{f}:{k}" for _, f, k, _ in FIGURES])
def test_each_readme_figure_matches_its_results_file(pattern, fname, key, decimals):
    text = (REPO / "README.md").read_text()
    m = re.search(pattern, text)
    assert m, f"README no longer quotes {key} of {fname} (pattern {pattern!r}): update FIGURES"
    want = _get(json.loads((REPO / "docs" / "results" / fname).read_text()), key)
    assert float(m.group(1)) == round(float(want), decimals), f"README says {m.group(1)}, {fname} says {want}"


def test_every_results_file_is_small_json():
    for p in (REPO / "docs" / "results").glob("*"):
        assert p.suffix == ".json" and p.stat().st_size < 200_000, p
        json.loads(p.read_text())
