"""The per-detector override format is in ``anomon batch --help``, and its example does what it says."""
import shlex

import pytest

from monitor.commands.batch import EPILOG, _parse_sets


def test_help_documents_the_override_format(capsys):
    from monitor.cli import main

    with pytest.raises(SystemExit) as e:
        main(["batch", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "per-detector settings (compare)" in out and '"*" meaning any dataset' in out
    assert """--set 'params={knn: {"*": {k: 10}}""" in out


def test_the_help_example_sets_k_on_any_data():
    from monitor.batch.compare import _params_for

    line = next(ln for ln in EPILOG.splitlines() if ln.strip().startswith("anomon batch compare"))
    argv = shlex.split(line)
    ov = _parse_sets([argv[argv.index("--set") + 1]])
    assert ov["params"] == {"knn": {"*": {"k": 10}}, "dagmm": {"*": {"epochs": 50}}}
    for ds in ("my.csv", "thyroid", "kddcup"):
        assert _params_for("knn", ds, ov["params"], {})["k"] == 10
    assert _params_for("knn", "kddcup", ov["params"], {})["max_train"] == 5000  # merged over the built-ins
    assert _params_for("dagmm", "my.csv", ov["params"], {})["epochs"] == 50
