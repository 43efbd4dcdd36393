"""The reliability report: run the fault, poison, security and backpressure tests, write tests/RELIABILITY.md.

The tests measure (windows lost, duplicates, bad records tried, RSS growth, ...) and call
:func:`record` with their figures; it writes one JSON file per case into the directory named by
``$ANOMON_RELIABILITY_OUT`` (nothing is written when it is unset). This module's command runs
those tests with the variable set to a fresh directory, then renders the table::

    python -m monitor.reliability --out tests/RELIABILITY.md          # run the tests, write the table
    python -m monitor.reliability --results DIR --out FILE             # render figures already measured
    python -m monitor.reliability --soak bench-results/soak.json ...   # add a soak benchmark's figures

Examples
--------
>>> print(render([{"case": "crash", "title": "kill -9", "figures": {"windows_lost": 0, "duplicates": 12},
...                "reproduce": "pytest tests/test_faults.py::test_crash"}], header=False).strip())
| Case | Measured | Reproduce |
|---|---|---|
| **kill -9** | windows lost: 0<br>duplicates: 12 | `pytest tests/test_faults.py::test_crash` |
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT_ENV = "ANOMON_RELIABILITY_OUT"
REPO = Path(__file__).resolve().parents[1]
#: the tests this report runs, in report order
TEST_FILES = ["tests/test_faults.py", "tests/test_backpressure.py", "tests/test_poison.py", "tests/test_security.py"]
#: the section each case belongs to (by the case name's prefix)
SECTIONS = [("crash", "Faults"), ("rebalance", "Faults"), ("broker", "Faults"), ("model", "Faults"),
            ("backpressure", "Load"), ("soak", "Load"), ("poison", "Poison input"), ("security", "Security")]


NOTES = """
## Notes

**Delivery is at least once.** Every score record carries a deterministic id
(`<series>@<window end, µs>`); duplicates after a crash are re-emissions of windows scored after
the last commit and are recognised by that id. A drained stop (SIGTERM) leaves none.

**Broker restart on Tansu's memory storage (the embedded broker).** What survives:

| | survives? | consequence |
|---|---|---|
| topics (input, scores, alerts, DLQ, `<group>.progress`) | no | producers re-create them with the broker's defaults (the progress topic is then *not* compacted); `anomon run` creates topics only at start |
| committed offsets of the consumer group | no | the group starts from the beginning of the new, empty log |
| messages (readings, scores already written) | no | scores written before the restart exist only where they were already consumed |
| the daemon process, its model, metrics counters, HTTP endpoints | yes | `/readyz` is 503 while disconnected, 200 again once the group re-forms |
| the daemon's open windows | yes | a partition's open windows are parked when the group loses it; when it comes back with its log reset (no committed offset, shorter than what was read) they continue in the new log, so windows straddling the restart are scored complete, under their usual ids (0 lost). Parked state is discarded on a normal re-assignment and after 5 minutes. Still lost: windows of series that come back on another process, everything if the daemon dies meanwhile, and scores not yet delivered when the broker went down |
| the daemon's producer | replaced | the idempotent producer is refused by the new broker (UnknownProducerId); the daemon rewinds and creates a new one |

With a persistent Kafka cluster, offsets, progress and messages survive a broker restart, and the
crash scenario above (0 windows lost) is the relevant one.

