"""``anomon bench streaming --peers``: both Kafka backends of anomon and the peers, on the same backlogs.

For each case (robust-zscore, single readings, window 140; by default 100 series x 4,000 readings
at strides 1 and 10, and 10,000 series x 280 readings at stride 10) one backlog is produced, then
every pipeline reads all of it, ``--repeats`` times, interleaved (the order rotates each repeat):

* ``anomon_kafka_python``, ``anomon_confluent``: the daemon end to end (``anomon run`` in-process,
  the real code path) with ``kafka.client`` set explicitly, from its first consumed record to its
  last scored window;
* ``plain_confluent``: the job written by hand on confluent-kafka
  (:func:`monitor.bench.streaming_peers.plain_loop`);
* ``quix``: a Quix Streams application doing the same job, with the interpreter of
  ``--quix-python`` (skipped with a note when it is not given or cannot import quixstreams); it
  stops after ``--quix-max-seconds`` and its rate is then over the readings it processed;
* ``raw_kafka_python``, ``raw_confluent_tuned``, ``raw_confluent_default``: bare consumers of
  both client libraries reading the same records, nothing decoded (librdkafka tuned with
  ``queued.min.messages=1000000``, ``fetch.queue.backoff.ms=10``, and with its defaults).

Each pipeline's rate is the median of its repeats (readings/s; one reading is one record); ratios
are of medians from the same run. Then the confluent backend is fed live at half its median rate
for the produce->score latency (p50/p99), and the memory per idle series is measured on the windower.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monitor.bench import streaming_peers as peers
from monitor.bench.streaming import (
    T,
    _half_load,
    _latency,
    _produce,
    _raw_consume,
    fetch_settings,
    memory_per_idle_series,
    phase,
)

#: (series, stride) of the default cases, and of ``--quick``
CASES = [(100, 1), (100, 10), (10_000, 10)]
QUICK_CASES = [(20, 10)]
QUICK_BUDGET = 20 * 300

PIPELINES = ("anomon_confluent", "anomon_kafka_python", "plain_confluent", "quix", "raw_kafka_python",
             "raw_confluent_tuned", "raw_confluent_default")
#: more pipelines, on request (``--pipelines``): the kafka-python backend on kafka-python's public API only
EXTRA_PIPELINES = ("anomon_kafka_python_public",)

#: goals of issue 20 (robust-zscore, single readings)
GOALS = {"confluent_vs_plain": 1.0, "confluent_vs_raw_tuned_at_stride_10": 0.5, "confluent_vs_kafka_python": 1.0,
         "confluent_vs_quix": 5.0, "latency_p99_ms": 250.0, "memory_per_idle_series_bytes": 1024}


def backlog_shape(n_series: int, stride: int, budget: int) -> tuple[int, int]:
    """``(per_series, windows per series)`` of a case's backlog, as ``run_case`` sizes it: at most
    ``budget`` readings, but at least a window length past each series' first window.

    >>> backlog_shape(100, 1, 400_000), backlog_shape(100, 10, 400_000), backlog_shape(10_000, 10, 400_000)
    ((4000, 3861), (4000, 387), (280, 15))
    """
    k = max(0, (budget // n_series - T) // stride)
    k = max(k, -(-T // stride))
    return T + k * stride, k + 1


def _config(bootstrap: str, topic: str, bundle_path: Path, stride: int, client: str, max_batch: int, tag: str) -> Any:
    from monitor.config import load_config

    g = f"g-{topic}-{tag}"
    return load_config(None, env={}, overrides={
        "kafka.bootstrap_servers": bootstrap, "kafka.client": client, "input.topics": [topic], "input.group_id": g,
        "model.dir": str(bundle_path), "window.stride": stride, "http.enabled": False,
        "scoring.max_batch": max_batch, "scoring.max_wait_ms": 50, "scoring.threshold": "calibrated",
        "output.commit_interval_s": 2.0, "output.scores_topic": f"{topic}.scores",
        "output.alerts_topic": f"{topic}.alerts", "output.dlq_topic": f"{topic}.dlq",
        "input.max_poll_records": 2000, "scoring.drift": True})


def _drain(cfg: Any, n_rec: int, expected: int, then: Any = None) -> dict[str, Any]:
    """The daemon of ``cfg`` through the whole backlog: readings/s from its first consumed record to its
    last scored window; ``then(daemon, e2e_s)`` runs before it stops (the latency feed)."""
    from monitor.runner import start_daemon

    r = start_daemon(cfg, metrics=None)
    d = r.daemon
    extra: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 900
        drained_at = None
        while (d.stats["windows"] < expected or drained_at is None) and time.monotonic() < deadline:
            time.sleep(0.01)
            if r.error is not None:
                raise r.error
            if drained_at is None and d.stats["records"] >= n_rec:
                drained_at = time.monotonic()
        e2e_s = max(d.last_scored_at or 0.0, drained_at or time.monotonic()) - (d.first_record_at or time.monotonic())
        scored = int(d.stats["windows"])
        if then is not None:
            extra = then(d, e2e_s, scored)
    finally:
        r.stop()
    return {"seconds": e2e_s, "windows": scored, "records": int(d.stats["records"]), **extra}


@contextlib.contextmanager
def kafka_python_public() -> Iterator[None]:
    """The kafka-python backend without its private-API patches, for a same-run comparison: no fast fetch
    (``streams/kafka/fetch.py`` and the C record decoder of ``streams/_speedups.c``: kafka-python decodes
    its own records) and no bulk record encoder (``Sink.send_batch`` sends record by record, as it does
    for a kafka-python it does not know). The windower's C ``add_plain`` stays (both backends use it)."""
    import streams.kafka.fetch as kf
    from streams.kafka import Sink

    saved = kf.install_fast_fetch, Sink._bulk_ready
    kf.install_fast_fetch = lambda *a, **k: False
    Sink._bulk_ready = lambda self: False
    try:
        yield
    finally:
        kf.install_fast_fetch, Sink._bulk_ready = saved


