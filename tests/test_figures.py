"""Figures quoted in the README and the docs come from committed results (docs/results/*.json): a figure
cannot drift from the run that made it.

Two kinds of checks: FIGURES (a pattern with one number, its JSON file, its key), and TABLES (a table
rebuilt here from its JSON files, which must appear verbatim in its page after a marker comment).
``python tests/test_figures.py`` prints the tables as they should read; ``--write`` rewrites them in place. The links of README.md and docs/*.md are
checked too (relative files exist; README anchors name a heading).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

#: (page, pattern with one (number) group, results file, key path, decimals the page rounds to)
FIGURES = [
    ("README.md", r"\(`anomon demo --json docs/results/demo.json`[^)]*\): (\d+) windows scored", "demo.json",
     "windows_scored", 0),
    ("README.md", r"(\d+) windows scored, 0 lost", "demo.json", "windows_scored", 0),
    ("README.md", r"scored, (\d+) lost, \d+ duplicates; windows precision", "demo.json", "windows_lost", 0),
    ("README.md", r"lost, (\d+) duplicates; windows precision", "demo.json", "duplicates", 0),
    ("README.md", r"windows precision (\d+(?:\.\d+)?),", "demo.json", "window_precision", 3),
    ("README.md", r"windows precision [\d.]+,\s+recall (\d+(?:\.\d+)?)", "demo.json", "window_recall", 3),
    ("README.md", r"windows precision [\d.]+,\s+recall [\d.]+,\s+F1 (\d+(?:\.\d+)?)", "demo.json", "window_f1", 3),
    ("README.md", r"alerts precision (\d+(?:\.\d+)?), recall [\d.]+, F1 [\d.]+; latency", "demo.json", "precision", 3),
    ("README.md", r"alerts precision [\d.]+, recall (\d+(?:\.\d+)?), F1 [\d.]+; latency", "demo.json", "recall", 3),
    ("README.md", r"alerts precision [\d.]+, recall [\d.]+, F1 (\d+(?:\.\d+)?); latency", "demo.json", "f1", 3),
    ("README.md", r"latency p50 (\d+(?:\.\d+)?) ms, p99 [\d.]+ ms\.", "demo.json", "latency_ms.p50", 1),
    ("README.md", r"latency p50 [\d.]+ ms, p99 (\d+(?:\.\d+)?) ms\.", "demo.json", "latency_ms.p99", 1),
    ("docs/setup.md", r"window precision fell from (\d+(?:\.\d+)?) to", "demo-1-before-calibration-fix.json",
     "window_precision", 3),
    ("docs/setup.md", r"window precision fell from [\d.]+ to (\d+(?:\.\d+)?)", "demo-2-calibration-fix.json",
     "window_precision", 3),
    ("docs/setup.md", r"alert precision from (\d+(?:\.\d+)?) to", "demo-1-before-calibration-fix.json", "precision", 3),
    ("docs/setup.md", r"alert precision from [\d.]+ to (\d+(?:\.\d+)?)", "demo-2-calibration-fix.json", "precision", 3),
    ("docs/accuracy-table.md", r"Per seed it gave ROC AUC (\d+(?:\.\d+)?),", "eval-ecg5000-semi-vrae.json",
     "runs.0.components.latent_cluster.roc_auc", 4),
    ("docs/accuracy-table.md", r"Per seed it gave ROC AUC [\d.]+, (\d+(?:\.\d+)?) and", "eval-ecg5000-semi-vrae.json",
     "runs.1.components.latent_cluster.roc_auc", 4),
    ("docs/accuracy-table.md", r"Per seed it gave ROC AUC [\d.]+, [\d.]+ and (\d+(?:\.\d+)?):", "eval-ecg5000-semi-vrae.json",
     "runs.2.components.latent_cluster.roc_auc", 4),
    ("docs/accuracy-table.md", r"latent_wasserstein_major\s+(\d+(?:\.\d+)?) in this page", "eval-ecg5000-unsup-vrae.json",
     "runs.0.components.latent_wasserstein_major.roc_auc", 4),
]


def _load(fname: str) -> dict:
    return json.loads((RESULTS / fname).read_text())


def _get(d, path):
    for k in path.split("."):
        d = d[int(k)] if isinstance(d, list) else d[k]
    return d


def _f(x: float, n: int = 3) -> str:
    return f"{float(x):.{n}f}"


# ----------------------------------------------------------------------------------------------------
# Tables rebuilt from their results files
# ----------------------------------------------------------------------------------------------------

#: The demo runs before and after the calibration fix (docs/setup.md): (label, results file).
DEMO_RUNS = [
    ("demo-1: thresholds calibrated on minutes 8–10 (inside training)", "demo-1-before-calibration-fix.json"),
    ("demo-2: calibrated on minute 10 (disjoint from training)", "demo-2-calibration-fix.json"),
    ("demo-3: as demo-2, alerting on the declared component", "demo.json"),
]


def demo_table() -> str:
    rows = ["| run | results file | component | windows scored / lost | windows P / R / F1 | alerts P / R / F1 "
            "| latency p50 / p99 ms |", "|---|---|---|---|---|---|---|"]
    for label, fname in DEMO_RUNS:
        d = _load(fname)
        rows.append(
            f"| {label} | `{fname}` | `{d['score_component']}` | {d['windows_scored']} / {d['windows_lost']} "
            f"| {_f(d['window_precision'])} / {_f(d['window_recall'])} / {_f(d['window_f1'])} "
            f"| {_f(d['precision'])} / {_f(d['recall'])} / {_f(d['f1'])} "
            f"| {d['latency_ms']['p50']:.1f} / {d['latency_ms']['p99']:.1f} |")
    return "\n".join(rows)


#: The accuracy table (README): each protocol's anomon detector, and the classical detectors it is
#: compared with, each one `anomon evaluate --train D --protocol P ... --out R` whose R/metrics.json is
#: committed as docs/results/eval-P-D.json.
ACCURACY_PROTOCOLS = ["ecg5000-semi", "ecg5000-unsup", "mitdb106-semi", "ecg200-semi"]
ANOMON_DETECTOR = "vrae"
PEERS = ["knn", "lof", "isolation-forest", "ecod", "pca", "mahalanobis"]
#: flags of a run beyond --train/--protocol/--seeds, with the params its results file must show
EXTRA_ARGS: dict[tuple[str, str], tuple[str, dict]] = {
    ("ecg5000-semi", "vrae"): (" --param n_members=1", {"n_members": 1}),
}


def _eval(protocol: str, detector: str) -> dict:
    return _load(f"eval-{protocol}-{detector}.json")


def _seeds(d: dict) -> str:
    return " ".join(str(s) for s in d["seeds"])


def _extra(protocol: str, d: dict) -> str:
    flags, params = EXTRA_ARGS.get((protocol, d["detector"]), ("", {}))
    assert all(d["params"].get(k) == v for k, v in params.items()), (protocol, d["detector"], params)
    return flags


def best_peer(protocol: str) -> str:
    """The classical detector with the highest mean test ROC AUC (a maximum over test results: it
    flatters the peer, never anomon's row)."""
    return max(PEERS, key=lambda p: _eval(protocol, p)["headline"]["roc_auc"])


def accuracy_table() -> str:
    rows = ["| protocol | anomon: detector, declared component (seeds) | ROC AUC | F1 | best classical peer on the "
            "same split | ROC AUC | F1 | command |", "|---|---|---|---|---|---|---|---|"]
    for p in ACCURACY_PROTOCOLS:
        a = _eval(p, ANOMON_DETECTOR)
        peer = best_peer(p)
        b = _eval(p, peer)
        rows.append(
            f"| {p} | {ANOMON_DETECTOR} `{a['declared_component']}` ({_seeds(a)}) | {_f(a['headline']['roc_auc'], 4)} "
            f"| {_f(a['headline']['f1'], 4)} | {peer} `{b['declared_component']}` ({_seeds(b)}) "
            f"| {_f(b['headline']['roc_auc'], 4)} | {_f(b['headline']['f1'], 4)} "
            f"| `anomon evaluate --train {ANOMON_DETECTOR} --protocol {p} --seeds {_seeds(a)}{_extra(p, a)} --out R` |")
    return "\n".join(rows)


def accuracy_detail_table() -> str:
    """Every detector of the accuracy runs on every protocol (docs/accuracy-table.md)."""
    rows = ["| protocol | detector | declared component | seeds | ROC AUC | PR AUC | F1 | FPR on test normals "
            "| results file |", "|---|---|---|---|---|---|---|---|---|"]
    for p in ACCURACY_PROTOCOLS:
        for det in [ANOMON_DETECTOR, *PEERS]:
            d = _eval(p, det)
            h = d["headline"]
            rows.append(f"| {p} | {det} | `{d['declared_component']}` | {_seeds(d)} | {_f(h['roc_auc'], 4)} "
                        f"| {_f(h['pr_auc'], 4)} | {_f(h['f1'], 4)} | {_f(h['fpr'])} | `eval-{p}-{det}.json` |")
    return "\n".join(rows)


def vrae_components_table() -> str:
    """The VRAE's other components on each protocol: post-hoc, never a headline (docs/accuracy-table.md)."""
    rows = ["| protocol | component | ROC AUC | F1 | |", "|---|---|---|---|---|"]
    for p in ACCURACY_PROTOCOLS:
        d = _eval(p, ANOMON_DETECTOR)
        for c, m in d["components"].items():
            tag = "declared (headline)" if c == d["declared_component"] else "post-hoc"
            rows.append(f"| {p} | `{c}` | {_f(_mean(m['roc_auc']), 4)} | {_f(_mean(m['f1']), 4)} | {tag} |")
    return "\n".join(rows)


def _mean(x) -> float:
    return float(x["mean"] if isinstance(x, dict) else x)


def performance_table() -> str:
    """The performance table (README): the demo, the streaming bench's cases, memory per series."""
    rows = ["| what | measured | figure | command (results file) |", "|---|---|---|---|"]
    d = _load("demo.json")
    rows.append(
        f"| the demo end to end (VRAE, {d['series']} ECG series replayed at {d['speed']:g}× real time) "
        f"| produce-to-score latency p50 / p99 | {d['latency_ms']['p50']:.1f} / {d['latency_ms']['p99']:.1f} ms "
        f"({d['windows_scored']} windows, {d['windows_lost']} lost) | `anomon demo --json docs/results/demo.json` |")
    cases = _load("streaming.json")["cases"] if (RESULTS / "streaming.json").exists() else []
    every = ";".join(f"{c['detector']},{c['series']},{c['stride']},{c['form']}" for c in cases)
    for c in cases:
        rows.append(
            f"| `anomon run`, {c['detector']}, {c['series']:,} series, stride {c['stride']}, one reading a message "
            f"| end-to-end records/s (ratio to a bare consumer of the same records); p99 latency at half load "
            f"| {c['e2e_records_per_s']:,.0f} ({c['ratio_vs_raw_consume']:.3f}); {c['latency_p99_ms']:.0f} ms "
            f"| `anomon bench streaming --case '{every}' --latency-seconds 5 --json docs/results/streaming.json` |")
    m = _load("series.json")["cases"][0]
    rows.append(
        f"| window state of {m['series']:,} series, T = {m['window_length']} | bytes per series (tracemalloc) "
        f"| {m['bytes_per_series_tracemalloc']:.0f} B; {m['evicted_after_ttl']:,} evicted after the idle TTL "
        f"| `anomon bench series --counts {m['series']} --json docs/results/series.json` |")
    return "\n".join(rows)


#: (page, table builder): each table must appear verbatim in its page.
TABLES = [
    ("README.md", accuracy_table),
    ("README.md", performance_table),
    ("docs/accuracy-table.md", accuracy_detail_table),
    ("docs/accuracy-table.md", vrae_components_table),
    ("docs/setup.md", demo_table),
]


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page,pattern,fname,key,decimals", FIGURES,
                         ids=[f"{p}:{f}:{k}" for p, _, f, k, _ in FIGURES])
