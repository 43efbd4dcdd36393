"""Replay datasets as live streams of readings (``anomon replay``, the demo and the benchmarks).

A dataset becomes one or more :class:`ReplaySeries` (values (n, C), sample period, per-sample
labels, optional beat annotations) and :func:`replay` sends them as JSON records, interleaved in
event-time order, at a given rate (readings per second over all series) or as fast as possible:

* ``mitdb[:RECORD]`` -- an MIT-BIH record as continuous 360 Hz ECG (lead MLII by default); beat
  annotations travel in the ``anomon.beats`` header (``[[ts_ms, symbol], ...]``);
* ``ecg5000`` -- the 5000 ECG5000 beats (140 samples each) concatenated into per-patient series
  (``--series N`` patients, consecutive beats), one beat a second; label = class != 1;
* ``kpi``, ``yahoo``, ``ucr-anomaly`` -- the labelled series of the shared data;
* any CSV/Parquet path -- through :func:`streams.datasets.load_csv_series`.

``n_series`` larger than the dataset's own count replays copies (``<name>-<k>``), each shifted in
its start, so a benchmark gets as many series as it asks for. Labels travel in the
``anomon.labels`` header (number of anomalous samples in the record) so consumers can score.

Examples
--------
>>> import numpy as np
>>> s = ReplaySeries("a", np.arange(6.0)[:, None], period_ms=10.0, labels=np.array([0, 0, 1, 0, 0, 0]))
>>> out = []
>>> n = replay([s], lambda topic, value, key, headers: out.append((key, value, headers)), "t",
...            form="chunk", chunk=4, t0_ms=0)
>>> n, out[0][1]
(2, b'{"series":"a","ts":0,"period_ms":10.0,"values":[[0.0],[1.0],[2.0],[3.0]]}')
>>> out[0][2]
[('anomon.labels', b'1')]
"""
from __future__ import annotations

import heapq
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streams.records import RecordFormat, encode_chunk, encode_reading


@dataclass
class ReplaySeries:
    """One series to replay: ``values`` (n, C), ``period_ms``, ``labels`` (n,) 0/1, optional beats."""

    series: str
    values: np.ndarray
    period_ms: float
    labels: np.ndarray | None = None
    #: (sample index, symbol) of beat annotations (MIT-BIH)
    beats: list[tuple[int, str]] = field(default_factory=list)
    offset_ms: float = 0.0

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        self.values = v[:, None] if v.ndim == 1 else v
        if self.labels is None:
            self.labels = np.zeros(len(self.values), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.values)


DATASETS = ("mitdb", "ecg5000", "kpi", "yahoo", "ucr-anomaly")


def _copies(base: list[ReplaySeries], n: int | None) -> list[ReplaySeries]:
    if not n or n == len(base):
        return base
    if n < len(base):
        return base[:n]
    out = []
    for k in range(n):
        b = base[k % len(base)]
        shift = (k // len(base)) * 7919 % max(1, len(b))  # a different phase per copy
        v = np.roll(b.values, -shift, axis=0)
        lab = np.roll(b.labels, -shift)
        beats = sorted(((i - shift) % len(b), s) for i, s in b.beats)
        out.append(ReplaySeries(f"{b.series}-{k}", v, b.period_ms, lab, beats))
    return out


def load_replay_series(dataset: str, n_series: int | None = None, data_dir: str | Path | None = None,
                       channels: list[int] | None = None, start_s: float = 0.0, duration_s: float | None = None,
                       csv_timestamp: str | None = None, csv_label: str | None = None) -> list[ReplaySeries]:
    """The series of a dataset (see the module docstring for names)."""
    from streams import datasets as ds

    name, _, arg = dataset.partition(":")
    if name == "mitdb":
        rec = ds.load_mitdb_record(arg or "106", data_dir)
        ch = channels or [0]
        fs = float(rec.fs)
        a = int(start_s * fs)
        b = rec.n_samples if duration_s is None else min(rec.n_samples, a + int(duration_s * fs))
        sig = rec.signal[a:b][:, ch]
        labels = rec.sample_labels(half_width=int(0.1 * fs))[a:b]
        mask = rec.beat_mask()
        beats = [(int(s) - a, str(y)) for s, y in zip(rec.ann_samples[mask], rec.ann_symbols[mask]) if a <= s < b]
        base = [ReplaySeries(f"mitdb-{rec.record}", sig, 1000.0 / fs, labels, beats)]
    elif name == "ecg5000":
        d = ds.load_ecg5000(data_dir)
        X, y = d.pooled()
        k = n_series or 10
        groups = np.array_split(np.arange(len(X)), k)
        base = []
        for i, g in enumerate(groups):
            v = X[g].reshape(-1)
            lab = np.repeat((y[g] != 1).astype(np.int64), X.shape[1])
            base.append(ReplaySeries(f"ecg5000-p{i}", v, 1000.0 / X.shape[1], lab))
        return base
    elif name in ("kpi", "yahoo", "ucr-anomaly"):
        s = {"kpi": ds.load_kpi, "yahoo": ds.load_yahoo}.get(name, None)
        ser = s(data_dir) if s else ds.load_ucr_anomaly(arg or "robotDOG1", data_dir)
        base = [_from_series(ser, f"{name}", channels)]
    else:
        p = Path(dataset)
        if not p.exists():
            raise FileNotFoundError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)} "
                                    "(mitdb:RECORD for another MIT-BIH record) or a CSV/Parquet path")
        ser = ds.load_csv_series(p, csv_timestamp, label_col=csv_label)
        base = [_from_series(ser, p.stem, channels)]
    return _copies(base, n_series)


