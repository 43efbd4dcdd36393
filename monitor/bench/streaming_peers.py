"""The peers of ``anomon bench streaming --peers``: the same job written by hand and with Quix Streams.

The job, as ``anomon run`` does it with the bench's robust-zscore bundle: read single-reading JSON
records (``{"series", "ts", "value"}``) from a topic, keep each series' last ``length`` values, score
every ``stride``-th complete window with the bundle's fitted robust z-score (``max_abs_z``,
``mean_sq_z``; higher = more anomalous), and write one JSON score record per window to an output
topic.

* :func:`plain_loop`: the written-by-hand alternative on confluent-kafka: ``orjson`` decoding,
  per-series numpy rings of the last ``length`` values, the windows of one ``consume()`` call
  scored as one numpy batch, one ``orjson`` record produced per window; librdkafka tuned
  (:data:`QUEUE_TUNING`) with the daemon's fetch wait and batch size, auto commit.
* :func:`quix_main`: a Quix Streams application (``python -m monitor.bench.streaming_peers quix ...``),
  stateful ``apply`` with the per-key last ``length`` values in its state store. It runs with
  its own interpreter (quixstreams pins a confluent-kafka older than ours: it lives in a venv of
  its own), so this module imports nothing of anomon at its top.
* :func:`raw_consume_confluent`: a bare confluent-kafka consumer reading the records, nothing
  decoded, librdkafka tuned or with its defaults.

The scoring is :func:`robust_z`, the arithmetic of ``models.statistical.RobustZScore`` on the
parameters :func:`scorer_params` takes from the bundle.

>>> import numpy as np
>>> p = {"median": [0.0, 0.0], "scale": [1.0, 2.0], "constant": [False, False], "constant_z": 6.0}
>>> mx, ms = robust_z(np.array([[1.0, -4.0]]), p)
>>> float(mx[0]), float(ms[0])
(2.0, 2.5)
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

#: librdkafka consumer queue settings of the tuned runs (the same as streams.kafka.confluent.QUEUE_TUNING)
QUEUE_TUNING = {"queued.min.messages": 1_000_000, "fetch.queue.backoff.ms": 10}
#: the daemon's group session settings (input.session_timeout_ms, input.heartbeat_interval_ms) for the peers'
#: groups: with librdkafka's 45 s default session a group took 23 s to start reading on the embedded broker
GROUP_TIMING = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}


def scorer_params(bundle_path: str | Path) -> dict[str, Any]:
    """The robust z-score of the bundle at ``bundle_path`` as plain numbers: ``median``, ``scale``,
    ``constant`` (per window step), ``constant_z``, ``thresholds`` and the ``alert`` component."""
    from monitor.modelstore import load_bundle

    b = load_bundle(Path(bundle_path))
    det = b.detector
    if det.name != "robust-zscore" or b.normalize != "none" or b.decimate != 1 or b.channels != 1:
        raise ValueError(f"{bundle_path}: the peers implement a one-channel robust-zscore bundle without "
                         f"normalisation; got {det.name}, normalize={b.normalize}, decimate={b.decimate}")
    const = getattr(det, "constant_", None)
    return {"median": det.median_.tolist(), "scale": det.scale_.tolist(),
            "constant": (const if const is not None else np.zeros(len(det.median_), bool)).tolist(),
            "constant_z": float(det.constant_z), "thresholds": dict(b.thresholds),
            "alert": b.alert_components[0], "length": b.length}


def robust_z(X: np.ndarray, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(max_abs_z, mean_sq_z)`` of windows ``X`` (n, length): ``RobustZScore._score``'s arithmetic."""
    med = p.get("_median")
    if med is None:  # arrays cached in the dict on first use
        p["_median"], p["_scale"] = np.asarray(p["median"]), np.asarray(p["scale"])
        p["_const"] = np.asarray(p["constant"], dtype=bool)
        med = p["_median"]
    z = X - med
    z /= p["_scale"]
    const = p["_const"]
    if const.any():
        z[:, const] = np.sign(z[:, const]) * p["constant_z"]
    mean_sq = (z * z).mean(axis=1)
    return np.abs(z, out=z).max(axis=1), mean_sq


def _ms(us: int) -> int | float:
    return us // 1000 if us % 1000 == 0 else us / 1000


def _record(series: str, start_ts: float, end_ts: float, mx: float, ms: float, thr: dict, alert: str,
            partition: int) -> dict[str, Any]:
    """A score record as anomon writes it (id ``SERIES@END_US``, times in ms), without model/version/scored_at."""
    start_us, end_us = round(start_ts * 1000), round(end_ts * 1000)
    scores = {"max_abs_z": mx, "mean_sq_z": ms}
    return {"id": f"{series}@{end_us}", "series": series, "start_ts": _ms(start_us), "end_ts": _ms(end_us),
            "scores": scores,
            "thresholds": thr, "anomalous": bool(scores[alert] > thr.get(alert, float("inf"))),
            "partition": partition}


