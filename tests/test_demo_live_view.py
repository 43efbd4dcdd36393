"""The demo's live view: each series line shows the window's flag and the alert state separately (issue 23.9)."""
from __future__ import annotations

from types import SimpleNamespace

from streams.windowing import ManualClock

import pytest

from monitor.daemon import Daemon
from monitor.demo import _alert_step, _series_line


def _drive(flags: list[bool], open_after: int, close_after: int) -> tuple[list[str], list[str]]:
    """The live line after each window, with the alert state from the daemon's own hysteresis code."""
    events: list[str] = []
    fake = SimpleNamespace(cfg=SimpleNamespace(scoring=SimpleNamespace(open_after=open_after, close_after=close_after)),
                           _alerts={}, _alert_seen={}, clock=ManualClock(),
                           _emit_alert=lambda event, *a, **k: events.append(event))
    lines = []
    for i, f in enumerate(flags):
        Daemon._hysteresis(fake, "s1", None, 1000 * i, f, 9.0 if f else 1.0)
        a = fake._alerts.get("s1")
        lines.append(_series_line("s1", "nll", 9.0 if f else 1.0, 5.0, f,
                                  [a.anomalous_run, a.normal_run, a.alert_id] if a else None,
                                  open_after, close_after))
    return lines, events


def test_a_window_below_the_threshold_with_its_alert_still_open_shows_both():
    lines, events = _drive([True, False, False, False, False], open_after=1, close_after=3)
    assert events == ["start", "end"]
    assert "ABOVE" in lines[0] and "alert OPEN   (closes after 3 below)" in lines[0]
    # below the threshold, alert still open: the old view printed "ALERT" here without the flag
    assert "below" in lines[1] and "alert OPEN   (closes after 2 more below)" in lines[1]
    assert "below" in lines[2] and "closes after 1 more below" in lines[2]
    # the third normal window closed it
    assert "below" in lines[3] and "alert closed (opens after 1 above)" in lines[3]


def test_a_window_above_the_threshold_before_the_alert_opens_shows_both():
    lines, events = _drive([True, True, False, True, True, True], open_after=3, close_after=2)
    assert "ABOVE" in lines[0] and "alert closed (opens after 2 more above)" in lines[0]
    assert "ABOVE" in lines[1] and "opens after 1 more above" in lines[1]
    assert "below" in lines[2] and "alert closed (opens after 3 above)" in lines[2]  # the run was broken
    assert "ABOVE" in lines[5] and "alert OPEN" in lines[5]
    assert events == ["start"]


@pytest.mark.parametrize("anomalous,word", [(True, "ABOVE"), (False, "below")])
def test_the_flag_is_the_windows_own_not_the_alerts(anomalous, word):
    open_alert = [0, 0, "s1@0", 0, 9.0, None]
    line = _series_line("s1", "nll", 1.0, 5.0, anomalous, open_alert, 1, 3)
    assert word in line and "alert OPEN" in line
    assert "ALERT" not in line.replace("alert", "")


def test_the_live_views_alert_state_follows_the_daemons_hysteresis():
    """The view recomputes the alert state from the score records it shows (so flag and state belong to
    the same window); it must agree with Daemon._hysteresis window by window."""
    import numpy as np

    rng = np.random.default_rng(7)
    for open_after, close_after in [(1, 1), (1, 5), (3, 2), (2, 4)]:
        flags = (rng.random(400) < 0.4).tolist()
        events: list[str] = []
        fake = SimpleNamespace(cfg=SimpleNamespace(scoring=SimpleNamespace(open_after=open_after,
                                                                           close_after=close_after)),
                               _alerts={}, _alert_seen={}, clock=ManualClock(),
                               _emit_alert=lambda event, *a, **k: events.append(event))
        view = None
        for i, f in enumerate(flags):
            Daemon._hysteresis(fake, "s", None, i, f, 1.0)
            view = _alert_step(view, f, open_after, close_after)
            a = fake._alerts.get("s")
            assert (view is None) == (a is None), (open_after, close_after, i)
            if a is not None:
                assert view[:2] == [a.anomalous_run, a.normal_run] and (view[2] is None) == (a.alert_id is None)
        assert events.count("start") >= 1