def test_each_quoted_figure_matches_its_results_file(page, pattern, fname, key, decimals):
    text = (REPO / page).read_text()
    m = re.search(pattern, text)
    assert m, f"{page} no longer quotes {key} of {fname} (pattern {pattern!r}): update FIGURES"
    want = _get(_load(fname), key)
    assert float(m.group(1)) == round(float(want), decimals), f"{page} says {m.group(1)}, {fname} says {want}"


@pytest.mark.parametrize("page,build", TABLES, ids=[f"{p}:{b.__name__}" for p, b in TABLES])
def test_each_table_matches_its_results_files(page, build):
    table = build()
    text = (REPO / page).read_text()
    assert table in text, (f"{page}: the table of {build.__name__} differs from its results files; "
                           f"`python tests/test_figures.py` prints it as it should read:\n{table}")


def test_best_peer_is_the_maximum_and_a_changed_figure_is_caught(monkeypatch):
    """The checks can fail: a results file that says something else gives another table."""
    p = ACCURACY_PROTOCOLS[0]
    peer = best_peer(p)
    assert all(_eval(p, q)["headline"]["roc_auc"] <= _eval(p, peer)["headline"]["roc_auc"] for q in PEERS)
    before = accuracy_table()
    real = _load

    def changed(fname):
        d = real(fname)
        if fname == f"eval-{p}-{ANOMON_DETECTOR}.json":
            d["headline"]["roc_auc"] = 0.5
        return d

    monkeypatch.setattr(sys.modules[__name__], "_load", changed)
    assert accuracy_table() != before and "| 0.5000 |" in accuracy_table()