def _partitions(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        md = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.partitions and md.error is None:
            return sorted(md.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r}: no partitions")
        time.sleep(0.2)


def raw_consume_confluent(bootstrap: str, topic: str, n_records: int, *, tuned: bool, max_poll: int = 2000,
                          fetch_wait_ms: int = 50, timeout_s: float = 300.0) -> float:
    """Records/s of a bare confluent-kafka consumer (no group, every partition from the start), nothing
    decoded; librdkafka tuned (:data:`QUEUE_TUNING`) or with its defaults. Timed from the first record."""
    import confluent_kafka

    conf = {"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "fetch.wait.max.ms": fetch_wait_ms, **(QUEUE_TUNING if tuned else {})}
    c = confluent_kafka.Consumer(conf)
    try:
        c.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                  for p in _partitions(c, topic)])
        got, t0 = 0, None
        t_start = time.monotonic()
        deadline = t_start + timeout_s
        while got < n_records and time.monotonic() < deadline:
            msgs = c.consume(max_poll, 0.05)  # (consume waits for max_poll records or the timeout)
            if msgs and t0 is None:
                t0 = time.monotonic()
            got += sum(1 for m in msgs if m.error() is None)
        dt = time.monotonic() - (t0 or t_start)
    finally:
        c.close()
    return got / max(dt, 1e-9)


def plain_loop(bootstrap: str, topic: str, out_topic: str, n_records: int, params: dict[str, Any], *, stride: int,
               max_poll: int = 2000, fetch_wait_ms: int = 50, linger_ms: int = 5, timeout_s: float = 600.0
               ) -> dict[str, Any]:
    """The job written by hand on confluent-kafka (see the module docstring), until ``n_records`` are read.

    Returns ``records``, ``windows``, ``errors`` (records that were not a reading, counted) and
    ``seconds``: from the first consumed record to the last score record's delivery (``flush``).
    """
    import confluent_kafka
    import orjson

    length = int(params["length"])
    thr, alert = dict(params["thresholds"]), params["alert"]
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"plain-{uuid.uuid4().hex[:8]}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                                  "fetch.wait.max.ms": fetch_wait_ms, **QUEUE_TUNING, **GROUP_TIMING})
    prod = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    loads, dumps, produce = orjson.loads, orjson.dumps, prod.produce
    rings: dict[str, list] = {}  # series -> [values (2 x length), timestamps (2 x length), readings seen]
    got = windows = errors = 0
    t0 = None
    t_start = time.monotonic()
    try:
        c.subscribe([topic])
        while got < n_records and time.monotonic() - t_start < timeout_s:
            msgs = c.consume(max_poll, 0.05)  # (consume waits for max_poll records or the timeout)
            if not msgs:
                continue
            if t0 is None:
                t0 = time.monotonic()
            wins: list[np.ndarray] = []
            meta: list[tuple] = []
            for m in msgs:
                if m.error() is not None:
                    continue
                got += 1
                try:
                    d = loads(m.value())
                    s, ts, v = d["series"], d["ts"], float(d["value"])
                except (ValueError, KeyError, TypeError):
                    errors += 1
                    continue
                r = rings.get(s)
                if r is None:
                    r = rings[s] = [np.empty(2 * length), np.empty(2 * length), 0]
                vals, tss, n = r
                i = n % length
                vals[i] = vals[i + length] = v  # the last `length` values are vals[i+1 : i+1+length]
                tss[i] = tss[i + length] = ts
                n += 1
                r[2] = n
                if n >= length and (n - length) % stride == 0:
                    wins.append(vals[i + 1:i + 1 + length])
                    meta.append((s, float(tss[i + 1]), ts, m.key(), m.partition()))
            if wins:
                mx, ms = robust_z(np.stack(wins), params)
                for (s, start, end, key, part), a, b in zip(meta, mx.tolist(), ms.tolist()):
                    rec = dumps(_record(s, start, end, a, b, thr, alert, part))
                    while True:
                        try:
                            produce(out_topic, rec, key)
                            break
                        except BufferError:  # the producer's queue is full: let it deliver
                            prod.poll(0.05)
                windows += len(wins)
                prod.poll(0)
        left = prod.flush(60)
        if left:
            raise RuntimeError(f"plain loop: {left} score records not delivered")
        dt = time.monotonic() - (t0 or t_start)
    finally:
        c.close()
    return {"records": got, "windows": windows, "errors": errors, "seconds": dt}


