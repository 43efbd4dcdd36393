"""Slow consumer and backpressure: readings arrive far faster than the daemon can score them.

A burst of chunk records (stride 1: one window per reading) lands while an ``anomon run``
subprocess consumes. The daemon's memory stays bounded (RSS sampled, not timed), lag grows and is
visible in ``anomon_fetch_lag``, and every window is eventually scored: nothing dropped.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest

from monitor.reliability import record
from tests.fixtures.daemon import daemon_config, expected_window_ids, produce_readings, read_topic, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

T = 16


def _metrics(port: int) -> dict[str, float]:
    """Sum of each metric family (labels collapsed) from /metrics."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return out


class Sampler(threading.Thread):
    """Samples the daemon's RSS and its /metrics every ``every_s`` until stopped."""

    def __init__(self, pid: int, port: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.port, self.every_s = port, every_s
        self.samples: list[tuple[float, int, dict]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                rss = self.proc.memory_info().rss
            except Exception:  # noqa: BLE001 - process gone
                break
            self.samples.append((time.monotonic(), rss, _metrics(self.port)))
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def test_slow_consumer_bounded_memory_lag_reported_nothing_dropped(broker, fresh_topic, daemon_bundle, spawn_daemon):
    from streams.broker import free_port
    from streams.kafka import KafkaSettings, create_topics

    bs, topic = broker.bootstrap, fresh_topic
    create_topics(KafkaSettings(bootstrap_servers=bs), {topic: 4})
    port = free_port()
    max_batch, chunk, stride = 256, 50, 1
    cfg = daemon_config(bs, topic, "g-" + topic, daemon_bundle, window__stride=stride, http__enabled=True,
                        http__port=port, scoring__max_batch=max_batch, input__max_poll_records=200)
    d = spawn_daemon(cfg, name="slow")
    assert wait_until(lambda: _metrics(port).get("anomon_ready") == 1.0, timeout_s=90), d.log()[-3000:]
    # warm-up: a little traffic so that baseline RSS includes the model, clients and first batches
    series = [f"bp{i}" for i in range(8)]
    warm = 200
    produce_readings(bs, topic, series, warm, form="chunk", chunk=chunk)
    assert wait_until(lambda: _metrics(port).get("anomon_windows_scored_total", 0) >= len(series) * ((warm - T) // stride + 1),
                      timeout_s=90), d.log()[-3000:]
    sampler = Sampler(d.pid, port)
    sampler.start()
    time.sleep(0.5)
    # two equal bursts: memory that grew with the backlog (or leaked) would climb again in the second
    burst, n, records, peaks, lags, produce_s, drain_s = 15000, warm, 0, [], [], [], []
    for _ in range(2):
        t0 = time.monotonic()
        first = len(sampler.samples)
        records += produce_readings(bs, topic, series, n + burst, form="chunk", chunk=chunk, start=n)
        produce_s.append(round(time.monotonic() - t0, 1))
        n += burst
        want = (n - T) // stride + 1
        done = wait_until(lambda: _metrics(port).get("anomon_windows_scored_total", 0) >= len(series) * want, timeout_s=180)
        assert done, d.log()[-3000:]
        assert wait_until(lambda: sampler.samples[-1][2].get("anomon_fetch_lag", 1) == 0, timeout_s=30)
        drain_s.append(round(time.monotonic() - t0, 1))
        window = sampler.samples[first:]
        peaks.append(max(s[1] for s in window))
        lags.append(int(max(s[2].get("anomon_fetch_lag", 0.0) for s in window)))
    sampler.stop()
    final = _metrics(port)
    assert d.terminate() == 0, d.log()[-3000:]

    ids = [json.loads(v)["id"] for _, v, _ in read_topic(bs, f"{topic}.scores", min_count=len(series) * want, timeout_s=120)]
    expected = expected_window_ids(series, n, T, stride)
    lost = expected - set(ids)
    dlq = read_topic(bs, f"{topic}.dlq", timeout_s=5, idle_s=1)
    lag = [s[2].get("anomon_fetch_lag", 0.0) for s in sampler.samples]
    pending = [s[2].get("anomon_pending_windows", 0.0) for s in sampler.samples]
    base = sampler.samples[0][1]
    mb = 2**20
    burst_mb = len(json.dumps({"series": "bp0", "ts": 0, "period_ms": 10, "values": [[0.12345678901]] * chunk})) \
        * (records // 2) / mb
    # lag grew (input outran scoring), was reported, and came back to 0. The gauge is the fetch
    # high-water mark minus the position, refreshed once a second between polls, so a short burst
    # can be missed by it: require it in at least one of the two bursts.
    assert max(lags) > 0, lags
    assert lag[-1] == 0
    # nothing dropped: every window scored, nothing dead-lettered, every record counted as consumed
    assert not lost, sorted(lost)[:5]
    assert not dlq
    assert final.get("anomon_records_consumed_total") == records + len(series) * warm // chunk
    # memory bounded: pending windows never exceed one batch plus one record's windows; RSS does not
    # climb again with the second burst (kafka-python's fetch and producer buffers are bounded)
    assert max(pending) <= max_batch + chunk
    assert (peaks[0] - base) / mb < 150, (base, peaks)
    assert (peaks[1] - peaks[0]) / mb < 24, (base, peaks)
    record("backpressure-slow-consumer", {
        "readings_per_burst": len(series) * burst, "records_per_burst": records // 2, "backlog_mb_per_burst": round(burst_mb, 1),
        "windows_expected": len(expected), "windows_lost": len(lost), "duplicates": len(ids) - len(set(ids)),
        "dead_letters": len(dlq), "produce_s": produce_s, "drain_s": drain_s,
        "max_lag_records": lags, "final_lag": int(lag[-1]), "max_pending_windows": int(max(pending)),
        "rss_baseline_mb": round(base / mb, 1), "rss_peak_mb": [round(p / mb, 1) for p in peaks],
        "rss_growth_mb": round((max(peaks) - base) / mb, 1),
        "rss_growth_second_burst_mb": round((peaks[1] - peaks[0]) / mb, 1), "rss_samples": len(sampler.samples),
    }, title="slow consumer: two bursts far above the scoring rate (8 series, chunks of 50 readings, stride 1)",
        notes="lag from `anomon_fetch_lag` on /metrics; RSS of the daemon process sampled every 0.25 s",
        reproduce="pytest tests/test_backpressure.py")
