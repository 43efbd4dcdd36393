"""Hand-checked cases of the streaming metrics (monitor/stream_metrics.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from monitor import stream_metrics as sm


def _series(n=1000, spans=((600, 610),)):
    y = np.zeros(n, int)
    for a, b in spans:
        y[a:b] = 1
    return y


# --------------------------------------------------------------------------- point-wise
def test_pointwise_never_point_adjusts():
    y = _series(100, [(10, 30)])
    f = np.zeros(100, bool)
    f[10] = True  # one point of a 20-point range: point adjustment would say recall 1
    r = sm.pointwise_prf(y, f)
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(1 / 20)
    b = sm.best_f1(y, f.astype(float))
    assert b["recall"] < 1.0 or b["precision"] < 1.0
    assert b["f1"] == pytest.approx(max(2 * (1 / 20) / (1 + 1 / 20), 2 * 0.2 * 1 / 1.2))  # flag one, or flag all


def test_best_f1_and_auc_hand_values():
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.9, 0.8, 0.7]
    b = sm.best_f1(y, s)
    # threshold 0.7: flags 3 points, 2 true: p = 2/3, r = 1, f1 = 0.8
    assert b["f1"] == pytest.approx(0.8) and b["threshold"] == 0.7
    # pairs (pos, neg): 0.8 and 0.7 each beat 0.1, 0.2, lose to 0.9: 4 of 6
    assert sm.roc_auc(y, s) == pytest.approx(4 / 6)
    assert math.isnan(sm.roc_auc([0, 0], [1.0, 2.0]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one score per point"):
        sm.best_f1([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 or 1"):
        sm.pointwise_prf([0, 2], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        sm.roc_auc([0, 1], [0.0, np.nan])


# --------------------------------------------------------------------------- range-based
def test_range_recall_existence_cardinality_and_bias():
    y = np.zeros(20, int)
    y[0:10] = 1
    f = np.zeros(20, bool)
    f[0:2] = f[8:10] = True  # two predicted ranges inside one real range, 4 of 10 points
    flat = sm.range_precision_recall(y, f)
    # recall: cardinality 1/2 (two overlapping predictions) * omega 0.4 = 0.2; precision: both wholly real = 1
    assert flat["recall"] == pytest.approx(0.2) and flat["precision"] == 1.0
    assert sm.range_precision_recall(y, f, cardinality="one")["recall"] == pytest.approx(0.4)
    assert sm.range_precision_recall(y, f, alpha=0.5)["recall"] == pytest.approx(0.5 * 1 + 0.5 * 0.2)
    # front bias: positions weigh 10..1; covered 10+9 and 2+1 of 55
    front = sm.range_precision_recall(y, f, bias="front", cardinality="one")["recall"]
    assert front == pytest.approx(22 / 55)
    back = sm.range_precision_recall(y, f, bias="back", cardinality="one")["recall"]
    assert back == pytest.approx(22 / 55)  # symmetric case
    mid = sm.range_precision_recall(y, f, bias="middle", cardinality="one")["recall"]
    assert mid == pytest.approx((1 + 2 + 2 + 1) / 30)  # weights 1,2,3,4,5,5,4,3,2,1


def test_range_metrics_two_real_ranges_one_missed():
    y = _series(100, [(10, 20), (50, 60)])
    f = np.zeros(100, bool)
    f[10:20] = True
    f[80:85] = True  # a false range
    r = sm.range_precision_recall(y, f)
    assert r["recall"] == pytest.approx(0.5) and r["precision"] == pytest.approx(0.5)
    assert sm.range_precision_recall(y, np.zeros(100, bool))["precision"] == 0.0


# --------------------------------------------------------------------------- VUS-PR
def test_vus_pr_perfect_and_buffer_rewards_near_misses():
    y = _series(200, [(100, 110)])
    perfect = y.astype(float)
    assert sm.vus_pr(y, perfect, max_buffer=0) == 1.0
    # with buffers the soft labels outside the range are missed by a 0/1 score: below 1, still the best
    assert 0.8 < sm.vus_pr(y, perfect, max_buffer=20) < 1.0
    near = np.zeros(200)
    near[112:115] = 1.0  # just after the range
    far = np.zeros(200)
    far[180:183] = 1.0
    assert sm.vus_pr(y, near, max_buffer=0) == pytest.approx(sm.vus_pr(y, far, max_buffer=0))
    assert sm.vus_pr(y, near, max_buffer=20) > sm.vus_pr(y, far, max_buffer=20)
    assert sm.vus_pr(y, perfect, max_buffer=20) > sm.vus_pr(y, near, max_buffer=20)
    # thresholds subsampled: close to the exact figure
    rng = np.random.default_rng(0)
    s = rng.random(200) + y
    assert sm.vus_pr(y, s, 10, n_thresholds=100) == pytest.approx(sm.vus_pr(y, s, 10), abs=0.05)


def test_soft_labels_shape():
    y = np.zeros(10, int)
    y[5] = 1
    soft = sm._soft_labels(y, 4)
    assert soft[5] == 1.0 and soft[4] == pytest.approx(math.sqrt(0.75)) and soft[3] == pytest.approx(math.sqrt(0.5))
    assert soft[2] == 0.0 and soft[7] == pytest.approx(math.sqrt(0.5)) and soft[8] == 0.0


# --------------------------------------------------------------------------- UCR
def test_ucr_top1_tolerance_rules():
    y = _series(2000, [(1000, 1300)])  # 300 points: the max rule widens by 300
    s = np.zeros(2000)
    s[1299 + 200] = 1.0
    assert sm.ucr_top1(y, s) == 1.0
    assert sm.ucr_top1(y, s, tolerance=100) == 0.0
    s[:] = 0
    s[1000 - 101] = 1.0
    assert sm.ucr_top1(_series(2000, [(1000, 1010)]), s) == 0.0
    s[1000 - 100] = 2.0
    assert sm.ucr_top1(_series(2000, [(1000, 1010)]), s) == 1.0
    assert math.isnan(sm.ucr_top1(_series(2000, [(10, 20), (50, 60)]), s))


# --------------------------------------------------------------------------- NAB
def test_nab_perfect_is_100_null_is_0():
    y = _series(1000, [(300, 301), (700, 701)])
    wins = sm.nab_windows(y)
    assert [b - a + 1 for a, b in wins] == [50, 50]  # 10 % of 1000 split over 2
    perfect = np.zeros(1000, bool)
    for a, _ in wins:
        perfect[a] = True
    for prof in sm.NAB_PROFILES:
        assert sm.nab_score(y, perfect, prof, probation_frac=0)["score"] == pytest.approx(100.0)
        assert sm.nab_score(y, np.zeros(1000, bool), prof, probation_frac=0)["score"] == pytest.approx(0.0)


def test_nab_early_beats_late_and_only_first_in_window_counts():
    y = _series(1000, [(500, 501)])
    a, b = sm.nab_windows(y)[0]
    early, late, both = (np.zeros(1000, bool) for _ in range(3))
    early[a] = True
    late[b] = True
    both[[a, a + 1, a + 2]] = True  # three detections in one window: one TP, nothing else
    se, sl = (sm.nab_score(y, d, probation_frac=0)["score"] for d in (early, late))
    assert se > sl > 50.0
    r = sm.nab_score(y, both, probation_frac=0)
    assert r["tp"] == 1 and r["fp"] == 0 and r["score"] == pytest.approx(se)


def test_nab_false_positive_weights_by_profile():
    y = _series(1000, [(500, 501)])
    a, _ = sm.nab_windows(y)[0]
    d = np.zeros(1000, bool)
    d[a] = True
    d[200] = True  # before any window: costs -fp exactly
    raw = {p: sm.nab_score(y, d, p, probation_frac=0)["raw"] for p in sm.NAB_PROFILES}
    assert raw["standard"] == pytest.approx(1 - 0.11)
    assert raw["reward_low_FP_rate"] == pytest.approx(1 - 0.22)
    assert raw["reward_low_FN_rate"] == pytest.approx(1 - 0.11)
    # a missed window costs 2 under low-FN: null = -2, perfect = 1
    miss = sm.nab_score(y, np.zeros(1000, bool), "reward_low_FN_rate", probation_frac=0)
    assert (miss["null"], miss["perfect"], miss["raw"]) == (-2.0, 1.0, -2.0)
    # a false positive just after a window costs little, far after costs nearly fp
    after = np.zeros(1000, bool)
    _, b = sm.nab_windows(y)[0]
    after[b + 1] = True
    near = sm.nab_score(y, after, probation_frac=0)["raw"] + 1.0  # (the window is missed: -1)
    after[:] = False
    after[999] = True
    far = sm.nab_score(y, after, probation_frac=0)["raw"] + 1.0
    assert far == pytest.approx(-0.11) and far < near < 0 and near > -0.01  # 475 points past a 50-point window: y > 3


def test_nab_probation_and_corpus_sums():
    y = _series(1000, [(500, 501)])
    d = np.zeros(1000, bool)
    d[10] = True  # in the probationary 15 %: ignored
    r = sm.nab_score(y, d)
    assert r["fp"] == 0 and r["ignored_probation"] == 1
    a = sm.nab_score(y, sm.alert_starts(np.r_[np.zeros(475, bool), np.ones(525, bool)]), probation_frac=0)
    assert a["tp"] == 1 and a["fp"] == 0  # one alert, not 525 detections
    c = sm.nab_corpus([a, r])
    assert c == pytest.approx(100 * (a["raw"] + r["raw"] + 2) / 4)


def test_nab_optimise_finds_the_separating_threshold():
    rng = np.random.default_rng(1)
    ys, ss = [], []
    for _ in range(3):
        y = _series(1000, [(600, 601)])
        s = rng.random(1000) * 0.5
        a, _ = sm.nab_windows(y)[0]
        s[a + 2] = 5.0
        ys.append(y)
        ss.append(s)
    r = sm.nab_optimise(ys, ss, probation_frac=0)
    assert 0.5 < r["threshold"] <= 5.0 and r["score"] > 99.0
    flat = sm.nab_optimise(ys, [np.zeros(1000)] * 3, probation_frac=0)
    assert flat["score"] == pytest.approx(0.0)  # constant scores: best is no detection at all
