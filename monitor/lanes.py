"""Many models in one daemon (``[[models]]``): one lane per model, run side by side in one process.

A lane is a :class:`monitor.daemon.Daemon` of its own for one entry: its bundle (hot-reloaded on its
own), its window length and stride, thresholds, alert state, progress topic and consumer group
(``<input.group_id>.<name>``, so each model commits its own offsets and a restart of one replays only
its windows). Each lane reads the input topics its entry can match and keeps the readings routed to it
(:class:`monitor.routing.LaneFilter`); the first lane reading a topic dead-letters that topic's readings
no entry matches (reason ``no_model``). Every lane writes to the same scores, alerts and dead-letter
topics, its records naming its model and version; metrics carry the ``model`` label, and the
process-wide gauges are combined (lag: the slowest lane's; series and pending windows: summed; ready:
every lane).

The cost of keeping lanes apart: each lane reads the topics it may match, so N lanes on one topic read
it N times (the decoder skips other lanes' readings by key before decoding). Route by topic where you
can.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from monitor.config import Config, _apply_one
from monitor.errors import ConfigError
from monitor.routing import LaneFilter, ModelEntry, Router

log = logging.getLogger("anomon.lanes")


def lane_config(cfg: Config, entry: ModelEntry, router: Router) -> Config:
    """The config of ``entry``'s lane: its bundle, group, topics, progress/repartition topics, overrides."""
    c = copy.deepcopy(cfg)
    c.models = []
    c.model.dir = entry.dir
    c.input.group_id = f"{cfg.input.group_id}.{entry.name}"
    c.input.topics = router.topics_of(entry.name, cfg.input.topics)
    if cfg.output.progress_topic:
        c.output.progress_topic = f"{cfg.output.progress_topic}.{entry.name}"
    if cfg.input.repartition_topic:
        c.input.repartition_topic = f"{cfg.input.repartition_topic}.{entry.name}"
    where = f"{cfg.sources.get('models', 'config')} (models {entry.name})"
    for dotted, value in entry.overrides.items():  # converted and sourced as any setting of the file
        _apply_one(c, *dotted.split("."), value, where)
    from monitor.config import validate

    validate(c)
    return c


class _Hub:
    """The process-wide gauges of several lanes, combined (see :class:`LaneMetrics`)."""

    def __init__(self, metrics: Any):
        self.m = metrics
        self.lock = threading.Lock()
        self.lags: dict[str, dict[tuple[str, int], tuple[float, float]]] = {}
        self.assigned: dict[str, set] = {}
        self.series: dict[str, tuple[int, int]] = {}
        self.ready: dict[str, bool] = {}


class LaneMetrics:
    """One lane's view of the shared :class:`monitor.metrics.AnomonMetrics`: model-labelled metrics go
    through unchanged; lag, assignment, series counts and readiness are combined over the lanes."""

    def __init__(self, hub: _Hub, lane: str):
        self._hub = hub
        self._lane = lane

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hub.m, name)

    def set_position(self, topic: str, partition: int, position: int, highwater: int | None,
                     committed: int | None = None) -> None:
        if highwater is None or position is None:
            return
        h = self._hub
        key = (str(topic), int(partition))
        with h.lock:
            h.lags.setdefault(self._lane, {})[key] = (
                highwater - (committed if committed is not None else position), highwater - position)
            cons = max(v[key][0] for v in h.lags.values() if key in v)
            fetch = max(v[key][1] for v in h.lags.values() if key in v)
        h.m.set_lag(topic, partition, cons)
        h.m.fetch_lag.labels(topic=key[0], partition=str(key[1])).set(max(0.0, float(fetch)))

    def set_assignment(self, partitions: Any) -> None:
        h = self._hub
        with h.lock:
            h.assigned[self._lane] = {(str(t), int(p)) for t, p in partitions}
            for lane, lags in h.lags.items():
                for k in [k for k in lags if k not in h.assigned.get(lane, set())]:
                    del lags[k]
            union = set().union(*h.assigned.values())
        h.m.set_assignment(union)

    def set_series_state(self, tracked: int, pending_windows: int | None = None) -> None:
        h = self._hub
        with h.lock:
            h.series[self._lane] = (int(tracked), int(pending_windows or 0))
            t = sum(v[0] for v in h.series.values())
            p = sum(v[1] for v in h.series.values())
        h.m.set_series_state(t, p)

    def set_ready(self, ready: bool) -> None:
        h = self._hub
        with h.lock:
            h.ready[self._lane] = bool(ready)
            r = all(h.ready.values())
        h.m.set_ready(r)


