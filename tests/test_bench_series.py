"""Smoke test of `anomon bench series` (memory per series, eviction after the TTL). No timing asserted."""
from __future__ import annotations

import json

from monitor.cli import main


def test_bench_series_evicts_everything_after_the_ttl(tmp_path):
    out = tmp_path / "series.json"
    assert main(["bench", "series", "--counts", "300", "--length", "32", "--stride", "8", "--json", str(out)]) == 0
    case = json.loads(out.read_text())["cases"][0]
    assert case["series"] == 300 and case["tracked_before_eviction"] == 300
    assert case["evicted_before_ttl"] == 0
    assert case["evicted_after_ttl"] == 300 and case["tracked_after_eviction"] == 0
    assert case["bytes_per_series_tracemalloc"] > 0
    assert case["bytes_left_after_eviction_per_series"] < case["bytes_per_series_tracemalloc"]