def _from_series(ser: Any, name: str, channels: list[int] | None) -> ReplaySeries:
    ts = np.asarray(ser.timestamps, dtype=np.float64)
    if ser.meta.get("time") == "epoch_s" and len(ts) > 1:
        period = float(np.median(np.diff(ts))) * 1000.0
    else:
        period = 1000.0
    v = ser.values if channels is None else ser.values[:, channels]
    return ReplaySeries(name, v, max(period, 1e-3), np.asarray(ser.labels, dtype=np.int64))


def replay(series: list[ReplaySeries], send: Callable[..., Any], topic: str, *, rate: float | None = None,
           form: str = "chunk", chunk: int = 36, t0_ms: float | None = None, fmt: RecordFormat | None = None,
           duration_s: float | None = None, stop: Callable[[], bool] | None = None, loop: bool = False,
           on_progress: Callable[[int, int], None] | None = None) -> int:
    """Send every series as records through ``send(topic, value, key, headers)``; returns the record count.

    ``rate``: readings per second over all series (None = as fast as possible). ``form``:
    ``"single"`` (one reading per record) or ``"chunk"`` (``chunk`` readings per record).
    ``t0_ms``: event time of the first sample (default: now). ``loop``: start again at the end
    (event time keeps increasing) until ``duration_s`` or ``stop()``.
    """
    if form not in ("single", "chunk"):
        raise ValueError(f"form must be 'single' or 'chunk', got {form!r}")
    fmt = fmt or RecordFormat()
    t0 = time.time() * 1000.0 if t0_ms is None else float(t0_ms)
    step = 1 if form == "single" else max(1, int(chunk))
    start = time.monotonic()
    sent = readings = 0
    rnd = 0
    while True:
        # event-time ordered merge of every series' chunks
        heap = [(t0 + s.offset_ms, k, 0) for k, s in enumerate(series) if len(s)]
        heapq.heapify(heap)
        beat_idx = [0] * len(series)
        last_t = t0
        while heap:
            t, k, a = heapq.heappop(heap)
            s = series[k]
            b = min(len(s), a + step)
            headers = []
            nl = int(s.labels[a:b].sum())
            if nl:
                headers.append(("anomon.labels", str(nl).encode()))
            if s.beats:
                bi = beat_idx[k]
                beats = []
                while bi < len(s.beats) and s.beats[bi][0] < b:
                    if s.beats[bi][0] >= a:
                        beats.append([round(t0 + s.offset_ms + s.beats[bi][0] * s.period_ms, 3), s.beats[bi][1]])
                    bi += 1
                beat_idx[k] = bi
                if beats:
                    headers.append(("anomon.beats", json.dumps(beats, separators=(",", ":")).encode()))
            ts = round(t, 3)
            ts = int(ts) if float(ts).is_integer() else ts
            if form == "single":
                v = s.values[a]
                val = encode_reading(s.series, ts, float(v[0]) if len(v) == 1 else v.tolist(), fmt)
            else:
                val = encode_chunk(s.series, ts, s.period_ms, s.values[a:b], fmt)
            send(topic, val, s.series.encode(), headers)
            sent += 1
            readings += b - a
            last_t = t
            if b < len(s):
                heapq.heappush(heap, (t0 + s.offset_ms + b * s.period_ms, k, b))
            if rate:
                ahead = readings / rate - (time.monotonic() - start)
                if ahead > 0.002:
                    time.sleep(ahead)
            if on_progress and sent % 1000 == 0:
                on_progress(sent, readings)
            if (stop and stop()) or (duration_s is not None and time.monotonic() - start >= duration_s):
                return sent
        rnd += 1
        if not loop:
            return sent
        span = max(len(s) * s.period_ms for s in series)
        t0 = max(last_t, t0 + span) + max(s.period_ms for s in series)