class Lanes:
    """Several model lanes as one daemon: ``run``, ``stop``, ``readiness``, ``stats`` like a :class:`Daemon`."""

    def __init__(self, cfg: Config, *, bootstrap: str | None = None, models: dict[str, Any] | None = None,
                 metrics: Any = None, name: str | None = None):
        from monitor.daemon import Daemon

        if not cfg.models:
            raise ConfigError("models: no [[models]] entries")
        self.cfg = cfg
        self.router = Router(cfg.models)
        hub = _Hub(metrics) if metrics is not None else None
        self.lanes: dict[str, Daemon] = {}
        for e in cfg.models:
            lc = lane_config(cfg, e, self.router)
            # each lane its own Router: its route cache is used by that lane's thread alone
            lane = LaneFilter(Router(cfg.models), e.name, cfg.input.topics)
            self.lanes[e.name] = Daemon(lc, bootstrap=bootstrap, model=(models or {}).get(e.name),
                                        metrics=LaneMetrics(hub, e.name) if hub is not None else None,
                                        name=f"{name or 'anomon'}-{e.name}", lane=lane)
        self._threads: list[threading.Thread] = []
        self._errors: dict[str, BaseException] = {}
        self._stop = threading.Event()

    # the Daemon-like surface used by monitor.runner, the health server and the worker pool
    @property
    def alive(self) -> bool:
        return all(d.alive for d in self.lanes.values()) and not self._errors

    def readiness(self) -> tuple[bool, str]:
        res = {n: d.readiness() for n, d in self.lanes.items()}
        ok = all(r for r, _ in res.values())
        return ok, "ready" if ok else "; ".join(f"{n}: {m}" for n, (r, m) in res.items() if not r)

    @property
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in self.lanes.values():
            for k, v in d.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def first_record_at(self) -> float | None:
        ts = [d.first_record_at for d in self.lanes.values() if d.first_record_at is not None]
        return min(ts) if ts else None

    @property
    def last_scored_at(self) -> float | None:
        ts = [d.last_scored_at for d in self.lanes.values() if d.last_scored_at is not None]
        return max(ts) if ts else None

    @property
    def started(self) -> bool:
        return all(d.started for d in self.lanes.values())

    def request_reload(self) -> None:
        for d in self.lanes.values():
            d.request_reload()

    def stop(self) -> None:
        self._stop.set()
        for d in self.lanes.values():
            d.stop()

    def run(self) -> dict[str, Any]:
        """Run every lane until :meth:`stop` (or until one fails: the others drain); returns the stats,
        summed, with each lane's under ``"lanes"``."""
        results: dict[str, dict] = {}

        def target(name: str, d: Any) -> None:
            try:
                results[name] = d.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
                log.error("model lane %s failed (%s: %s); the other lanes drain", name, type(exc).__name__, exc)
                self._errors[name] = exc
                self.stop()

        self._threads = [threading.Thread(target=target, args=(n, d), name=f"anomon-lane-{n}", daemon=True)
                         for n, d in self.lanes.items()]
        for t in self._threads:
            t.start()
        log.info("serving %d models: %s", len(self.lanes), ", ".join(
            f"{n} ({d.bundle.name} {d.bundle.version}, topics {','.join(d.cfg.input.topics)})"
            for n, d in self.lanes.items()))
        while any(t.is_alive() for t in self._threads):
            for t in self._threads:
                t.join(0.2)
        if self._errors:
            raise next(iter(self._errors.values()))
        out = self.stats
        out["lanes"] = results
        return out

    def lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.lanes.values():
            for k, v in d.lag().items():
                out[k] = max(out.get(k, 0), v)
        return out

    def wait_started(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.started:
                return True
            time.sleep(0.05)
        return False
