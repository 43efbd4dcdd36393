"""The anomaly-likelihood stage (models/anomaly_likelihood.py, Ahmad et al. 2017)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.anomaly_likelihood import FORMAT_VERSION, AnomalyLikelihood, LikelihoodPerSeries

SMALL = dict(learning_period=20, estimation_samples=100, historic_window=300, reestimation_period=10,
             averaging_window=5)


def test_learning_period_gives_one_half_then_estimates():
    al = AnomalyLikelihood(**SMALL)
    rng = np.random.default_rng(0)
    out = al.update_many(rng.normal(1.0, 0.1, 119))
    assert (out == 0.5).all() and not al.ready  # 20 learning + 99 estimation samples
    al.update(1.0)
    assert al.ready and al.mean_ == pytest.approx(1.0, abs=0.05)


def test_spike_after_stationary_stretch_is_near_one():
    al = AnomalyLikelihood(**SMALL)
    rng = np.random.default_rng(1)
    calm = al.update_many(rng.normal(1.0, 0.1, 600))
    assert calm[200:].max() < 0.9999
    spike = al.update_many([4.0, 4.0, 4.0])
    assert spike[-1] > 0.99999
    assert al.log_likelihood(spike[-1]) > 0.5  # the log form: above 1 - 1e-5
    # the log form from the tail keeps resolution where 1 - L rounds to 0
    assert al.log_score_one(50.0) == pytest.approx(1.0, abs=1e-6)


def test_sustained_level_shift_decays_back():
    al = AnomalyLikelihood(**SMALL)
    rng = np.random.default_rng(2)
    al.update_many(rng.normal(1.0, 0.1, 600))
    shifted = al.update_many(rng.normal(3.0, 0.1, 900))
    assert shifted[5] > 0.9999  # the shift is news
    assert np.median(shifted[-200:]) < 0.99  # once the long window holds the new level it is not
    assert shifted[-200:].max() < 0.9999


def test_low_scores_are_not_anomalous_one_sided():
    al = AnomalyLikelihood(**SMALL)
    rng = np.random.default_rng(3)
    al.update_many(rng.normal(1.0, 0.1, 600))
    assert al.score_one(-5.0) < 0.01


def test_constant_history_has_a_floor_not_infinity():
    al = AnomalyLikelihood(**SMALL)
    al.update_many(np.full(400, 2.0))
    assert al.std_ == pytest.approx(0.01 * 2.0)  # rel_std_floor * mean |average|
    assert al.score_one(2.0) == pytest.approx(0.5)
    assert al.score_one(2.0 + 1e-4) < 0.99  # a tiny wobble is not an alarm
    assert al.score_one(3.0) > 0.99999


def test_state_round_trips_through_json():
    al = AnomalyLikelihood(**SMALL)
    rng = np.random.default_rng(4)
    al.update_many(rng.normal(1.0, 0.1, 250))
    d = json.loads(json.dumps(al.to_dict()))
    assert d["format_version"] == FORMAT_VERSION
    b = AnomalyLikelihood.from_dict(d)
    nxt = rng.normal(1.0, 0.5, 100)
    assert np.array_equal(al.update_many(nxt), b.update_many(nxt))
    with pytest.raises(ValueError, match="format_version"):
        AnomalyLikelihood.from_dict(dict(d, format_version=99))


def test_per_series_states_are_independent():
    lp = LikelihoodPerSeries(**SMALL)
    rng = np.random.default_rng(5)
    for a, b in zip(rng.normal(1.0, 0.1, 500), rng.normal(1000.0, 10.0, 500)):
        lp.update("small", a)
        lp.update("large", b)
    assert lp.update("small", 1.0) < 0.999 and lp.update("large", 1000.0) < 0.999
    assert lp["small"].score_one(3.0) > 0.9999 and lp["large"].score_one(3.0) < 0.01
    back = LikelihoodPerSeries.from_dict(json.loads(json.dumps(lp.to_dict())))
    assert back["small"].score_one(1.5) == lp["small"].score_one(1.5)


@pytest.mark.parametrize("bad", [dict(historic_window=0), dict(averaging_window=500, historic_window=100),
                                 dict(learning_period=-1), dict(min_std=-1.0)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError, match="AnomalyLikelihood"):
        AnomalyLikelihood(**bad)


def test_non_finite_score_is_refused():
    with pytest.raises(ValueError, match="not finite"):
        AnomalyLikelihood().update(math.nan)


def test_models_does_not_import_monitor():
    import models.anomaly_likelihood as m

    src = open(m.__file__, encoding="utf-8").read()
    assert "import monitor" not in src and "from monitor" not in src