# --------------------------------------------------------------------------- Quix Streams
def quix_main(argv: list[str] | None = None) -> int:
    """The Quix Streams application (run with the interpreter of a venv that has quixstreams); prints
    one ``QUIX {json}`` line: ``version``, ``records``, ``windows``, ``seconds`` (first record to the
    last record processed), ``complete`` (False when ``--max-seconds`` stopped it first)."""
    ap = argparse.ArgumentParser(prog="streaming_peers quix")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--params", required=True, help="JSON file of scorer_params()")
    ap.add_argument("--stride", type=int, required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    a = ap.parse_args(argv)

    import logging

    import quixstreams
    from quixstreams import Application
    from quixstreams.models.topics import TopicConfig

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    params = json.loads(Path(a.params).read_text())
    length, stride = int(params["length"]), a.stride
    thr, alert = dict(params["thresholds"]), params["alert"]
    # the embedded broker (Tansu) describes no topic configs: Quix's changelog topics copy
    # retention.ms from the source topic, so it is set on every topic Quix creates or reads
    retention = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}
    app = Application(broker_address=a.bootstrap, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=a.state_dir, loglevel="WARNING",
                      consumer_extra_config=dict(GROUP_TIMING))
    inp = app.topic(a.topic, value_deserializer="json", key_deserializer="bytes",
                    config=TopicConfig(num_partitions=4, replication_factor=1, extra_config=retention))
    out = app.topic(a.out_topic, value_serializer="json", key_serializer="bytes",
                    config=TopicConfig(num_partitions=4, replication_factor=1, extra_config=retention))
    seen = {"records": 0, "windows": 0, "t0": None, "t_last": None}
    deadline: list[float] = []

    def window(value: dict, state: Any) -> dict | None:
        now = time.monotonic()
        if seen["t0"] is None:
            seen["t0"] = now
            deadline.append(now + a.max_seconds)
        seen["records"] += 1
        vals = state.get("v", [])
        tss = state.get("t", [])
        vals.append(float(value["value"]))
        tss.append(value["ts"])
        if len(vals) > length:
            del vals[0], tss[0]
        n = state.get("n", 0) + 1
        state.set("v", vals)
        state.set("t", tss)
        state.set("n", n)
        rec = None
        if n >= length and (n - length) % stride == 0:
            mx, ms = robust_z(np.asarray(vals, dtype=float)[None, :], params)
            rec = _record(value["series"], tss[0], tss[-1], float(mx[0]), float(ms[0]), thr, alert, -1)
            seen["windows"] += 1
        seen["t_last"] = time.monotonic()
        if seen["records"] >= a.records or seen["t_last"] > deadline[0]:
            app.stop()
        return rec

    sdf = app.dataframe(inp)
    sdf = sdf.apply(window, stateful=True).filter(lambda v: v is not None)
    sdf.to_topic(out)

    def watchdog() -> None:  # nothing read at all: stop anyway
        time.sleep(a.max_seconds + 60)
        app.stop()

    threading.Thread(target=watchdog, daemon=True).start()
    app.run()
    t0, t1 = seen["t0"], seen["t_last"]
    print("QUIX " + json.dumps({"version": quixstreams.__version__, "records": seen["records"],
                                "windows": seen["windows"], "seconds": (t1 - t0) if t0 and t1 else None,
                                "complete": seen["records"] >= a.records}), flush=True)
    return 0


def quix_version(python: str) -> str | None:
    """The quixstreams version importable by the interpreter ``python``, else None."""
    import subprocess

    try:
        done = subprocess.run([python, "-c", "import quixstreams; print(quixstreams.__version__)"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_quix(python: str, bootstrap: str, topic: str, out_topic: str, n_records: int, params: dict[str, Any], *,
             stride: int, max_seconds: float, workdir: Path) -> dict[str, Any]:
    """:func:`quix_main` in a subprocess of ``python`` (this repository on its path); its result dict."""
    import os
    import subprocess

    workdir.mkdir(parents=True, exist_ok=True)
    pfile = workdir / "params.json"
    pfile.write_text(json.dumps({k: v for k, v in params.items() if not k.startswith("_")}))
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1")
    cmd = [python, "-m", "monitor.bench.streaming_peers", "quix", "--bootstrap", bootstrap, "--topic", topic,
           "--out-topic", out_topic, "--records", str(n_records), "--params", str(pfile), "--stride", str(stride),
           "--state-dir", str(workdir / f"state-{uuid.uuid4().hex[:6]}"), "--max-seconds", str(max_seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max_seconds + 240)
    for line in done.stdout.splitlines():
        if line.startswith("QUIX "):
            return json.loads(line[5:])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"the Quix app exited {done.returncode} without a result: {tail[0]}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "quix":
        sys.exit(quix_main(sys.argv[2:]))
    sys.exit("usage: python -m monitor.bench.streaming_peers quix --help")
