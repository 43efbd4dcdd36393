"""Smoke test of `anomon bench soak`: a few seconds against a real `anomon run` process and the
embedded broker. Checks the JSON it writes and that nothing was left behind; no timing asserted."""
from __future__ import annotations

import json

from monitor.cli import main


def test_bench_soak_writes_samples_and_figures(tmp_path):
    out = tmp_path / "soak.json"
    assert main(["bench", "soak", "--minutes", "0.2", "--rate", "2000", "--warmup", "3", "--series", "20",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["daemon_exit"] == 0  # SIGTERM drained and exited cleanly
    assert d["rate"] == 2000.0 and d["partitions"] == 1 and d["linger_ms"] == 50 and d["daemon_linger_ms"] == 20
    assert len(d["samples"]) >= 5
    s = d["samples"][-1]
    for key in ("rss_mb", "daemon_cpu_pct", "broker_cpu_pct", "broker_rss_mb", "lag", "windows_scored"):
        assert key in s, key
    assert s["windows_scored"] > 0
    # the reader saw live windows and measured their latency
    assert d["windows_after_warmup"] > 0
    assert 0 < d["latency_ms_p50"] <= d["latency_ms_p99"]
    assert d["rss_mb_after_warmup"] > 0 and d["rss_mb_end"] > 0
