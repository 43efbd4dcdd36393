"""Training windows from a topic's history (``anomon train DETECTOR --from-topic T``).

The topic is read with no consumer group (nothing is committed) from ``--since`` or ``--last N`` up to
the end it had when reading began, and every record goes through the daemon's own decoder
(:func:`streams.records.decode_record`) and windower (:class:`streams.windowing.Windower`, per partition
and series, keyless readings per series in time order as the daemon's repartitioning gives them), so the
training windows are the windows the daemon would score. What the daemon would dead-letter is counted
by reason and left out; with ``exclude`` (a bundle), windows that bundle flags are left out too.

Each series' windows are split in time: the head trains, a held-back tail that overlaps no training
window calibrates the thresholds (as ``anomon train --data`` does, see :func:`monitor.training.split_series`).

>>> import numpy as np
>>> w = {"a": np.arange(10 * 4 * 1, dtype=np.float32).reshape(10, 4, 1)}
>>> sp = split_windows(w, {"a": np.arange(10.0)}, window=4, stride=2, calibration_fraction=0.3)
>>> len(sp.train), len(sp.calibration), sp.spans["a"]["train_windows"], sp.spans["a"]["calibration_windows"]
(6, 3, 6, 3)
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import Any

import numpy as np

from monitor.errors import UnavailableError, UserError
from monitor.training import Split, TrainingDataError

log = logging.getLogger("anomon.train")


def read_topic_windows(settings: Any, topics: list[str], *, window: int, stride: int, fmt: Any,
                       since_ms: int | None = None, last: int | None = None, lateness_ms: float = 0.0,
                       gap_ms: float | None = None, timeout_s: float = 30.0,
                       lane: Any = None) -> tuple[dict, dict, Counter, int]:
    """``({series: windows (k, T, C)}, {series: window end times (µs)}, dead-letter reasons counted, records read)``.

    ``lane``: a :class:`monitor.routing.LaneFilter`; only the readings routed to its model are read (one
    model's retrain among ``[[models]]``)."""
    from streams.kafka import KafkaConsumer, TopicPartition, offsets_for_times, partition_ends, topic_partitions
    from streams.records import RecordError, decode_record
    from streams.windowing import ManualClock, Windower, WindowSpec

    tps = [tp for t in topics for tp in topic_partitions(settings, t)]
    if not tps:
        raise UserError(f"--from-topic: topic {', '.join(topics)} does not exist on {settings.bootstrap_servers} "
                        "or has no partitions")
    ends = partition_ends(settings, tps, timeout_s=timeout_s)
    starts = offsets_for_times(settings, {tp: since_ms for tp in tps}, timeout_s=timeout_s) if since_ms is not None else {}
    c = KafkaConsumer(**settings.to_kafka_python(), group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=200)
    dead: Counter = Counter()
    keyed: dict[Any, list] = {}
    keyless: list = []
    width: int | None = None
    n = 0
    try:
        c.assign(tps)
        pending = set()
        for tp in tps:
            if since_ms is not None:
                if starts.get(tp) is None:
                    continue
                c.seek(tp, starts[tp])
            elif last is not None:
                c.seek(tp, max(0, ends[tp] - last))
            else:
                c.seek_to_beginning(tp)
            if c.position(tp) < ends[tp]:
                pending.add(tp)
        deadline = time.monotonic() + timeout_s
        while pending:
            got = c.poll(timeout_ms=300)
            if got:
                deadline = time.monotonic() + timeout_s
            for tp, recs in got.items():
                if lane is not None:
                    recs = lane.split(tp.topic, recs, fmt.series_field)[0]
                for r in recs:
                    if r.offset >= ends[tp]:
                        continue
                    n += 1
                    try:
                        rd = decode_record(r.value, r.key, fmt, width)
                    except RecordError as exc:
                        dead[exc.reason] += 1
                        continue
                    width = width or int(rd.values.shape[1])
                    (keyed.setdefault(TopicPartition(tp.topic, tp.partition), []) if r.key else keyless).append(
                        (r.offset, rd))
                if c.position(tp) >= ends[tp]:
                    pending.discard(tp)
            pending = {tp for tp in pending if c.position(tp) < ends[tp]}
            if pending and not got and time.monotonic() > deadline:
                raise UnavailableError(f"reading {', '.join(topics)} stalled: no records for {timeout_s:g} s before "
                                       "the end")
    finally:
        c.close()
    if width is None:
        raise TrainingDataError(f"--from-topic {', '.join(topics)}: no readable reading in {n} record(s)"
                                + (f" (dead-lettered: {dict(dead)})" if dead else ""))
    spec = WindowSpec(length=int(window), stride=int(stride), channels=width, lateness_ms=lateness_ms, gap_ms=gap_ms,
                      pack_after_s=None, idle_ttl_s=1e12)
    wdr = Windower(spec, clock=ManualClock())
    wins: dict[str, list] = {}
    ends_us: dict[str, list] = {}

    def feed(part: Any, items: list) -> None:
        for off, rd in items:
            batches, rejected = wdr.add(part, off, rd)
            for rj in rejected:
                dead[rj.reason] += 1
            for b in batches:
                for sid, x, e in zip(b.window_series(), b.X, b.end_ts.tolist()):
                    wins.setdefault(sid, []).append(x)
                    ends_us.setdefault(sid, []).append(e)

    for part, items in keyed.items():
        feed(part, items)
    if keyless:  # the daemon re-sends them keyed by series, in timestamp order (monitor/repartition.py)
        keyless.sort(key=lambda it: (str(it[1].series), float(it[1].ts[0])))
        feed("keyless", keyless)
    return ({s: np.asarray(v, dtype=np.float32) for s, v in wins.items()},
            {s: np.asarray(v, dtype=np.float64) for s, v in ends_us.items()}, dead, n)


def split_windows(windows: dict[str, np.ndarray], ends_us: dict[str, np.ndarray], *, window: int, stride: int,
                  calibration_fraction: float = 0.2) -> Split:
    """Per series: the first windows train, the last ``calibration_fraction`` (at least one) calibrate,
    and the windows between, which share readings with both, are left out."""
    T, S = int(window), int(stride)
    gap = max(0, math.ceil(T / S) - 1)  # windows after the last training one that still overlap it
    tr, ca, tr_s, ca_s = [], [], [], []
    spans: dict[str, dict[str, Any]] = {}
    readings: dict[str, np.ndarray] = {}
    counts = {"train_windows": 0, "calibration_windows": 0, "labelled_windows_excluded": 0,
              "series_without_calibration": 0, "overlap_windows_left_out": 0}
    for sid in sorted(windows):
        W = windows[sid]
        k = len(W)
        n_cal = max(1, int(math.ceil(calibration_fraction * k)))
        n_tr = k - n_cal - gap
        if n_tr < 1:  # too few windows for both: all train (another series calibrates)
            n_tr, n_cal, used_gap = k, 0, 0
            counts["series_without_calibration"] += 1
        else:
            used_gap = gap
        tr.append(W[:n_tr])
        tr_s += [sid] * n_tr
        ca.append(W[k - n_cal:] if n_cal else W[:0])
        ca_s += [sid] * n_cal
        counts["overlap_windows_left_out"] += used_gap if n_cal else 0
        head = W[:n_tr]
        readings[sid] = np.concatenate([head[:, :S].reshape(-1, W.shape[2]), head[-1, S:]]) if S < T else \
            head.reshape(-1, W.shape[2])
        e = ends_us[sid]
        n_read = (k - 1) * S + T  # readings the windows cover (0-based rows of the series below)
        spans[sid] = {"source": "topic", "windows": k, "readings": n_read, "train": [0, (n_tr - 1) * S + T],
                      "calibration": [(k - n_cal) * S, n_read] if n_cal else None,
                      "train_windows": n_tr, "calibration_windows": n_cal,
                      "train_time": [float(e[0]) / 1e6, float(e[n_tr - 1]) / 1e6],
                      "calibration_time": [float(e[k - n_cal]) / 1e6, float(e[-1]) / 1e6] if n_cal else None}
    C = next(iter(windows.values())).shape[2] if windows else 1
    cat = lambda parts: np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, T, C), np.float32)  # noqa: E731
    sp = Split(cat(tr), cat(ca), tr_s, ca_s, np.zeros((0, T, C), np.float32), np.zeros(0, np.int8), [], spans,
               counts, readings)
    counts["train_windows"], counts["calibration_windows"] = len(sp.train), len(sp.calibration)
    if not len(sp.train):
        raise TrainingDataError("--from-topic: no training windows (more history, or a smaller --window)")
    if not len(sp.calibration):
        raise TrainingDataError(f"--from-topic: no calibration windows: a series needs at least {gap + 2} windows "
                                "so that a held-back tail can calibrate the thresholds")
    return sp


def drop_flagged(windows: dict[str, np.ndarray], ends_us: dict[str, np.ndarray], bundle_dir: str) -> tuple[dict, dict, int]:
    """Leave out the windows that the bundle at ``bundle_dir`` flags (above a threshold of an alert component)."""
    from monitor.modelstore import load_bundle

    b = load_bundle(bundle_dir)
    out_w, out_e, dropped = {}, {}, 0
    for sid, W in windows.items():
        if W.shape[1:] != (b.length, b.channels):
            raise UserError(f"--exclude-flagged-by {bundle_dir}: its windows are {b.length}x{b.channels}, the "
                            f"training windows {W.shape[1]}x{W.shape[2]}")
        s = b.score(W, [sid] * len(W))
        flag = np.zeros(len(W), dtype=bool)
        for comp in b.alert_components:
            flag |= np.asarray(s[comp]) > b.thresholds.get(comp, np.inf)
        dropped += int(flag.sum())
        out_w[sid], out_e[sid] = W[~flag], ends_us[sid][~flag]
    return {s: w for s, w in out_w.items() if len(w)}, {s: e for s, e in out_e.items() if len(e)}, dropped
