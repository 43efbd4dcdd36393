"""``anomon bench vrae`` smoke test on a small ECG5000 subset (no timing assertions)."""
from __future__ import annotations

import json


def test_bench_vrae_smoke(data_dir, tmp_path):
    from monitor.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "vrae", "--data-dir", str(data_dir), "--limit", "40", "--skip-train", "--threads", "1",
               "--eval-every", "1", "--repeats", "1", "--param", "hidden_size=8", "--param", "n_samples=2",
               "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["results"]) == {"vrae", "lstm-ae"}
    assert r["throughput_ratio_vrae_over_lstm_ae"] > 0
    for name, res in r["results"].items():
        assert res["throughput_windows_per_s"]["median"] > 0
        assert res["curve"] and "time_to_bar_seconds" in res
    # the baseline has the same size
    assert r["results"]["lstm-ae"]["params"]["hidden_size"] == r["results"]["vrae"]["params"]["hidden_size"] == 8