def _quix_python(path: str | None) -> tuple[str | None, str | None, str]:
    """``(interpreter, quixstreams version, note)``; the interpreter is None when Quix is skipped."""
    if not path:
        return None, None, "quix: skipped (--quix-python not given; see docs/benchmarks.md for its venv)"
    v = peers.quix_version(path)
    if v is None:
        return None, None, f"quix: skipped ({path} cannot import quixstreams)"
    return path, v, f"quix: quixstreams {v} with {path}"


def run_case(bootstrap: str, bundle_path: Path, n_series: int, stride: int, *, budget: int, repeats: int,
             quix: str | None, quix_max_s: float, latency_s: float, max_batch: int, workdir: Path,
             pipelines: tuple[str, ...] = PIPELINES, latency_clients: tuple[str, ...] = ("confluent",)
             ) -> dict[str, Any]:
    """One case: its backlog, each of ``pipelines`` ``repeats`` times interleaved, medians, ratios, goals, latency."""
    from streams.kafka import KafkaSettings, create_topics

    per_series, k1 = backlog_shape(n_series, stride, budget)
    expected = n_series * k1
    topic = f"peers-{uuid.uuid4().hex[:8]}"
    # retention.ms by hand: Quix derives its changelog topics' retention from the input topic's
    # configs, and the embedded broker describes none unless they were set at creation
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), {topic: 4}, configs={"retention.ms": "604800000"})
    t0_ms = time.time() * 1000 - 3_600_000
    tp = time.monotonic()
    n_rec = _produce(bootstrap, topic, n_series, per_series, "single", t0_ms, stride=stride)
    produce_s = time.monotonic() - tp
    readings = sum(per_series + phase(i, n_series, stride) for i in range(n_series))
    params = peers.scorer_params(bundle_path)
    fetch = fetch_settings(_config(bootstrap, topic, bundle_path, stride, "confluent", max_batch, "probe"))
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PIPELINES + EXTRA_PIPELINES}
    order = [p for p in pipelines if quix or p != "quix"]
    load = [round(os.getloadavg()[0], 2)]

    def one(p: str, r: int) -> dict[str, Any]:
        tag = f"{p}-{r}"
        if p.startswith("anomon_"):
            client = "confluent" if p == "anomon_confluent" else "kafka-python"
            with kafka_python_public() if p == "anomon_kafka_python_public" else contextlib.nullcontext():
                return _drain(_config(bootstrap, topic, bundle_path, stride, client, max_batch, tag), n_rec, expected)
        if p == "plain_confluent":
            return peers.plain_loop(bootstrap, topic, f"{topic}.plain", n_rec, params, stride=stride,
                                    max_poll=fetch["max_poll_records"], fetch_wait_ms=fetch["fetch_max_wait_ms"])
        if p == "quix":
            return peers.run_quix(quix, bootstrap, topic, f"{topic}.quix", n_rec, params, stride=stride,
                                  max_seconds=quix_max_s, workdir=workdir / "quix")
        if p == "raw_kafka_python":
            rate = _raw_consume(bootstrap, topic, n_rec, fetch)
        else:
            rate = peers.raw_consume_confluent(bootstrap, topic, n_rec, tuned=p == "raw_confluent_tuned",
                                               max_poll=fetch["max_poll_records"],
                                               fetch_wait_ms=fetch["fetch_max_wait_ms"])
        return {"records": n_rec, "seconds": n_rec / max(rate, 1e-9)}

    for r in range(repeats):
        for p in order[r % len(order):] + order[:r % len(order)]:  # interleaved: the order rotates
            w0 = time.monotonic()
            try:
                res = one(p, r)
            except Exception as exc:  # noqa: BLE001 - recorded, the others go on
                res = {"error": repr(exc)[:300]}
            res["wall_s"] = time.monotonic() - w0
            if "seconds" in res and res["seconds"]:
                res["readings_per_s"] = round(res["records"] / max(res["seconds"], 1e-9), 1)
            runs[p].append(res)
            print(f"  {n_series} series stride {stride} repeat {r + 1}/{repeats} {p}: "
                  f"{res.get('readings_per_s', res.get('error'))}", flush=True)
        load.append(round(os.getloadavg()[0], 2))

    med = {p: float(np.median([x["readings_per_s"] for x in rs if "readings_per_s" in x]))
           for p, rs in runs.items() if any("readings_per_s" in x for x in rs)}
    out: dict[str, Any] = {
        "detector": "robust-zscore", "form": "single", "series": n_series, "stride": stride, "window": T, "topic": topic,
        "readings": readings, "records": n_rec, "windows_expected": expected, "produce_s": round(produce_s, 2),
        "repeats": repeats, "order": order, "load_average_1m": load,
        "readings_per_s": {p: round(v, 1) for p, v in med.items()},
        "runs": {p: [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in x.items()} for x in rs]
                 for p, rs in runs.items() if rs},
    }
    out["windows_ok"] = {p: all(x.get("windows") == expected for x in runs[p])
                         for p in ("anomon_confluent", "anomon_kafka_python", "anomon_kafka_python_public",
                                   "plain_confluent") if runs[p]}
    if runs["quix"]:
        out["windows_ok"]["quix"] = all(x.get("windows") == expected for x in runs["quix"] if x.get("complete"))
        out["quix_complete"] = all(x.get("complete", False) for x in runs["quix"])
    out["ratios"] = ratios(med)
    out["goals"] = goals(out["ratios"], stride)
    by_client: dict[str, Any] = {}
    # one rate for every client: half the first one's median end-to-end rate (the same load for each)
    m = med.get("anomon_" + latency_clients[0].replace("-", "_")) if latency_clients else None
    for i, client in enumerate(latency_clients if latency_s > 0 and m else ()):
        ltopic = topic
        if i:  # the feed continues every series of the backlog: a later client gets a fresh copy of it
            ltopic = f"peers-{uuid.uuid4().hex[:8]}"
            create_topics(KafkaSettings(bootstrap_servers=bootstrap), {ltopic: 4}, configs={"retention.ms": "604800000"})
            _produce(bootstrap, ltopic, n_series, per_series, "single", t0_ms, stride=stride)
        rate = _half_load(readings, expected, stride, readings / m)
        try:
            by_client[client] = _latency_run(bootstrap, ltopic, bundle_path, stride, max_batch, n_series, n_rec,
                                             expected, latency_s, t0_ms, per_series, rate, client)
        except Exception as exc:  # noqa: BLE001 - recorded
            by_client[client] = {"error": repr(exc)[:300]}
    if by_client:
        out["latency_by_client"] = by_client
    if "confluent" in by_client:
        out["latency"] = by_client["confluent"]
        p99 = out["latency"].get("latency_p99_ms")
        out["goals"]["latency_p99_ms"] = {"goal": GOALS["latency_p99_ms"], "value": p99,
                                          "met": p99 is not None and p99 <= GOALS["latency_p99_ms"]}
    return out


