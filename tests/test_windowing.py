"""Windowing: order, lateness, duplicates, gaps, TTL, committable offsets, resume after a restart."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.records import Readings
from streams.windowing import ManualClock, Windower, WindowSpec
from tests.fixtures.speedups import c_or_python, require_built


def reference_windows(ts, vals, T, S, gap_us=None):
    """Brute force: windows of T readings every S readings, restarted at gaps."""
    out = []
    runs = [0]
    for i in range(1, len(ts)):
        if gap_us is not None and ts[i] - ts[i - 1] > gap_us:
            runs.append(i)
    runs.append(len(ts))
    for a, b in zip(runs[:-1], runs[1:]):
        w = 0
        while a + w * S + T <= b:
            s = a + w * S
            out.append((int(ts[s]), int(ts[s + T - 1]), vals[s:s + T].tolist()))
            w += 1
    return out


def feed(w, part, ts, vals, cuts, series="s", offset0=0):
    got = []
    rej = []
    bounds = [0, *cuts, len(ts)]
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b <= a:
            continue
        batches, r = w.add(part, offset0 + j, Readings(series, ts[a:b], vals[a:b, None]))
        rej += r
        for bt in batches:
            for k in range(len(bt)):
                got.append((int(bt.start_ts[k]), int(bt.end_ts[k]), bt.X[k, :, 0].tolist()))
    return got, rej


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 9), S=st.integers(1, 12), n=st.integers(0, 60), data=st.data())
def test_windows_match_reference_for_any_chunking(T, S, n, data):
    ts = np.cumsum(data.draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))).astype(np.int64) * 1000
    vals = np.arange(n, dtype=np.float64)
    cuts = sorted(data.draw(st.lists(st.integers(0, max(n, 1)), max_size=8)))
    gap = data.draw(st.sampled_from([None, 3.5]))
    w = Windower(WindowSpec(length=T, stride=S, gap_ms=gap), clock=ManualClock())
    got, rej = feed(w, 0, ts, vals, cuts)
    assert rej == []
    assert got == reference_windows(ts, vals, T, S, None if gap is None else 3500)


def test_late_and_duplicate_are_rejected_without_lateness():
    w = Windower(WindowSpec(length=2, stride=1), clock=ManualClock())
    w.add(0, 0, Readings("a", np.array([1000, 2000]), np.ones((2, 1))))
    _, rej = w.add(0, 1, Readings("a", np.array([2000]), np.ones((1, 1))))
    assert [(r.reason, r.count) for r in rej] == [("duplicate", 1)]
    _, rej = w.add(0, 2, Readings("a", np.array([500]), np.ones((1, 1))))
    assert [(r.reason, r.count) for r in rej] == [("late", 1)]
    out, rej = w.add(0, 3, Readings("a", np.array([1500, 3000]), np.ones((2, 1))))
    assert [(r.reason, r.count) for r in rej] == [("late", 1)]
    assert [b.end_ts.tolist() for b in out] == [[3000]]


def test_reorder_buffer_within_lateness():
    w = Windower(WindowSpec(length=3, stride=1, lateness_ms=2.0), clock=ManualClock())
    got = []
    for off, t in enumerate([1, 3, 2, 4, 6, 5, 9, 10, 4]):
        out, rej = w.add(0, off, Readings("a", np.array([t * 1000]), np.array([[float(t)]])))
        if t == 4 and off == 8:
            assert [r.reason for r in rej] == ["late"]
        for b in out:
            got += b.X[:, :, 0].tolist()
    assert got == [[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]]
    # the buffered readings (9, 10) are still needed: their offsets bound the commit
    assert w.committable(0) == 4  # reading 5 (offset 5) starts the next window; 6 (offset 4) is in it


def test_gap_restarts_the_window():
    w = Windower(WindowSpec(length=3, stride=1, gap_ms=1.5), clock=ManualClock())
    ts = np.array([1, 2, 3, 10, 11, 12, 13]) * 1000
    out, _ = w.add(0, 0, Readings("a", ts, ts[:, None] / 1000.0))
    assert [x[:, 0].tolist() for b in out for x in b.X] == [[1, 2, 3], [10, 11, 12], [11, 12, 13]]


def test_committable_offset_never_passes_open_windows():
    T, S = 5, 2
    w = Windower(WindowSpec(length=T, stride=S), clock=ManualClock())
    # two series interleaved in one partition, one reading per record
    offsets_of = {"a": [], "b": []}
    for off in range(20):
        sid = "a" if off % 3 else "b"
        t = (off + 1) * 1000
        w.add(7, off, Readings(sid, np.array([t]), np.zeros((1, 1))))
        offsets_of[sid].append(off)
        c = w.committable(7)
        # every reading of a window not yet emitted lies at or after c
        for s, offs in offsets_of.items():
            n = len(offs)
            n_emitted = (n - T) // S + 1 if n >= T else 0
            first_needed = n_emitted * S
            if first_needed < n:
                assert c <= offs[first_needed]
    assert w.committable(7) <= 20
    assert w.committable(99) is None


def test_resume_rebuilds_the_same_windows():
    """A new owner replaying from the committed offset with the snapshot emits exactly the missing windows."""
    rng = np.random.default_rng(1)
    T, S = 6, 4
    spec = WindowSpec(length=T, stride=S)
    n = 200
    recs = []
    for off in range(n):
        sid = f"s{rng.integers(3)}"
        recs.append((off, sid))
    ts_of = {}
    def reading(off, sid):
        ts_of.setdefault(sid, 0)
        return Readings(sid, np.array([(off + 1) * 1000]), np.array([[float(off)]]))
    full = Windower(spec, clock=ManualClock())
    want = set()
    for off, sid in recs:
        for b in full.add(0, off, reading(off, sid))[0]:
            want |= {(sid, int(e)) for e in b.end_ts}
    # first owner processes up to 120, snapshots and "commits"; the second replays from there
    a = Windower(spec, clock=ManualClock())
    got = []
    for off, sid in recs[:120]:
        for b in a.add(0, off, reading(off, sid))[0]:
            got += [(sid, int(e)) for e in b.end_ts]
    commit, snap = a.committable(0), a.snapshot(0)
    for off, sid in recs[120:150]:  # emitted but not committed: will be duplicates
        for b in a.add(0, off, reading(off, sid))[0]:
            got += [(sid, int(e)) for e in b.end_ts]
    b2 = Windower(spec, clock=ManualClock())
    b2.assign(0, snap)
    first = True
    for off, sid in recs[commit:]:
        for b in b2.add(0, off, reading(off, sid))[0]:
            assert len(b.X) and b.X.shape[1] == T
            got += [(sid, int(e)) for e in b.end_ts]
            first = False
    assert not first
    assert set(got) == want
    # duplicates only for windows emitted after the snapshot
    assert len(got) - len(set(got)) < 30


def test_idle_series_are_evicted_after_ttl_and_memory_is_small():
    clock = ManualClock()
    w = Windower(WindowSpec(length=140, stride=10, idle_ttl_s=60), clock=clock)
    for i in range(1000):
        w.add(0, i, Readings(f"series-{i}", np.arange(50, dtype=np.int64) * 1000, np.zeros((50, 1))))
    per_series = w.memory_bytes() / w.n_series()
    assert per_series < 1200, per_series  # T=140, S=10: ~1.1 KiB (ring 560 B + 15 blocks x 16 B + objects)
    clock.advance(30)
    w.add(0, 1000, Readings("series-5", np.array([60_000]), np.zeros((1, 1))))
    clock.advance(40)
    assert w.evict_idle() == 999
    assert w.n_series() == 1


def test_wrong_width_and_series_limit():
    w = Windower(WindowSpec(length=2, stride=1, channels=2, max_series_per_partition=2), clock=ManualClock())
    _, rej = w.add(0, 0, Readings("a", np.array([1]), np.ones((1, 1))))
    assert rej[0].reason == "wrong_width"
    w.add(0, 1, Readings("a", np.array([1]), np.ones((1, 2))))
    w.add(0, 2, Readings("b", np.array([1]), np.ones((1, 2))))
    _, rej = w.add(0, 3, Readings("c", np.array([1]), np.ones((1, 2))))
    assert rej[0].reason == "series_limit"


def test_revoke_drops_partition_state():
    w = Windower(WindowSpec(length=3, stride=1), clock=ManualClock())
    w.add(1, 0, Readings("a", np.array([1, 2]), np.ones((2, 1))))
    assert w.n_series(1) == 1
    w.revoke(1)
    assert w.partitions == [] and w.committable(1) is None


@pytest.mark.parametrize("lateness", [0.0, 5.0])
def test_chunk_with_partially_late_samples(lateness):
    w = Windower(WindowSpec(length=2, stride=1, lateness_ms=lateness), clock=ManualClock())
    w.add(0, 0, Readings("a", np.arange(1, 21, dtype=np.int64) * 1000, np.ones((20, 1))))
    _, rej = w.add(0, 1, Readings("a", np.array([1000, 25000]), np.ones((2, 1))))
    assert [r.reason for r in rej] in (["late"], ["duplicate"])


@pytest.mark.parametrize("lateness", [0.0, 5.0])
def test_detached_state_continues_in_a_reset_log(lateness):
    """A broker that lost its log (issue 7): the detached series continue where the new log starts,
    windows straddling the reset are those of an uninterrupted stream, and the commit point stays at
    the adoption offset until they are out."""
    T, S = 8, 3
    ts = np.arange(60, dtype=np.int64) * 1000
    vals = np.sin(np.arange(60.0)).astype(np.float32)
    ref = Windower(WindowSpec(length=T, stride=S, lateness_ms=lateness), clock=ManualClock())
    want = feed(ref, 0, ts, vals, list(range(1, 60)))[0]
    w = Windower(WindowSpec(length=T, stride=S, lateness_ms=lateness), clock=ManualClock())
    got = feed(w, 0, ts[:31], vals[:31], list(range(1, 31)), offset0=100)[0]
    held, nxt = w.detach(0)
    assert set(held) == {"s"} and nxt == 131 and w.partitions == [] and w.committable(0) is None
    pristine = Windower.copy_series(held["s"])
    w.adopt = lambda part, sid, off: Windower.copy_series(held[sid]) if part == 1 and sid in held else None
    w.assign(1)
    out, _ = w.add(1, 0, Readings("s", ts[31:32], vals[31:32, None]))
    assert w.committable(1) == 0  # the parked readings are not in the new log: nothing before offset 0
    got += [x for b in out for x in zip(b.start_ts.tolist(), b.end_ts.tolist(), b.X[:, :, 0].tolist())]
    got += feed(w, 1, ts[32:], vals[32:], list(range(1, 28)), offset0=1)[0]
    if lateness:  # flush the reorder buffer
        got += feed(w, 1, np.array([10**9]), np.zeros(1, dtype=np.float32), [], offset0=99)[0]
    assert got[:len(want)] == want
    assert w.committable(1) > 0
    assert np.array_equal(pristine.buf, held["s"].buf)  # the adopted state was a copy


# --------------------------------------------------------------------------- packed idle series


def _random_stream(rng, n_series, n, jitter):
    """Interleaved records (series, ts µs, values) with chunks, some jitter, duplicates and late ones."""
    recs = []
    t = {f"s{i}": 1_000_000 * (i + 1) for i in range(n_series)}
    for _ in range(n):
        sid = f"s{int(rng.integers(n_series))}"
        m = int(rng.integers(1, 6))
        steps = np.full(m, 1000) + (rng.integers(-300, 300, m) if jitter else 0)
        ts = t[sid] + np.cumsum(steps)
        if rng.random() < 0.05:  # a stale record: late / duplicate samples
            ts = ts - 4000
        t[sid] = max(t[sid], int(ts[-1]))
        recs.append((sid, ts.astype(np.int64), rng.normal(size=(m, 1))))
    return recs


@pytest.mark.parametrize("T,S,lateness,gap", [(16, 1, 0.0, None), (16, 5, 0.0, None), (12, 12, 0.0, 2.5),
                                              (10, 3, 3.0, None), (140, 1, 0.0, None)])
@pytest.mark.parametrize("seed", [0, 1])
def test_packing_idle_series_changes_no_window_and_commits_stay_safe(T, S, lateness, gap, seed):
    rng = np.random.default_rng(seed)
    spec = WindowSpec(length=T, stride=S, lateness_ms=lateness, gap_ms=gap)
    plain, packed = Windower(spec, clock=ManualClock()), Windower(spec, clock=ManualClock())
    last_commit = 0
    n_packed = 0
    for off, (sid, ts, vals) in enumerate(_random_stream(rng, 5, 400, jitter=seed == 1)):
        a, ra = plain.add(0, off, Readings(sid, ts, vals))
        b, rb = packed.add(0, off, Readings(sid, ts, vals))
        assert [(x.reason, x.count) for x in ra] == [(x.reason, x.count) for x in rb]
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.series == y.series
            np.testing.assert_array_equal(x.X, y.X)
            np.testing.assert_array_equal(x.start_ts, y.start_ts)
            np.testing.assert_array_equal(x.end_ts, y.end_ts)
            np.testing.assert_array_equal(x.end_offset, y.end_offset)
        if rng.random() < 0.3:
            before = packed.committable(0)
            n_packed += packed.pack_idle(0.0)  # every series counts as idle
            assert packed.committable(0) == before  # packing itself moves nothing
        assert packed.snapshot(0) == plain.snapshot(0)
        c, cp = plain.committable(0), packed.committable(0)
        assert cp <= c  # never past what open windows need
        assert cp >= last_commit  # and never backwards
        last_commit = cp
    assert n_packed > 0


def test_packed_state_detaches_and_continues_in_a_reset_log():
    T, S = 16, 1
    ts = np.arange(80, dtype=np.int64) * 1000
    vals = np.sin(np.arange(80.0))
    ref = Windower(WindowSpec(length=T, stride=S), clock=ManualClock())
    want = feed(ref, 0, ts, vals, list(range(1, 80)))[0]
    w = Windower(WindowSpec(length=T, stride=S), clock=ManualClock())
    got = feed(w, 0, ts[:40], vals[:40], list(range(1, 40)))[0]
    assert w.pack_idle(0.0) == 1 and type(w._parts[0]["s"].buf) is bytes
    held, _ = w.detach(0)
    w.adopt = lambda part, sid, off: Windower.copy_series(held[sid]) if part == 1 else None
    w.assign(1)
    got += feed(w, 1, ts[40:], vals[40:], list(range(1, 40)))[0]
    assert got == want


def test_an_idle_regular_series_packs_under_1_kib_at_stride_1():
    clock = ManualClock()
    w = Windower(WindowSpec(length=140, stride=1, pack_after_s=10), clock=clock)
    rng = np.random.default_rng(0)
    for i in range(500):
        w.add(0, 10 * i, Readings(f"series-{i:06d}", 1_700_000_000_000_000 + np.arange(139, dtype=np.int64) * 2778,
                                  rng.normal(size=(139, 1))))
    live = w.memory_bytes() / w.n_series()
    assert w.pack_idle() == 0  # not idle yet
    clock.advance(11)
    assert w.pack_idle() == 500
    idle = w.memory_bytes() / w.n_series()
    assert idle < 1024 < live, (idle, live)
    # data again: unpacked and windowed as if nothing happened
    out, _ = w.add(0, 99_999, Readings("series-000007", np.array([1_700_000_000_000_000 + 139 * 2778]),
                                       np.ones((1, 1))))
    assert len(out) == 1 and out[0].X.shape == (1, 140, 1) and out[0].X[0, -1, 0] == 1.0


def _drive(w: Windower, clock: ManualClock, items: list, fast: bool, chunk: int, pack_every: int) -> list:
    """Feed single readings through add() (one Readings each) or add_values() (in chunks); return a
    trace of windows (per series, in order), rejections and committable offsets."""
    trace = []
    for lo in range(0, len(items), chunk):
        part = items[lo:lo + chunk]
        if fast:
            wins, rejs = w.add_values(0, part)
        else:
            wins, rejs = [], []
            for i, (off, sid, t, row) in enumerate(part):
                b, r = w.add(0, off, Readings(sid, np.array([t], dtype=np.int64), np.array([row], dtype=np.float64)))
                wins += [([i] * len(x), x) for x in b]
                rejs += [(i, x) for x in r]
        order = [i for idx, _ in wins for i in idx]
        assert order == sorted(order)  # in the order of the items completing them
        per_series: dict = {}  # add_values mixes series in one batch: compare window by window, per series
        for idx, b in wins:
            assert len(idx) == len(b) == len(b.window_series())
            for i, sid, *win in zip(idx, b.window_series(), b.X.tolist(), b.start_ts.tolist(), b.end_ts.tolist(),
                                    b.end_offset.tolist()):
                per_series.setdefault(sid, []).append((lo + i, *win))  # with the item that completed it
        trace.append((per_series,
                      [(lo + i, r.reason, r.count, r.message) for i, r in rejs], w.committable(0), w.snapshot(0)))
        clock.advance(1.0)
        if pack_every and (lo // chunk) % pack_every == pack_every - 1:
            w.pack_idle(0.5)
    return trace


@pytest.fixture(params=["c", "python"])
def loop(request, monkeypatch):
    """The fast path of add_values with its C loop (streams/_speedups.c; CI builds it) and with its
    Python loop."""
    import streams.windowing

    return c_or_python(request, monkeypatch, streams.windowing, "_c_add_plain", None)


def _items(rng, n: int, C: int, odd_rows: bool) -> list:
    """Single readings of three series with duplicates, late ones and gaps; with ``odd_rows`` also rows
    of ints and rows of the wrong width (the C loop leaves both to the Python code)."""
    items, last = [], {}
    for off in range(n):
        sid = f"s{rng.integers(0, 3)}"
        t = last.get(sid, 0) + int(rng.choice([1000, 1000, 1000, 0, -1000, 5000]))  # dup, late, gap
        last[sid] = max(last.get(sid, 0), t)
        row = tuple(float(x) for x in rng.normal(size=C).astype(np.float32))
        if odd_rows and rng.random() < 0.1:
            row = tuple(int(x) for x in rng.integers(-3, 3, size=C)) if rng.random() < 0.5 else row + (1.0,)
        items.append((off, sid, max(t, 0), row))
    return items


# (the loop fixture is the same for every example: resetting it between them changes nothing)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(T=st.integers(1, 6), S=st.integers(1, 7), C=st.integers(1, 3), gap=st.sampled_from([None, 3.0]),
       lateness=st.sampled_from([0.0, 2.0]), chunk=st.integers(1, 9), pack_every=st.sampled_from([0, 2]),
       seed=st.integers(0, 10_000))
def test_add_values_equals_add_one_reading_at_a_time(loop, T, S, C, gap, lateness, chunk, pack_every, seed):
    """The single-reading fast path gives exactly what add() gives: windows (values, times, offsets),
    rejections (late, duplicate) with their messages, committable offsets and resume snapshots;
    with gaps, lateness (delegated), packed states and resume points in between."""
    items = _items(np.random.default_rng(seed), 120, C, odd_rows=False)
    spec = WindowSpec(length=T, stride=S, channels=C, gap_ms=gap, lateness_ms=lateness)
    traces = []
    for fast in (False, True):
        clock = ManualClock()
        w = Windower(spec, clock=clock)
        w.assign(0, resume={"s1": [4000, 1]})
        traces.append(_drive(w, clock, items, fast, chunk, pack_every))
    assert traces[0] == traces[1]


@settings(max_examples=80, deadline=None)
@given(T=st.integers(1, 6), S=st.integers(1, 7), C=st.integers(1, 3), gap=st.sampled_from([None, 3.0]),
       chunk=st.integers(1, 40), pack_every=st.sampled_from([0, 2]), seed=st.integers(0, 10_000))
def test_the_c_loop_of_add_values_gives_what_its_python_loop_gives(T, S, C, gap, chunk, pack_every, seed):
    """add_values with the C loop and with the Python loop: the same window batches (same grouping,
    values, times, offsets, item indices), rejections, committable offsets, snapshots and series
    order (least recently seen first), with ints and wrong widths among the rows."""
    import streams.windowing

    c_loop = streams.windowing._c_add_plain
    require_built(c_loop)
    items = _items(np.random.default_rng(seed), 150, C, odd_rows=True)
    spec = WindowSpec(length=T, stride=S, channels=C, gap_ms=gap)
    runs = []
    for use in (c_loop, None):
        streams.windowing._c_add_plain = use
        try:
            clock = ManualClock()
            w = Windower(spec, clock=clock)
            w.assign(0, resume={"s1": [4000, 1]})
            run = []
            for k, lo in enumerate(range(0, len(items), chunk)):
                wins, rejs = w.add_values(0, items[lo:lo + chunk])
                run.append(([(idx, b.window_series(), b.X.tolist(), b.start_ts.tolist(), b.end_ts.tolist(),
                              b.end_offset.tolist()) for idx, b in wins],
                            [(i, r.reason, r.count, r.message) for i, r in rejs],
                            w.committable(0), w.snapshot(0), list(w._parts[0])))
                clock.advance(1.0)
                if pack_every and k % pack_every == 1:
                    w.pack_idle(0.5)
            runs.append(run)
        finally:
            streams.windowing._c_add_plain = c_loop
    assert runs[0] == runs[1]


@pytest.mark.parametrize("T,S,gap", [(16, 1, None), (16, 5, None), (12, 12, 2.5), (140, 1, None), (7, 3, 1.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_committable_reads_one_block_without_lateness(T, S, gap, seed):
    """Without lateness the committable offset comes from each series' next-window block alone: the
    same offset as the minimum over every block of its open windows (chunks, gaps, duplicate and
    late records, packed and unpacked series)."""
    rng = np.random.default_rng(seed)
    w = Windower(WindowSpec(length=T, stride=S, gap_ms=gap), clock=ManualClock())
    for off, (sid, ts, vals) in enumerate(_random_stream(rng, 6, 500, jitter=seed == 1)):
        w.add(0, off, Readings(sid, ts, vals))
        if rng.random() < 0.1:
            w.pack_idle(0.0)
        scan = [w._needed_scan(st) for st in w._parts[0].values()]
        want = min([w._next_off[0]] + [m for m in scan if m is not None])
        assert w.committable(0) == want
