"""compare: checkpoints after every seed, --resume, detectors picked by the data's kind, --threads."""
import json

import pytest

from monitor.batch import run_job
from monitor.errors import UserError

DETS = ["knn", "lof", "robust-zscore"]


def _stop_after(n):
    """A progress factory that stops the run (KeyboardInterrupt) after ``n`` seeds in all."""
    count = {"seeds": 0}

    def progress(it, **kw):
        for x in it:
            if count["seeds"] == n:
                raise KeyboardInterrupt
            count["seeds"] += 1
            yield x
    return progress


def _quality(m):
    return {d: {ds: [(s["seed"], s["f1"], s["roc_auc"], s["pr_auc"]) for s in r["per_seed"]]
                for ds, r in m["results"][d].items()} for d in m["detectors"]}


def test_stop_after_one_seed_then_resume_gives_the_uninterrupted_result(tmp_path, rows):
    ov = {"data": rows, "seeds": "0,1,2", "detectors": DETS, "variants": {}}
    full = run_job("compare", tmp_path / "full", overrides=ov)
    assert full["complete"] is True
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_job("compare", out, overrides=ov, progress=_stop_after(1))
    part = json.loads((out / "metrics.json").read_text())
    assert part["complete"] is False and part["finished"] is None
    assert [s["seed"] for s in part["results"]["knn"][rows]["per_seed"]] == [0]
    assert "in progress" in (out / "report.html").read_text()
    kept = part["results"]["knn"][rows]["per_seed"][0]
    done = run_job("compare", out, overrides=ov, resume=True)
    assert done["complete"] is True
    assert _quality(done) == _quality(full)
    assert done["results"]["knn"][rows]["per_seed"][0]["fit_s"] == kept["fit_s"]  # reused, not refitted
    for d in DETS:
        for k in ("f1", "roc_auc"):
            assert done["results"][d][rows]["aggregate"][k] == full["results"][d][rows]["aggregate"][k]


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, rows):
    from monitor.cli import main

    ov = {"data": rows, "seeds": "1", "detectors": ["robust-zscore"], "variants": {}}
    run_job("compare", tmp_path / "a", overrides=ov)
    with pytest.raises(UserError, match="seeds differ"):
        run_job("compare", tmp_path / "a", overrides={**ov, "seeds": "2"}, resume=True)
    with pytest.raises(UserError, match="no stopped run"):
        run_job("compare", tmp_path / "b", overrides=ov, resume=True)
    with pytest.raises(UserError, match="cannot resume"):
        run_job("dagmm", tmp_path / "a", overrides={"data": rows}, resume=True)
    assert main(["batch", "compare", "--data", rows, "--out", str(tmp_path / "c"), "--resume"]) == 2


def test_compare_runs_what_fits_the_data_and_lists_the_rest(tmp_path, rows):
    from monitor.batch.compare import _kind_filter

    fit, skipped = _kind_filter({})
    reasons = {s["detector"]: s["reason"] for s in skipped}
    assert "knn" in fit and "image-conv-ae" not in fit and "vrae" not in fit
    assert reasons["image-conv-ae"].startswith("reads images; this data is rows")
    assert reasons["vrae"] == "reads windows; this data is rows"
    m = run_job("compare", tmp_path / "k", overrides={"data": rows, "seeds": 1, "variants": {}, "threads": 1,
                                                      "detectors": ["knn", "image-conv-ae", "robust-zscore"]})
    assert m["detectors"] == ["knn", "robust-zscore"]
    assert [s["detector"] for s in m["skipped"]] == ["image-conv-ae"]
    assert "error" not in m["results"]["knn"][rows] and m["results"]["knn"][rows]["params"]["n_threads"] == 1
    assert "knn" in m["threads_note"] and "ignore" in m["threads_note"]
    assert "Skipped detectors" in (tmp_path / "k" / "report.html").read_text()
