"""The daemon's micro-batching: full model calls of ``scoring.max_batch`` windows, window batches split
where they straddle two calls, windows in order with their record timestamps (no broker needed:
the daemon is built but not started, and the model call is captured)."""
from __future__ import annotations

import numpy as np
import pytest

from streams.windowing import MultiSeriesBatch, WindowBatch
from tests.fixtures.daemon import daemon_config


class _TP:
    def __init__(self, partition: int):
        self.topic, self.partition = "t", partition

    def __eq__(self, other):
        return isinstance(other, _TP) and other.partition == self.partition

    def __hash__(self):
        return self.partition


def _batches(rng, n_batches: int, T: int = 4):
    """Random window batches (one series, or several mixed) with globally numbered windows: window
    number w has end_ts w, and its record timestamp is 10 * w."""
    out, w = [], 0
    for _ in range(n_batches):
        k = int(rng.integers(1, 40))
        ends = np.arange(w, w + k, dtype=np.int64)
        X = np.repeat(ends.astype(np.float32)[:, None, None], T, axis=1)
        tp = _TP(int(rng.integers(0, 3)))
        if rng.random() < 0.5:
            b = WindowBatch(f"s{int(rng.integers(0, 5))}", tp, X, ends - 1, ends, ends)
        else:
            b = MultiSeriesBatch([f"s{int(x)}" for x in rng.integers(0, 5, size=k)], tp, X, ends - 1, ends, ends)
        out.append((b, [10 * int(e) for e in ends]))
        w += k
    return out, w


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("max_batch", [1, 7, 64])
def test_full_batches_split_window_batches_and_keep_order(daemon_bundle, seed, max_batch):
    from monitor.daemon import Daemon

    d = Daemon(daemon_config("127.0.0.1:1", "t", "g", daemon_bundle, scoring__max_batch=max_batch))
    calls = []
    d._score = lambda take: calls.append(take)
    rng = np.random.default_rng(seed)
    batches, n = _batches(rng, 30)
    now = 0.0
    for lo in range(0, len(batches), 3):  # a few window batches per queue call, as from one poll
        d._queue(batches[lo:lo + 3], now)
        assert d._pending_n == sum(len(b) for b, _ in d._pending) < max_batch
        now += 1.0
    full = len(calls)
    assert full == n // max_batch  # every backlog window in a full batch as soon as there is one
    d._score_pending()  # max wait / checkpoint: the rest
    assert d._pending == [] and d._pending_n == 0
    assert len(calls) == full + (n % max_batch > 0)
    got_ends, got_ts, got_series = [], [], []
    for take in calls[:full]:
        assert sum(len(b) for b, _ in take) == max_batch
    for take in calls:
        for b, ts in take:
            assert len(ts) == len(b) == len(b.window_series()) == len(b.X)
            got_ends += b.end_ts.tolist()
            got_ts += ts
            got_series += b.window_series()
            assert b.X[:, 0, 0].tolist() == b.end_ts.tolist()  # values travel with their window
    assert got_ends == list(range(n))
    assert got_ts == [10 * e for e in range(n)]
    want_series = [s for b, _ in batches for s in b.window_series()]
    assert got_series == want_series


def test_pending_windows_of_one_series_are_found_in_mixed_batches(daemon_bundle):
    """What a parked series takes along (:meth:`Daemon._pending_of`): its windows from that partition only."""
    from monitor.daemon import Daemon

    d = Daemon(daemon_config("127.0.0.1:1", "t", "g", daemon_bundle, scoring__max_batch=1000))
    X = np.zeros((4, 2, 1), np.float32)
    e = np.arange(4, dtype=np.int64)
    d._queue([(MultiSeriesBatch(["a", "b", "a", "c"], _TP(0), X, e, e, e), [1, 2, 3, 4]),
              (WindowBatch("a", _TP(1), X, e, e + 10, e), [5, 6, 7, 8]),
              (WindowBatch("a", _TP(0), X[:2], e[:2], e[:2] + 20, e[:2]), [9, 10])], 0.0)
    got = d._pending_of(_TP(0), "a")
    assert [(b.window_series(), b.end_ts.tolist(), ts) for b, ts in got] == [
        (["a", "a"], [0, 2], [1, 3]), (["a", "a"], [20, 21], [9, 10])]
    moved = got[0][0].with_partition(_TP(2))
    assert moved.partition == _TP(2) and moved.end_ts.tolist() == [0, 2]
