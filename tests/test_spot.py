"""SPOT / DSPOT: the exceedance rate on a known distribution is close to the target q."""
from __future__ import annotations

import numpy as np
import pytest

from models.base import InputError, NotFittedError
from models.spot import DSPOT, SPOT, fit_gpd, make_threshold


@pytest.mark.parametrize("dist", ["exponential", "normal", "pareto"])
def test_spot_exceedance_rate_close_to_q(dist):
    rng = np.random.default_rng(0)
    draw = {"exponential": lambda n: rng.exponential(size=n),
            "normal": lambda n: rng.normal(size=n),
            "pareto": lambda n: rng.pareto(4.0, size=n)}[dist]
    q = 5e-3
    s = SPOT(q=q).fit(draw(5000))
    flags = s.update(draw(40000))
    rate = flags.mean()
    assert q / 3 < rate < q * 3, rate


def test_gpd_fit_recovers_shape():
    rng = np.random.default_rng(2)
    from scipy.stats import genpareto
    y = genpareto.rvs(0.3, scale=1.5, size=20000, random_state=rng)
    g, s = fit_gpd(y)
    assert abs(g - 0.3) < 0.05 and abs(s - 1.5) < 0.1


def test_spot_flags_outliers_and_does_not_learn_them():
    rng = np.random.default_rng(1)
    s = SPOT(q=1e-3).fit(rng.normal(size=3000))
    z0 = s.threshold
    flags = s.update(np.full(50, 100.0))
    assert flags.all()
    assert s.threshold == z0


def test_dspot_follows_drift_spot_does_not():
    rng = np.random.default_rng(3)
    calib = rng.normal(size=1500)
    stream = rng.normal(size=3000) + np.linspace(0, 10, 3000)
    assert DSPOT(q=1e-3, depth=30).fit(calib).update(stream).mean() < 0.01
    assert SPOT(q=1e-3).fit(calib).update(stream).mean() > 0.01  # plain SPOT lags behind the drift


def test_errors_are_clear():
    with pytest.raises(NotFittedError):
        SPOT().threshold
    with pytest.raises(InputError, match="q"):
        SPOT(q=0.5, level=0.98)
    with pytest.raises(InputError, match="at least 10"):
        SPOT().fit(np.ones(3))
    with pytest.raises(InputError, match="unknown"):
        make_threshold("nope", np.ones(100), 1e-3)
    d = make_threshold("dspot", np.random.default_rng(0).normal(size=500), 1e-2, depth=20).to_dict()
    assert d["kind"] == "dspot" and np.isfinite(d["threshold"])


def test_dspot_relearns_after_a_sustained_level_shift_and_keeps_flagging_spikes():
    """Issue 22: DSPOT locked in after a level shift (77 % of one series' windows flagged), since
    flagged scores are never learnt. Now a run of ``depth`` flagged scores becomes the new level."""
    rng = np.random.default_rng(3)
    d = DSPOT(q=1e-3, depth=50).fit(rng.normal(size=3000))
    before = d.update(rng.normal(size=1000))
    shifted = d.update(rng.normal(size=3000) + 10.0)
    assert before.mean() < 0.01
    assert shifted[:50].all()  # the shift is detected
    assert shifted[50:].mean() < 0.01, shifted[50:].mean()  # then followed (it was ~1.0)
    assert d.relearned_ == 1
    # isolated spikes are flagged and never taken as a new level
    s = rng.normal(size=3000)
    s[::100] += 25.0
    flags = d.update(s + 10.0)
    assert flags[::100].all() and d.relearned_ == 1
    # a trend is followed
    trend = d.update(rng.normal(size=4000) + 10.0 + np.linspace(0, 40, 4000))
    assert trend.mean() < 0.02 and d.relearned_ == 1


def test_dspot_without_relearning_locks_in_as_before():
    rng = np.random.default_rng(3)
    d = DSPOT(q=1e-3, depth=50, relearn_after=10**9).fit(rng.normal(size=3000))
    assert d.update(rng.normal(size=2000) + 10.0).mean() > 0.95
