"""``anomon bench neighbours``: the same rows for both libraries, interleaved medians, and the docs' table."""
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.bench import neighbours as nb

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("det", ["knn", "lof"])
def test_a_cell_times_both_on_the_same_rows(det):
    pytest.importorskip("pyod")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        c = nb.measure(det, "gauss3d-5k", 0, repeats=3)
    assert (c["n_train"], c["n_test"], c["n_features"], c["repeats"], c["warmup"]) == (2475, 2525, 3, 3, True)
    assert len(c["anomon_runs_s"]) == len(c["pyod_runs_s"]) == 3
    assert c["anomon_s"] == round(float(np.median(c["anomon_runs_s"])), 4)
    assert c["max_rel_score_diff"] < 1e-9 and c["anomon_roc_auc"] == pytest.approx(c["pyod_roc_auc"], abs=1e-12)
    assert c["anomon_impl"] == "sklearn-neighbors"


def test_interleaving_alternates_and_warms_up_once():
    calls = []
    ta, tb, a, b = nb._interleaved(lambda: calls.append("A") or 1, lambda: calls.append("B") or 2, 3,
                                   lambda: calls.append("a"), lambda: calls.append("b"))
    assert calls == ["a", "b", "A", "B", "B", "A", "A", "B"] and (len(ta), len(tb), a, b) == (3, 3, 1, 2)
    calls.clear()
    nb._interleaved(lambda: calls.append("A"), None, 2, lambda: calls.append("a"), None, warmup=False)
    assert calls == ["A", "A"]


def test_the_docs_table_is_the_results_file():
    after, before = (json.loads((REPO / "docs/results" / f).read_text())
                     for f in ("neighbours-after.json", "neighbours-before.json"))
    assert after["format_version"] == 2 and after["threads"] == 1 and after["repeats"] >= 5
    assert {c["dataset"] for c in after["cells"]} >= {c["dataset"] for c in before["cells"]}
    assert all(c["ratio"] <= 1.5 and c["max_rel_score_diff"] < 1e-9 for c in after["cells"])  # the goal
    assert nb.markdown_table(after, before) in (REPO / "docs/batch.md").read_text()


def test_table_errors_are_one_line(tmp_path, capsys):
    from monitor.cli import main

    (tmp_path / "x.json").write_text("{")
    assert main(["bench", "neighbours", "--table", str(tmp_path / "x.json")]) == 2
    assert "cannot read a results file" in capsys.readouterr().err