def _latency_run(bootstrap: str, topic: str, bundle_path: Path, stride: int, max_batch: int, n_series: int,
                 n_rec: int, expected: int, latency_s: float, t0_ms: float, per_series: int, rate: float,
                 client: str = "confluent") -> dict[str, Any]:
    """The ``client`` backend drains the backlog once more, then is fed live at ``rate`` readings/s (half its
    median end-to-end rate) for ``latency_s`` seconds: produce->score p50/p99 of the windows scored then."""
    cfg = _config(bootstrap, topic, bundle_path, stride, client, max_batch, f"latency-{client}")

    def then(d: Any, e2e_s: float, scored: int) -> dict[str, Any]:
        return _latency(bootstrap, topic, d, n_series, rate, latency_s, "single", T, t0_ms, per_series, stride)

    return _drain(cfg, n_rec, expected, then=then)


def ratios(med: dict[str, float]) -> dict[str, float | None]:
    """Ratios of median rates (None where a pipeline is missing).

    >>> r = ratios({"anomon_confluent": 200.0, "plain_confluent": 100.0, "quix": 10.0})
    >>> r["confluent_vs_plain"], r["confluent_vs_quix"], r["confluent_vs_kafka_python"]
    (2.0, 20.0, None)
    """
    def q(a: str, b: str) -> float | None:
        return round(med[a] / med[b], 3) if med.get(a) and med.get(b) else None

    return {"confluent_vs_plain": q("anomon_confluent", "plain_confluent"),
            "confluent_vs_raw_tuned": q("anomon_confluent", "raw_confluent_tuned"),
            "confluent_vs_raw_default": q("anomon_confluent", "raw_confluent_default"),
            "confluent_vs_kafka_python": q("anomon_confluent", "anomon_kafka_python"),
            "confluent_vs_quix": q("anomon_confluent", "quix"),
            "kafka_python_vs_plain": q("anomon_kafka_python", "plain_confluent"),
            "kafka_python_vs_raw_kafka_python": q("anomon_kafka_python", "raw_kafka_python"),
            "kafka_python_vs_quix": q("anomon_kafka_python", "quix"),
            "plain_vs_raw_tuned": q("plain_confluent", "raw_confluent_tuned"),
            "kafka_python_vs_kafka_python_public": q("anomon_kafka_python", "anomon_kafka_python_public"),
            "raw_tuned_vs_raw_default": q("raw_confluent_tuned", "raw_confluent_default")}


