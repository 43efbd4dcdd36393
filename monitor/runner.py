"""Process-level wrapper of the daemon: embedded broker, metrics, HTTP endpoints, signals.

:func:`start_daemon` builds everything and runs :class:`monitor.daemon.Daemon` in a thread
(in-process use: tests, the demo, the benchmark); :func:`run_forever` is ``anomon run``:
the daemon on the main thread, SIGTERM/SIGINT drain and commit, SIGHUP reloads the model.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from monitor.config import Config

log = logging.getLogger("anomon.runner")


@dataclass
class Running:
    """A daemon running in a thread, with its broker (if embedded), metrics and HTTP server."""

    daemon: Any
    thread: threading.Thread | None
    metrics: Any
    http: Any = None
    broker: Any = None
    result: dict = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def stop(self, timeout: float = 60.0) -> dict:
        """Drain, commit and stop; returns the daemon's stats. Raises what the daemon raised."""
        self.daemon.stop()
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                raise TimeoutError("daemon did not stop in time")
        if self.http:
            self.http.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.error:
            raise self.error
        return self.result


def ensure_broker(cfg: Config, bootstrap: str | None = None, *, wait_s: float | None = None) -> tuple[str, Any]:
    """The bootstrap servers to use; starts the embedded broker when none is configured.

    ``wait_s``: wait that long for a configured broker to answer, else raise
    :class:`~monitor.errors.UnavailableError` (``anomon run``: ``kafka.startup_timeout_s``)."""
    bs = bootstrap or cfg.kafka.bootstrap_servers
    if bs:
        if wait_s is not None:
            from monitor.preflight import wait_for_broker

            wait_for_broker(bs, wait_s)
        return bs, None
    from streams.broker import DEFAULT_HOST, EmbeddedBroker, kafka_answers, port_in_use, stable_port

    port = stable_port()
    if port is not None and port_in_use(DEFAULT_HOST, port):
        addr = f"{DEFAULT_HOST}:{port}"
        if kafka_answers(addr):  # an `anomon broker` (or another Kafka) already serves this machine
            log.info("no kafka.bootstrap_servers configured: using the broker already running at %s", addr)
            return addr, None
        log.warning("port %d is taken by something that is not a Kafka broker: the embedded broker takes a free port",
                    port)
        port = None
    b = EmbeddedBroker(port=port).start()
    log.info("no kafka.bootstrap_servers configured: started the embedded broker on %s (stop it with the daemon; "
             "`anomon replay ... --bootstrap-servers %s` produces to it)", b.bootstrap, b.bootstrap)
    return b.bootstrap, b


def make_metrics(registry: Any = None) -> Any:
    try:
        from prometheus_client import CollectorRegistry

        from monitor.metrics import AnomonMetrics
    except ImportError:  # pragma: no cover
        return None
    from streams.records import REASONS

    return AnomonMetrics(registry or CollectorRegistry(), dlq_reasons=(*REASONS, "no_model"))


def build(cfg: Config, *, bootstrap: str | None = None, model: Any = None, http: bool | None = None,
          metrics: Any = None, name: str | None = None, wait_s: float | None = None) -> Running:
    """Build the daemon (and broker, metrics, HTTP server) without starting its loop."""
    from monitor.daemon import Daemon

    bs, broker = ensure_broker(cfg, bootstrap, wait_s=wait_s)
    try:
        metrics = metrics if metrics is not None else make_metrics()
        if cfg.models:  # many models: one lane each (monitor/lanes.py); ``model``: {name: Bundle}
            from monitor.lanes import Lanes

            d = Lanes(cfg, bootstrap=bs, models=model, metrics=metrics, name=name)
        else:
            d = Daemon(cfg, bootstrap=bs, model=model, metrics=metrics, name=name)
        srv = None
        if cfg.http.enabled if http is None else http:
            from monitor.health import HealthServer

            srv = HealthServer(metrics.exposition if metrics else (lambda: (b"", "text/plain")),
                               alive=lambda: d.alive, ready=d.readiness)
            port = srv.start(cfg.http.host, cfg.http.port)
            log.info("serving /metrics /healthz /readyz on http://%s:%d", cfg.http.host, port)
    except BaseException:
        if broker is not None:
            broker.stop()
        raise
    return Running(daemon=d, thread=None, metrics=metrics, http=srv, broker=broker)


def start_daemon(cfg: Config, **kw: Any) -> Running:
    """Build and run the daemon in a background thread (in-process)."""
    r = build(cfg, **kw)

    def target() -> None:
        try:
            r.result = r.daemon.run()
        except BaseException as exc:  # noqa: BLE001 - reported by Running.stop
            log.exception("daemon failed")
            r.error = exc

    r.thread = threading.Thread(target=target, name="anomon-daemon", daemon=True)
    r.thread.start()
    return r


def run_forever(cfg: Config, *, bootstrap: str | None = None, report: str | None = None) -> dict:
    """``anomon run``: the daemon on this thread until SIGTERM/SIGINT; SIGHUP reloads the model.

    ``report``: a file for the supervisor of ``anomon run --workers N`` (:mod:`monitor.workers`):
    ``{"state": "running", "http_port": ..., "windows": ..., "first_record_at": ..., "last_scored_at": ...}``
    every half second while serving, with the final ``stats`` at exit (``"state": "stopped"``)."""
    import os

    from monitor.workers import WORKER_ENV, write_report

    worker = os.environ.get(WORKER_ENV)
    r = build(cfg, bootstrap=bootstrap, name=f"anomon-w{worker}-{os.getpid()}" if worker is not None else None,
              wait_s=cfg.kafka.startup_timeout_s)
    d = r.daemon

    def on_term(signum, _frame):
        log.info("signal %s: draining", signal.Signals(signum).name)
        d.stop()

    def on_hup(_signum, _frame):
        log.info("SIGHUP: reloading the model")
        d.request_reload()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    # The loop runs in a worker thread (as in-process daemons do); the main thread only waits
    # for signals. torch's intra-op threading is also markedly faster off the main thread here.
    box: dict = {}

    def target() -> None:
        try:
            box["stats"] = d.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, name="anomon-daemon")
    try:
        t.start()
        # the report, rewritten every half second while running (monotonic seconds: one clock for every
        # process of this host, CLOCK_MONOTONIC)
        def progress(state: str, **more: Any) -> None:
            write_report(report, {"state": state, "pid": os.getpid(), "http_port": r.http_port,
                                  "windows": d.stats["windows"], "first_record_at": d.first_record_at,
                                  "last_scored_at": d.last_scored_at, **more})

        if report:
            progress("running")
        while t.is_alive():
            t.join(0.5)
            if report and t.is_alive():
                progress("running")
        if "error" in box:
            raise box["error"]
        stats = box["stats"]
        if report:
            progress("stopped", stats=stats)
    finally:
        if r.http:
            r.http.stop()
        if r.broker is not None:
            r.broker.stop()
    log.info("stopped", extra=stats)
    return stats
