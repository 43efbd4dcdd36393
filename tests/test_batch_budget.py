"""compare --time-budget: epochs and max_train scaled to each cell's share, the choices reported (issue 24)."""
import json

import pytest

from models import get_detector
from monitor.batch import run_job
from monitor.batch.budget import TimeBudget, parse_duration
from monitor.errors import ConfigError


@pytest.mark.parametrize("bad", ["10x", "", "m", "-5", "0", "1h30", "5 m s"])
def test_bad_durations_are_config_errors(bad):
    with pytest.raises(ConfigError, match="time_budget"):
        parse_duration(bad)


def test_plan_fits_epochs_and_rows_to_the_share():
    """A pilot costing 0.1 s + 0.5 s an epoch, 10 s for 2 seed runs: 5 s a run -> 9 epochs; pretrain alike."""
    b = TimeBudget(10.0, n_seed_runs=2)
    calls = []

    def pilot(p):
        calls.append(p)
        return 0.1 + 0.5 * p["epochs"], 1000

    cls = get_detector("deep-svdd")
    out = b.plan("deep-svdd", "d", cls, {"epochs": 100, "pretrain_epochs": 50}, {}, 1, pilot)
    assert out["epochs"] == 9 and out["pretrain_epochs"] == 4  # 50 * 9 / 100, rounded
    assert [c["epochs"] for c in calls] == [1, 1, 2]  # a warm-up fit, then the two timed ones
    c = b.choices["deep-svdd"]["d"]
    assert c["epochs"] == [100, 9] and c["reason"] == "epochs fitted to the share" and c["epoch_s"] == 0.5

    b = TimeBudget(10.0, n_seed_runs=2)
    knn = get_detector("knn")
    out = b.plan("knn", "d", knn, {"k": 5}, {}, 1, lambda p: (0.2 + 0.001 * p["max_train"], 50000))
    assert 4790 <= out["max_train"] <= 4800  # (5 s - 0.2 s) / 1 ms a row
    assert b.choices["knn"]["d"]["max_train"][0] == 20000 and b.choices["knn"]["d"]["n_train"] == 50000
    # settings the user gave are kept; detectors without epochs or max_train run as they are
    out = b.plan("knn", "e", knn, {"max_train": 123}, {"max_train": 123}, 1, pilot)
    assert out["max_train"] == 123 and b.choices["knn"]["e"]["reason"] == "set by the user"
    out = b.plan("ecod", "d", get_detector("ecod"), {}, {}, 1, pilot)
    assert out == {} and "nothing to scale" in b.choices["ecod"]["d"]["reason"]


def test_a_large_budget_keeps_the_defaults():
    b = TimeBudget(3600.0 * 1000, n_seed_runs=1)
    out = b.plan("dense-ae", "d", get_detector("dense-ae"), {"epochs": 100}, {}, 1, lambda p: (0.01 * p["epochs"], 50))
    assert out["epochs"] == 100 and b.choices["dense-ae"]["d"]["reason"] == "the default fits the share"


def test_compare_with_a_time_budget_reports_what_it_chose(tmp_path, rows):
    ov = {"data": rows, "seeds": "1", "detectors": ["dense-ae", "knn", "robust-zscore"], "variants": {},
          "time_budget": "2s"}
    m = run_job("compare", tmp_path / "b", overrides=ov)
    tb = m["time_budget"]
    assert tb["seconds"] == 2.0 and tb["spent_s"] >= 0
    dae = tb["choices"]["dense-ae"][rows]
    assert dae["epochs"][0] == 100 and 1 <= dae["epochs"][1] <= 100 and dae["pilot"] == "1 and 2 epochs"
    assert m["results"]["dense-ae"][rows]["params"]["epochs"] == dae["epochs"][1]  # what ran is what it chose
    k = tb["choices"]["knn"][rows]
    assert k["n_train"] == 90 and k["max_train"] == [20000, 90]  # every training row fits
    assert tb["choices"]["robust-zscore"][rows]["reason"] == "nothing to scale (runs as it is)"
    assert "time budget 2 s" in m["summary"] and "dense-ae on rows: epochs 100 -> " in m["summary"]
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Time budget: what was chosen" in html
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert saved["time_budget"]["choices"]["knn"][rows]["max_train"] == [20000, 90]


def test_cli_time_budget_errors(capsys):
    from monitor.cli import main

    assert main(["batch", "compare", "--time-budget", "ten minutes", "--out", "/tmp/x-anomon-none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "time_budget" in err and "10m" in err
    assert main(["batch", "dagmm-thyroid", "--time-budget", "1m", "--out", "/tmp/x-anomon-none"]) == 2
    assert "time_budget" in capsys.readouterr().err


def test_resume_keeps_the_choices_of_the_stopped_run(tmp_path, rows):
    count = {"n": 0}

    def stop_after_one(it, **kw):
        for x in it:
            if count["n"] == 1:
                raise KeyboardInterrupt
            count["n"] += 1
            yield x

    ov = {"data": rows, "seeds": "2", "detectors": ["knn"], "variants": {}, "time_budget": "30s"}
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        run_job("compare", out, overrides=ov, progress=stop_after_one)
    part = json.loads((out / "metrics.json").read_text())
    chosen = part["results"]["knn"][rows]["budget"]
    done = run_job("compare", out, overrides=ov, resume=True)
    assert done["time_budget"]["choices"]["knn"][rows] == chosen  # no new pilot, the same settings
    assert [s["seed"] for s in done["results"]["knn"][rows]["per_seed"]] == [0, 1]
    assert done["results"]["knn"][rows]["per_seed"][0]["fit_s"] == part["results"]["knn"][rows]["per_seed"][0]["fit_s"]