def goals(r: dict[str, float | None], stride: int) -> dict[str, dict[str, Any]]:
    """The throughput goals of issue 20 for one case: ``{name: {goal, value, met}}`` (``met`` None when
    a pipeline is missing); the raw-consume goal applies at stride 10 only.

    >>> g = goals({"confluent_vs_plain": 1.2, "confluent_vs_raw_tuned": 0.4, "confluent_vs_kafka_python": 1.1,
    ...            "confluent_vs_quix": None}, 10)
    >>> [(k, v["met"]) for k, v in g.items()]
    [('confluent_vs_plain', True), ('confluent_vs_kafka_python', True), ('confluent_vs_quix', None), ('confluent_vs_raw_tuned_at_stride_10', False)]
    """
    def one(name: str, key: str) -> dict[str, Any]:
        v = r.get(key)
        return {"goal": GOALS[name], "value": v, "met": None if v is None else v >= GOALS[name]}

    out = {"confluent_vs_plain": one("confluent_vs_plain", "confluent_vs_plain"),
           "confluent_vs_kafka_python": one("confluent_vs_kafka_python", "confluent_vs_kafka_python"),
           "confluent_vs_quix": one("confluent_vs_quix", "confluent_vs_quix")}
    if stride == 10:
        out["confluent_vs_raw_tuned_at_stride_10"] = one("confluent_vs_raw_tuned_at_stride_10", "confluent_vs_raw_tuned")
    return out