**Consumer lag** (`anomon_consumer_lag`) is the fetch high-water mark minus the position, refreshed
once a second between polls; a burst shorter than that can pass unseen.
"""


def record(case: str, figures: dict[str, Any], *, title: str, reproduce: str, notes: str = "") -> Path | None:
    """Write a case's measured ``figures`` to ``$ANOMON_RELIABILITY_OUT/<case>.json`` (no-op when unset)."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return None
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{case}.json"
    p.write_text(json.dumps({"case": case, "title": title, "figures": figures, "reproduce": reproduce,
                             "notes": notes, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
                            indent=1, default=str))
    return p


def _order(r: dict) -> tuple:
    """Report order: by section (case-name prefix), then by case name."""
    for i, (prefix, _) in enumerate(SECTIONS):
        if r["case"].startswith(prefix):
            return (i, r["case"])
    return (len(SECTIONS), r["case"])


def load(results: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every case JSON in ``results``, in report order."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(results).glob("*.json")) if p.name != "run.json"]
    return sorted(rows, key=_order)


def soak_row(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A report row from the JSON of ``anomon bench soak`` (a benchmark, too long for the test run).

    >>> import tempfile, json, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "soak.json"
    >>> _ = f.write_text(json.dumps({"minutes": 10, "rate": 12000.0, "series": 100, "stride": 10, "form": "chunk",
    ...     "rss_growth_pct": 1.2, "max_lag": 40, "final_lag": 0, "latency_ms_p50": 100.0, "latency_ms_p99": 180.0}))
    >>> r = soak_row(f)
    >>> r["case"], r["figures"]["rss_growth_pct"], r["figures"]["latency_ms_p99"]
    ('soak-10min', 1.2, 180.0)
    """
    d = json.loads(Path(path).read_text())
    cal = d.get("calibration") or {}
    keys = ["rate", "series", "stride", "form", "partitions", "linger_ms", "daemon_linger_ms", "rss_mb_after_warmup",
            "rss_mb_end",
            "rss_growth_pct", "max_lag", "final_lag", "windows_after_warmup", "latency_ms_p50", "latency_ms_p99",
            "p99_latency_ms_worst_second", "broker_cpu_pct_first", "broker_cpu_pct_last", "daemon_cpu_pct_first",
            "daemon_cpu_pct_last", "daemon_exit"]
    figs: dict[str, Any] = {}
    if cal:
        figs["calibrated_max_readings_per_s"] = cal.get("max_readings_per_s")
        figs["load"] = cal.get("load")
    figs.update({k: d[k] for k in keys if k in d})
    mins = d.get("minutes", 0)
    rate = "auto" if cal else f"{d.get('rate', 0):g}"
    return {"case": f"soak-{mins:g}min", "title": f"soak: {mins:g} minutes of steady replay against `anomon run` "
            "(separate process, embedded broker)",
            "notes": "goals: RSS growth after the warm-up < 5 %, bounded lag, p99 <= 250 ms; a benchmark, "
                     "rendered from its JSON (`--soak FILE`)",
            "figures": figs,
            "reproduce": f"anomon bench soak --minutes {mins:g} --rate {rate} --json {Path(path).as_posix()}"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def render(rows: list[dict[str, Any]], run: dict[str, Any] | None = None, header: bool = True) -> str:
    """The Markdown report: one table per section; each row: case, measured figures, reproduce command."""
    lines: list[str] = []
    if header:
        lines += ["# Reliability and security: measured figures", "",
                  "Generated by `python -m monitor.reliability --out tests/RELIABILITY.md --soak "
                  "bench-results/soak.json` (do not edit by hand; the soak row comes from that benchmark's JSON).",
                  "Every figure comes from a test run against the real embedded Tansu broker and real daemon "
                  "processes; no mocks.", ""]
        if run:
            lines += [f"- run: {run.get('finished', '?')}, {run.get('tests', '?')}, {run.get('seconds', 0):.0f} s "
                      f"wall on {run.get('cpus', '?')} CPU(s) ({run.get('python', '')}, {run.get('machine', '')})",
                      f"- command: `{run.get('command', '')}`", ""]
    section = None
    for r in rows:
        sec = next((name for prefix, name in SECTIONS if r["case"].startswith(prefix)), "Other")
        if sec != section or not header:
            if header:
                lines += ["", f"## {sec}", ""]
            if sec != section:
                lines += ["| Case | Measured | Reproduce |", "|---|---|---|"]
            section = sec
        figs = "<br>".join(f"{k.replace('_', ' ')}: {_fmt(v)}" for k, v in r["figures"].items())
        title = f"**{r['title']}**" + (f"<br>{r['notes']}" if r.get("notes") else "")
        lines.append(f"| {title} | {figs} | `{r['reproduce']}` |")
    if header:
        lines += [NOTES]
    return "\n".join(lines) + "\n"


def run_tests(results: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """Run the reliability tests with ``$ANOMON_RELIABILITY_OUT=results``; returns a summary of the run."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES, *(extra or [])]
    env = dict(os.environ, **{OUT_ENV: str(results)})
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    secs = time.monotonic() - t0
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["?"]
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-2000:])
    summary = {"command": " ".join(["python", "-m", "pytest", *TEST_FILES]), "rc": proc.returncode,
               "tests": tail[0].strip("= "), "seconds": secs, "cpus": os.cpu_count(),
               "python": platform.python_version(), "machine": platform.machine(),
               "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (results / "run.json").write_text(json.dumps(summary, indent=1))
    (results / "pytest.log").write_text(proc.stdout + proc.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.reliability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/RELIABILITY.md", help="Markdown file to write")
    ap.add_argument("--results", help="render figures from this directory instead of running the tests")
    ap.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    ap.add_argument("--soak", action="append", default=[], metavar="FILE",
                    help="add the figures of an `anomon bench soak --json FILE` run (repeatable)")
    args = ap.parse_args(argv)
    run = None
    if args.results:
        results = Path(args.results)
        rf = results / "run.json"
        run = json.loads(rf.read_text()) if rf.is_file() else None
    else:
        results = Path(tempfile.mkdtemp(prefix="anomon-reliability-"))
        run = run_tests(results, ["-k", args.keyword] if args.keyword else None)
    rows = load(results)
    if not rows:
        print(f"no figures in {results}", file=sys.stderr)
        return 1
    if args.soak:
        rows = sorted(rows + [soak_row(f) for f in args.soak], key=_order)
    Path(args.out).write_text(render(rows, run))
    print(f"wrote {args.out} ({len(rows)} cases; figures in {results})")
    return 0 if run is None or run.get("rc") == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
