"""The development scripts that choose settings must keep off the protocols' reported data."""
from __future__ import annotations

import json

import pytest


def test_dagmm_dev_refuses_the_reported_seeds():
    from monitor.experiments import dagmm_dev

    assert dagmm_dev.parse_seeds("100-102,7") == [100, 101, 102, 7]
    with pytest.raises(SystemExit) as exc:
        dagmm_dev.main(["--dataset", "kddcup", "--seeds", "19-25"])
    assert exc.value.code == 2


def test_oneclass_dev_merge_averages_the_digit_files(tmp_path, capsys):
    from monitor.experiments import oneclass_dev

    for d, auc in ((0, 0.9), (1, 0.8)):
        (tmp_path / f"digit-{d}.json").write_text(json.dumps(
            {"detector": "ocnn", "params": {"g": "rbf"}, "split": "valid", "digit": d, "roc_auc": auc, "fit_s": 1.0}))
    assert oneclass_dev.main(["--merge", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["digits"] == [0, 1] and out["mean_roc_auc"] == pytest.approx(0.85) and out["split"] == "valid"