def parse_cases(text: str) -> list[tuple[int, int]]:
    """``--case`` of ``--peers``: ``SERIES,STRIDE[;...]`` (robust-zscore, single readings).

    >>> parse_cases("100,1;10000,10")
    [(100, 1), (10000, 10)]
    """
    out = []
    for one in text.split(";"):
        f = one.split(",")
        if len(f) != 2 or not all(x.strip().isdigit() for x in f):
            from monitor.errors import UserError

            raise UserError(f"--case {one!r}: with --peers a case is SERIES,STRIDE (e.g. 100,10)")
        out.append((int(f[0]), int(f[1])))
    return out


def parse_pipelines(text: str) -> tuple[str, ...]:
    """``--pipelines``: a comma-separated subset of :data:`PIPELINES` and :data:`EXTRA_PIPELINES`.

    >>> parse_pipelines("anomon_kafka_python,anomon_kafka_python_public")
    ('anomon_kafka_python', 'anomon_kafka_python_public')
    """
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in PIPELINES + EXTRA_PIPELINES]
    if bad or not names:
        from monitor.errors import UserError

        raise UserError(f"--pipelines: unknown {', '.join(bad) or 'empty list'}; choose from "
                        f"{', '.join(PIPELINES + EXTRA_PIPELINES)}")
    return names


def run(args: Any, bootstrap: str, bundle_path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """The ``--peers`` run: memory per idle series, then every case; ``results`` filled and returned
    (written to ``args.json_file`` after each case)."""
    import tempfile

    only = parse_cases(args.case) if args.case else None
    if getattr(args, "pipelines", None):
        parse_pipelines(args.pipelines)  # (a bad name fails before anything runs)
    bad = set(getattr(args, "latency_clients", "confluent").split(",")) - {"confluent", "kafka-python"}
    if bad:
        from monitor.errors import UserError

        raise UserError(f"--latency-clients: unknown {', '.join(sorted(bad))}; choose confluent, kafka-python")
    quix, qv, note = _quix_python(args.quix_python)
    print(note, flush=True)
    results.update({"mode": "backends and peers", "repeats": args.repeats, "quix": {"version": qv, "note": note,
                    "max_seconds": args.quix_max_seconds}, "goals": GOALS})
    try:
        import confluent_kafka

        results["client_versions"] = {"confluent-kafka": confluent_kafka.version()[0],
                                      "librdkafka": confluent_kafka.libversion()[0]}
        import kafka

        results["client_versions"]["kafka-python"] = kafka.__version__
    except ImportError:
        pass
    mem = memory_per_idle_series()
    idle = {k: v for k, v in mem.items() if not k.endswith(("_live", "_jitter"))}
    results["memory_per_idle_series_bytes"] = mem
    results["memory_goal"] = {"goal_bytes_per_idle_series": 1024, "idle_regular": idle,
                              "met": all(v <= 1024 for v in idle.values())}
    print(f"memory per idle series (T=140): {mem}", flush=True)
    todo = only or (QUICK_CASES if args.quick else CASES)
    pipelines = parse_pipelines(args.pipelines) if getattr(args, "pipelines", None) else PIPELINES
    budget = min(args.budget, QUICK_BUDGET) if args.quick else args.budget
    with tempfile.TemporaryDirectory() as tmp:
        for n, s in todo:
            try:
                c = run_case(bootstrap, bundle_path, n, s, budget=budget, repeats=args.repeats, quix=quix,
                             quix_max_s=args.quix_max_seconds, latency_s=args.latency_seconds,
                             max_batch=args.max_batch, workdir=Path(tmp), pipelines=pipelines,
                             latency_clients=tuple(getattr(args, "latency_clients", "confluent").split(",")))
            except Exception as exc:  # noqa: BLE001 - report and go on
                c = {"series": n, "stride": s, "error": repr(exc)[:300]}
            results["cases"].append(c)
            print(json.dumps({k: c.get(k) for k in ("series", "stride", "readings_per_s", "ratios", "error")
                              if k in c}), flush=True)
            if args.json_file:
                Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json_file).write_text(json.dumps(results, indent=2))
    print(render_markdown(results), flush=True)
    return results


