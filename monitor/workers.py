"""``anomon run --workers N``: N daemon processes in one consumer group, under one supervisor.

One daemon process runs its Kafka client, decoding, windowing and output on one Python interpreter;
at stride 1 (a window, and so a score record, per reading) that interpreter is the limit long before
Kafka is. Kafka's own way to use more cores is more members of the consumer group, each owning some
partitions: :class:`WorkerPool` starts ``N`` ``anomon run`` processes with the same effective
config in one group and acts as one daemon towards its operator:

- the embedded broker, when no ``kafka.bootstrap_servers`` is configured, is started once, by the
  supervisor, and every worker uses it;
- ``/metrics`` on ``http.host:http.port`` is every worker's metrics (each sample with a ``worker``
  label, ``"0"`` .. ``"N-1"``: bounded, never a series) plus the supervisor's own
  (``anomon_workers``, ``anomon_worker_restarts_total``); the workers serve theirs on free loopback
  ports of their own;
- ``/healthz`` is ok while every running worker answers its own ``/healthz``; ``/readyz`` once all
  ``N`` are ready;
- SIGTERM/SIGINT reach every worker, each drains and commits (as a single daemon does), and the
  supervisor waits for them; SIGHUP reaches every worker (each reloads the model);
- a worker that dies is started again (the group rebalances, and its partitions' windows resume
  from their committed offsets, as after any crash), after a back-off that doubles up to 30 s;
  a worker that fails three times in a row before it ever served stops the pool (a bad model
  bundle, say), with its exit code.

Partitions, not records, are what is shared: ``N`` above the input's partition count leaves
workers idle.

>>> merged = merge_expositions({0: "# TYPE anomon_up gauge\\nanomon_up 1.0\\n",
...                             1: "# TYPE anomon_up gauge\\nanomon_up 0.0\\n"})
>>> print(merged.decode().strip())
# HELP anomon_up 
# TYPE anomon_up gauge
anomon_up{worker="0"} 1.0
anomon_up{worker="1"} 0.0
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.config import ENV_PREFIX, Config
from monitor.errors import UserError

log = logging.getLogger("anomon.workers")

#: environment variable telling a worker process its index (logs carry it as ``worker``)
WORKER_ENV = "ANOMON_WORKER_INDEX"
#: consecutive failures before serving after which the pool gives up
MAX_EARLY_FAILURES = 3


class WorkerPoolError(UserError):
    """The worker pool could not keep its workers running (they fail before serving)."""


def merge_expositions(texts: dict[int, str], extra: bytes = b"") -> bytes:
    """Prometheus text expositions of several workers as one, each sample labelled ``worker``.

    Families keep their type and help; a family that several workers expose is written once with
    all their samples. ``extra``: an exposition appended as is (the supervisor's own metrics).
    """
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    fams: dict[str, Any] = {}
    for w in sorted(texts):
        for fam in text_string_to_metric_families(texts[w]):
            have = fams.get(fam.name)
            if have is None:
                have = fams[fam.name] = fam
                samples, fam.samples = fam.samples, []
            else:
                samples = fam.samples
            for s in samples:
                have.samples.append(s._replace(labels={**s.labels, "worker": str(w)}))

    class _Merged:
        def collect(self):
            return list(fams.values())

    return generate_latest(_Merged()) + extra  # type: ignore[arg-type]


@dataclass
class Worker:
    """One worker process and what the supervisor knows of it."""

    index: int
    report: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    served: bool = False  # it reported running since its last start
    http_port: int | None = None
    early_failures: int = 0
    next_start: float = 0.0
    backoff_s: float = 1.0
    final: dict = field(default_factory=dict)

    def read_report(self) -> dict:
        try:
            return json.loads(self.report.read_text())
        except (OSError, ValueError):
            return {}


class WorkerPool:
    """``n`` ``anomon run`` processes with ``cfg`` in one consumer group (see the module docstring).

    ``argv_prefix``: the command that runs the ``anomon`` CLI (default: this interpreter with
    ``-m monitor.cli``); ``log_args``: its logging flags, passed on.
    """

    def __init__(self, cfg: Config, n: int, *, bootstrap: str, log_args: tuple[str, ...] = (),
                 argv_prefix: tuple[str, ...] | None = None, registry: Any = None):
        self.cfg = cfg
        self.n = int(n)
        self.bootstrap = bootstrap
        self.log_args = tuple(log_args)
        self.argv_prefix = tuple(argv_prefix) if argv_prefix else (sys.executable, "-m", "monitor.cli")
        self._dir = Path(tempfile.mkdtemp(prefix="anomon-workers-"))
        self._config_path = self._dir / "worker-config.yaml"
        self.workers = [Worker(i, self._dir / f"worker-{i}.json") for i in range(self.n)]
        self._stopping = False
        self._lock = threading.RLock()
        self.error: BaseException | None = None
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry if registry is not None else CollectorRegistry()
        self._g_workers = Gauge("anomon_workers", "Worker processes of this anomon run, by state (running: "
                                "serving; starting: started, not yet serving; down: waiting to be restarted)",
                                ["state"], registry=self.registry)
        self._c_restarts = Counter("anomon_worker_restarts", "Worker processes started again after they died",
                                   registry=self.registry)
        self._fetch = ThreadPoolExecutor(max(1, self.n), thread_name_prefix="anomon-workers-scrape")

    # ------------------------------------------------------------------ processes
    def _write_config(self) -> None:
        """The effective config, as every worker runs it: this pool's broker, a free loopback port of
        its own for /metrics, one worker (JSON is YAML; secrets are not in it: only the names of the
        environment variables or files that hold them)."""
        d = self.cfg.to_dict()
        d["kafka"]["bootstrap_servers"] = self.bootstrap
        d["http"]["port"] = 0
        d["http"]["host"] = "127.0.0.1"
        d["run"]["workers"] = 1
        if self.cfg.models:
            d["models"] = [e.raw for e in self.cfg.models]
        self._config_path.write_text(json.dumps(d, indent=1))

    def _env(self, i: int) -> dict[str, str]:
        """This process's environment without config variables (the config file has their effect
        already; ``ANOMON_HTTP__PORT`` would give every worker the supervisor's port), with the index."""
        env = {k: v for k, v in os.environ.items() if not (k.startswith(ENV_PREFIX) and "__" in k)}
        env[WORKER_ENV] = str(i)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _spawn(self, w: Worker) -> None:
        try:
            w.report.unlink()
        except FileNotFoundError:
            pass
        argv = [*self.argv_prefix, *self.log_args, "run", "--config", str(self._config_path),
                "--worker-report", str(w.report)]
        w.proc = subprocess.Popen(argv, env=self._env(w.index), stdin=subprocess.DEVNULL,
                                  preexec_fn=_term_with_parent if sys.platform.startswith("linux") else None)
        w.started_at = time.monotonic()
        w.served, w.http_port = False, None
        log.info("worker %d started (pid %d)", w.index, w.proc.pid, extra={"worker_index": w.index, "pid": w.proc.pid})

    def start(self) -> WorkerPool:
        if self.n < 1:
            raise ValueError(f"run.workers must be >= 1, got {self.n}")
        self._write_config()
        if self.cfg.kafka.create_topics:  # once here, not N times at once in the workers
            from monitor.daemon import create_daemon_topics

            create_daemon_topics(self.cfg, self.cfg.kafka_settings(self.bootstrap))
        for w in self.workers:
            self._spawn(w)
        self._update_gauges()
        return self

    def supervise(self) -> None:
        """One round: note workers that began serving, start dead ones again (after their back-off)."""
        now = time.monotonic()
        with self._lock:
            for w in self.workers:
                if w.proc is None:
                    if not self._stopping and now >= w.next_start:
                        self._c_restarts.inc()
                        self._spawn(w)
                    continue
                rc = w.proc.poll()
                if rc is None:
                    if not w.served:
                        rep = w.read_report()
                        if rep.get("state") == "running":
                            w.served, w.http_port = True, rep.get("http_port")
                            w.early_failures = 0
                    elif now - w.started_at > 60.0:
                        w.backoff_s = 1.0
                    continue
                if self._stopping:
                    continue
                w.final = w.read_report()
                w.proc = None
                if not w.served:
                    w.early_failures += 1
                    if w.early_failures >= MAX_EARLY_FAILURES:
                        self.error = WorkerPoolError(
                            f"worker {w.index} exited with code {rc} {w.early_failures} times in a row before it "
                            f"served; stopping (its log lines above say why)")
                        self.error.exit_code = rc if rc and rc > 0 else 1  # type: ignore[attr-defined]
                        return
                log.error("worker %d exited with code %s; starting it again in %.0f s", w.index, rc, w.backoff_s,
                          extra={"worker_index": w.index, "exit_code": rc})
                w.next_start = now + w.backoff_s
                w.backoff_s = min(30.0, w.backoff_s * 2)
            self._update_gauges()

    def _update_gauges(self) -> None:
        states = {"running": 0, "starting": 0, "down": 0}
        for w in self.workers:
            states["down" if w.proc is None else ("running" if w.served else "starting")] += 1
        for k, v in states.items():
            self._g_workers.labels(state=k).set(v)

    def reports(self) -> dict[int, dict]:
        """Each running worker's latest report (rewritten every half second: windows scored, and the
        monotonic times of its first record and last score)."""
        with self._lock:
            return {w.index: w.read_report() for w in self.workers if w.proc is not None}

    def signal_all(self, sig: int) -> None:
        with self._lock:
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is None:
                    try:
                        w.proc.send_signal(sig)
                    except ProcessLookupError:
                        pass

    def stop(self, timeout_s: float = 60.0) -> dict[int, dict]:
        """SIGTERM every worker (each drains and commits), wait up to ``timeout_s`` (then SIGKILL);
        returns each worker's final report (its stats)."""
        with self._lock:
            if self._stopping and not self._dir.exists():
                return {w.index: w.final for w in self.workers}
            self._stopping = True
        # One worker after another: each leaves the group from a settled state (see streams.kafka.Source.close).
        # Members leaving at the same moment could leave a departed leader recorded in the group on Tansu,
        # and no later member would get partitions until the broker restarts (tests/test_group_leave.py).
        deadline = time.monotonic() + timeout_s
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %.0f s; killing it", w.index, timeout_s)
                w.proc.kill()
                w.proc.wait(10)
            w.final = w.read_report()
        self._fetch.shutdown(wait=False, cancel_futures=True)
        out = {w.index: w.final for w in self.workers}
        for p in self._dir.iterdir():
            p.unlink()
        self._dir.rmdir()
        return out

    # ------------------------------------------------------------------ HTTP
    def _get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2.0) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return 0, str(e)

    def _serving(self) -> list[Worker]:
        with self._lock:
            return [w for w in self.workers if w.proc is not None and w.served and w.http_port]

    def exposition(self) -> tuple[bytes, str]:
        """Every serving worker's ``/metrics`` (labelled ``worker``) and the supervisor's own."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        ws = self._serving()
        got = list(self._fetch.map(lambda w: (w.index, self._get(w.http_port, "/metrics")), ws))
        texts = {i: body for i, (code, body) in got if code == 200}
        return merge_expositions(texts, generate_latest(self.registry)), CONTENT_TYPE_LATEST

    def alive(self) -> bool:
        """Every serving worker's ``/healthz`` answers ok (a worker being started again is no failure)."""
        ws = self._serving()
        return all(code == 200 for code, _ in self._fetch.map(lambda w: self._get(w.http_port, "/healthz"), ws))

    def readiness(self) -> tuple[bool, str]:
        ws = self._serving()
        if len(ws) < self.n:
            return False, f"{len(ws)} of {self.n} workers serving"
        bad = [(w.index, body.strip()) for w, (code, body) in
               zip(ws, self._fetch.map(lambda w: self._get(w.http_port, "/readyz"), ws)) if code != 200]
        if bad:
            return False, "; ".join(f"worker {i}: {b}" for i, b in bad)
        return True, f"{self.n} workers ready"


