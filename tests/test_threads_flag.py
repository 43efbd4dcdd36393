"""``--threads`` on train/evaluate reaches every detector that can use threads; the rest ignore it, with a note."""
import argparse
import logging

import pytest

from monitor.commands.train import model_params
from monitor.errors import UserError


def _args(**kw):
    return argparse.Namespace(**{"param": None, "epochs": None, "device": None, "threads": None, **kw})


def test_threads_become_n_threads_or_a_note(caplog):
    assert model_params(_args(threads=2), "knn") == {"n_threads": 2}
    assert model_params(_args(threads=2, detector="lof")) == {"n_threads": 2}
    assert model_params(_args(threads=3, param=["n_threads=1"]), "vrae") == {"n_threads": 3}  # as --epochs: the shorthand wins
    with caplog.at_level(logging.INFO, logger="anomon.train"):
        assert model_params(_args(threads=2), "ecod") == {}
    assert "ecod runs on one thread and ignores --threads 2" in caplog.text
    assert model_params(_args(), "ecod") == {}
    with pytest.raises(UserError, match="--threads: 0 must be at least 1"):
        model_params(_args(threads=0), "knn")


def test_threads_set_torch_for_torch_detectors_without_n_threads():
    import torch

    old = torch.get_num_threads()
    try:
        assert model_params(_args(threads=1), "dense-ae") == {}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_evaluate_threads_on_a_detector_without_threads(tmp_path, data_dir, capsys):
    """The issue's command, on a detector that takes no n_threads (it failed with 'unknown parameter(s) n_threads')."""
    from monitor.cli import main

    common = ["evaluate", "--dataset", "mitdb-106", "--data-dir", str(data_dir), "--seeds", "0", "--no-html"]
    assert main([*common, "--train", "ecod", "--threads", "1", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "models" / "seed-0").is_dir()
    assert main([*common, "--train", "ecod", "--param", "n_threads=1", "--out", str(tmp_path / "f")]) == 2
    assert "ecod: unknown parameter(s) n_threads; known: none" in capsys.readouterr().err