_NAMES = {"anomon_confluent": "anomon, confluent", "anomon_kafka_python": "anomon, kafka-python",
          "anomon_kafka_python_public": "anomon, kafka-python public API", "plain_confluent": "plain loop",
          "quix": "Quix Streams", "raw_kafka_python": "raw kafka-python", "raw_confluent_tuned": "raw confluent tuned",
          "raw_confluent_default": "raw confluent default"}


def _mark(g: dict[str, Any] | None) -> str:
    if not g or g.get("value") is None:
        return "n/a"
    return f"**{g['value']:g}** {'met' if g['met'] else 'not met'}"


def render_markdown(results: dict[str, Any]) -> str:
    """The ``--peers`` results as two markdown tables: readings/s of every pipeline (medians), then the
    ratios of issue 20's goals, met or not.

    >>> r = {"cases": [{"series": 100, "stride": 10, "readings_per_s": {"anomon_confluent": 2e5, "quix": 1e4},
    ...       "goals": goals({"confluent_vs_quix": 20.0}, 10)}]}
    >>> print(render_markdown(r).splitlines()[2])
    | 100 x stride 10 | 200,000 | 10,000 |
    """
    cases = [c for c in results.get("cases", []) if "readings_per_s" in c]
    names = [p for p in PIPELINES + EXTRA_PIPELINES if any(p in c["readings_per_s"] for c in cases)]
    out = ["| case | " + " | ".join(_NAMES[p] for p in names) + " |", "|---" * (len(names) + 1) + "|"]
    for c in cases:
        rates = c["readings_per_s"]
        cells = [f"{rates[p]:,.0f}" if p in rates else "-" for p in names]
        out.append(f"| {c['series']:,} x stride {c['stride']} | " + " | ".join(cells) + " |")
    if not any("goals" in c for c in cases):
        return "\n".join(out)
    out += ["", "| case | confluent / plain loop (>= 1.0) | confluent / raw confluent tuned (>= 0.5, stride 10) | "
            "confluent / kafka-python backend (>= 1.0) | confluent / Quix (>= 5) | p99 at half load, ms (<= 250) |",
            "|---|---|---|---|---|---|"]
    for c in cases:
        g = c.get("goals", {})
        out.append(f"| {c['series']:,} x stride {c['stride']} | {_mark(g.get('confluent_vs_plain'))} | "
                   f"{_mark(g.get('confluent_vs_raw_tuned_at_stride_10'))} | {_mark(g.get('confluent_vs_kafka_python'))} | "
                   f"{_mark(g.get('confluent_vs_quix'))} | {_mark(g.get('latency_p99_ms'))} |")
    return "\n".join(out)