def _term_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A worker gets SIGTERM (drains, commits, exits) when its supervisor dies, even by SIGKILL. It runs in
    a process group of its own, so a signal to the supervisor's group (Ctrl-C in a terminal, ``timeout``)
    reaches the supervisor alone, which stops the workers one after another (:meth:`WorkerPool.stop`)."""
    import ctypes

    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def write_report(path: str | os.PathLike[str], report: dict) -> None:
    """Write a worker's report file atomically (the supervisor reads it at any time)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(report, default=str))
    os.replace(tmp, p)


def run_pool(cfg: Config, n: int, *, bootstrap: str | None = None, log_args: tuple[str, ...] = ()) -> dict[int, dict]:
    """``anomon run --workers N``: the pool until SIGTERM/SIGINT (SIGHUP is passed on); returns each
    worker's final report."""
    from monitor.runner import ensure_broker

    bs, broker = ensure_broker(cfg, bootstrap, wait_s=cfg.kafka.startup_timeout_s)
    pool = WorkerPool(cfg, n, bootstrap=bs, log_args=log_args)
    stop = threading.Event()

    def on_term(signum, _frame):
        log.info("signal %s: draining %d workers", signal.Signals(signum).name, n)
        stop.set()

    def on_hup(_signum, _frame):
        log.info("SIGHUP: passed to %d workers (each reloads the model)", n)
        pool.signal_all(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    srv = None
    finals: dict[int, dict] = {}
    try:
        pool.start()
        if cfg.http.enabled:
            from monitor.health import HealthServer

            srv = HealthServer(pool.exposition, alive=pool.alive, ready=pool.readiness)
            port = srv.start(cfg.http.host, cfg.http.port)
            log.info("serving /metrics /healthz /readyz of %d workers on http://%s:%d", n, cfg.http.host, port)
        while not stop.wait(0.2):
            pool.supervise()
            if pool.error is not None:
                break
    finally:
        finals = pool.stop()  # (also when starting failed: no worker is left behind)
        if srv is not None:
            srv.stop()
        if broker is not None:
            broker.stop()
    if pool.error is not None:
        raise pool.error
    log.info("stopped %d workers", n)
    return finals