def test_every_results_file_is_small_json():
    for p in RESULTS.glob("*"):
        assert p.suffix == ".json" and p.stat().st_size < 200_000, p
        json.loads(p.read_text())


def test_readme_is_a_manual_of_about_300_lines():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= 320, f"README.md has {n} lines; move detail to docs/"


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", h).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def test_slug_is_githubs():
    assert _slug("Set-up: two commands") == "set-up-two-commands"
    assert _slug("The demo's figures before and after the calibration fix") == \
        "the-demos-figures-before-and-after-the-calibration-fix"


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))])
def test_links_of_readme_and_docs_resolve(page):
    src = REPO / page
    text = re.sub(r"```.*?```", "", src.read_text(), flags=re.S)
    bad = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (src.parent / file).resolve() if file else src
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no heading with this anchor in {dest.relative_to(REPO)})")
    assert not bad, f"{page}: broken links: {bad}"


def write_tables() -> None:
    """Rewrite each table in place, after its marker comment ``<!-- tests/test_figures.py: NAME -->``."""
    for page, build in TABLES:
        path = REPO / page
        text = path.read_text()
        marker = f"<!-- tests/test_figures.py: {build.__name__} -->\n"
        i = text.index(marker) + len(marker)
        old = re.match(r"(?:\|.*\n)*", text[i:]).group(0)
        path.write_text(text[:i] + build() + "\n" + text[i + len(old):])


def test_every_table_has_its_marker():
    for page, build in TABLES:
        assert f"<!-- tests/test_figures.py: {build.__name__} -->" in (REPO / page).read_text(), (page, build.__name__)


if __name__ == "__main__":  # print every table as it should read; --write: rewrite them in their pages
    if sys.argv[1:] == ["--write"]:
        write_tables()
    for page, build in TABLES:
        print(f"<!-- {page}: {build.__name__} -->\n{build()}\n")
