"""Retraining from inside the daemon: ``[retrain] every = "24h"`` and/or ``after_drift_events = K``.

The daemon's housekeeping asks a :class:`RetrainScheduler` whether a retrain of the model it serves is
due: ``every`` after the current version was promoted (or after the last retrain started), or after
``after_drift_events`` drift events on the scores (ADWIN, ``scoring.drift``), never two starts closer
than ``min_interval_s``. The retrain itself (:func:`monitor.retrain.retrain`: recent windows of the input
topics through the daemon's decoder and windower, windows the current version flags left out, a
candidate validated on held-back recent windows, then promoted or refused) runs in a **child process**
(spawned, at a lower CPU priority, one torch thread), never in the scoring loop: the daemon goes on
scoring with the current version, and when the candidate is promoted its model watcher sees
``REGISTRY/NAME/current`` move and hot-swaps between micro-batches (no window lost or scored twice).
Every outcome is logged with its reason and counted: ``anomon_retrains_total{model, outcome}`` with
outcome ``promoted``, ``refused`` (kept as a version, the reason in the registry's history), ``failed``
(the child raised, exited or ran past ``timeout_s``) or ``stopped`` (the daemon stopped first).

One retrain of a model at a time across processes: the scheduler holds an exclusive lock
(``REGISTRY/NAME/.retrain.lock``) while its child runs, and a state file ``REGISTRY/NAME/retrain.json``
(format 1: when the last retrain started and ended, its trigger, outcome, candidate and reason) tells
every daemon serving the model (``--workers N``, a restarted daemon) when the next one is due.

Examples
--------
>>> registry_model("models/pumps/current")
(PosixPath('models'), 'pumps')
>>> registry_model("bundles/pumps") is None
True
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from monitor.config import RetrainSection
from monitor.durations import parse_duration
from monitor.errors import ConfigError, UserError

log = logging.getLogger("anomon.retrain")

STATE_FORMAT = 1
STATE_FILE = "retrain.json"
LOCK_FILE = ".retrain.lock"
OUTCOMES = ("promoted", "refused", "failed", "stopped")


def registry_model(model_dir: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(registry root, model name)`` of a ``REGISTRY/NAME/current`` path, else None."""
    p = Path(model_dir).expanduser()
    if p.name != "current" or not p.parent.name:
        return None
    return p.parent.parent, p.parent.name


def served_from_registry(model_dir: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """:func:`registry_model` of ``model_dir`` when that model's folder exists in its registry, else None
    (``[retrain]`` needs it: a retrained version has to go somewhere)."""
    loc = registry_model(model_dir)
    return loc if loc is not None and (loc[0] / loc[1]).is_dir() else None


def read_state(path: Path) -> dict[str, Any]:
    """The state file (``{}`` when there is none); format 1."""
    if not path.is_file():
        return {}
    try:
        st = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: corrupt (not JSON: {exc}); delete it to start the retrain schedule afresh") from None
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: format {st.get('format') if isinstance(st, dict) else None!r} is not supported "
                        f"(this anomon reads {STATE_FORMAT})")
    return st


def _write_state(path: Path, st: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"format": STATE_FORMAT, **st}, indent=1))
    os.replace(tmp, path)


def _iso_s(text: str | None) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


class RetrainScheduler:
    """Decides when the served model is retrained and runs each retrain in a child process.

    Parameters
    ----------
    rt : RetrainSection
        ``[retrain]`` of the (lane's) config.
    model_dir : str
        The served ``REGISTRY/NAME/current``; anything else is a :class:`ConfigError`.
    settings, topics, fmt, lateness_ms, gap_ms, lane
        What :func:`monitor.retrain.retrain` reads: the daemon's connection, input topics, record format,
        window lateness and gap, and its :class:`monitor.routing.LaneFilter` among ``[[models]]``.
    metrics
        The daemon's metrics (``retrain``, ``set_retrain_running``).
    on_promoted
        Called after a promotion (the daemon reloads at once instead of at its next watch poll).
    clock
        Wall-clock seconds (``time.time``; tests pass their own).
    label
        The ``model`` label of its metrics (the daemon's: the bundle's name); default the registry name.
    """

    def __init__(self, rt: RetrainSection, *, model_dir: str, settings: Any, topics: list[str], fmt: Any,
                 lateness_ms: float = 0.0, gap_ms: float | None = None, lane: Any = None, metrics: Any = None,
                 on_promoted: Callable[[], None] | None = None, clock: Callable[[], float] = time.time,
                 label: str | None = None):
        loc = served_from_registry(model_dir)
        if loc is None:
            raise ConfigError(f"retrain: the model dir {model_dir!r} is not a registry's NAME/current, so a retrained "
                              "version has nowhere to go; add the bundle with `anomon models add NAME DIR` and serve "
                              "REGISTRY/NAME/current, or turn [retrain] off")
        self.rt = rt
        self.root, self.name = loc
        self.label = label or self.name
        self.settings, self.topics, self.fmt = settings, list(topics), fmt
        self.lateness_ms, self.gap_ms, self.lane = lateness_ms, gap_ms, lane
        self.metrics = metrics
        self.on_promoted = on_promoted
        self.clock = clock
        self.every_s = parse_duration(rt.every) if rt.every.strip() else None
        self.since_s = parse_duration(rt.since) if rt.since.strip() else None
        self.state_path = self.root / self.name / STATE_FILE
        self.lock_path = self.root / self.name / LOCK_FILE
        self.drift_events = 0  # since the last retrain this process started or saw finish
        self._file_cache: dict[Path, tuple[Any, Any]] = {}  # file -> ((inode, mtime_ns, size), value read)
        self.created = clock()
        self.last: dict[str, Any] | None = None  # the last result this process collected
        self._proc: Any = None
        self._exiting: list = []  # children that sent their result and are exiting
        self._conn: Any = None
        self._lock_fd: int | None = None
        self._started = 0.0
        self._trigger = ""

    # ------------------------------------------------------------------ deciding
    @property
    def running(self) -> bool:
        return self._proc is not None

    def note_drift(self, n: int = 1) -> None:
        """Count drift events towards ``after_drift_events``."""
        self.drift_events += n

    def _cached(self, path: Path, read: Callable[[], Any]) -> Any:
        """``read()``, or its value from the last call while ``path`` is unchanged (same inode, mtime and
        size; both files are written by rename): housekeeping asks every second, they change once a retrain."""
        try:
            st = path.stat()
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            sig = None
        old = self._file_cache.get(path)
        if old is not None and old[0] == sig:
            return old[1]
        value = read()
        self._file_cache[path] = (sig, value)
        return value

    def _promoted_at(self) -> float | None:
        """When ``current`` last moved (the newest promote or rollback in the registry's history)."""
        return self._cached(self.root / self.name / "history.json", self._read_promoted_at)

    def _read_promoted_at(self) -> float | None:
        from monitor.registry import Registry

        try:
            events = Registry(self.root).history(self.name)
        except (OSError, UserError):  # unreadable or corrupt: the schedule counts from the last retrain or start
            return None
        times = [_iso_s(e.get("at")) for e in events if e.get("action") in ("promote", "rollback")]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def due(self, now: float | None = None) -> str | None:
        """``"schedule"`` or ``"drift"`` when a retrain should start now, else None."""
        now = self.clock() if now is None else now
        st = self._cached(self.state_path, lambda: read_state(self.state_path))
        started = st.get("last_started")
        if started is not None and now - float(started) < self.rt.min_interval_s:
            return None
        if self.every_s is not None:
            base = max([t for t in (started, self._promoted_at()) if t is not None] or [self.created])
            if now - float(base) >= self.every_s:
                return "schedule"
        if self.rt.after_drift_events > 0 and self.drift_events >= self.rt.after_drift_events:
            return "drift"
        return None

    # ------------------------------------------------------------------ running
    def tick(self) -> None:
        """Collect a finished retrain, or start one when due (called from the daemon's housekeeping)."""
        self._exiting = [p for p in self._exiting if p.is_alive()]  # is_alive reaps an exited child
        if self._proc is not None:
            self._collect()
            return
        trigger = self.due()
        if trigger:
            self._start(trigger)

    def _lock(self) -> bool:
        import fcntl

        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _start(self, trigger: str) -> None:
        import multiprocessing as mp

        if not self._lock():
            return  # another process (worker, daemon) is retraining this model; its state file tells us after
        trigger = self.due()  # again, under the lock: another process may have just finished one
        if not trigger:
            self._unlock()
            return
        now = self.clock()
        st = read_state(self.state_path)
        st.update({"last_started": now, "trigger": trigger, "running": True, "pid": os.getpid()})
        _write_state(self.state_path, st)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        args = {"root": str(self.root), "name": self.name, "settings": self.settings, "topics": self.topics,
                "fmt": self.fmt, "since_s": None if self.rt.last > 0 else self.since_s, "last": self.rt.last or None,
                "validation_fraction": self.rt.validation_fraction, "max_fpr_factor": self.rt.max_fpr_factor,
                "epochs": self.rt.epochs or None, "lateness_ms": self.lateness_ms, "gap_ms": self.gap_ms,
                "lane": self.lane, "log_level": logging.getLogger().getEffectiveLevel()}
        self._proc = ctx.Process(target=_child, args=(child, args), name=f"anomon-retrain-{self.name}", daemon=True)
        self._proc.start()
        child.close()
        self._conn, self._started, self._trigger = parent, time.monotonic(), trigger
        self.drift_events = 0
        if self.metrics is not None:
            self.metrics.set_retrain_running(self.label, True)
        log.info("retrain %s started (%s): reading %s of %s", self.name,
                 "every " + self.rt.every if trigger == "schedule" else f"{self.rt.after_drift_events} drift events",
                 f"the last {self.rt.last} records" if self.rt.last else f"the last {self.rt.since}",
                 ", ".join(self.topics))

    def _collect(self) -> None:
        res = None
        try:
            if self._conn.poll():
                res = self._conn.recv()
        except (EOFError, OSError):
            res = None
        if res is not None:
            # the child exits on its own after sending (torch teardown can take a second): it is reaped
            # later without waiting, never joined on the scoring loop's thread
            self._exiting.append(self._proc)
            if res.get("ok"):
                self._finish("promoted" if res.get("promoted") else "refused", res.get("reason", ""), res)
            else:
                self._finish("failed", res.get("reason", "?"), res)
        elif not self._proc.is_alive():
            self._finish("failed", f"the retrain process exited with code {self._proc.exitcode} and no result", {})
        elif time.monotonic() - self._started > self.rt.timeout_s:
            self._proc.terminate()
            self._proc.join(timeout=10)
            self._finish("failed", f"ran past retrain.timeout_s = {self.rt.timeout_s:g} s and was stopped", {})

    def _finish(self, outcome: str, reason: str, res: dict[str, Any]) -> None:
        took = time.monotonic() - self._started
        st = read_state(self.state_path)
        st.update({"last_finished": self.clock(), "running": False, "outcome": outcome, "reason": reason,
                   "candidate": res.get("candidate"), "previous": res.get("previous"), "seconds": round(took, 1),
                   "checks": res.get("checks", {})})
        try:
            _write_state(self.state_path, st)
        finally:
            self._unlock()
            try:
                self._conn.close()
            except OSError:
                pass
            self._proc = self._conn = None
        self.last = {"outcome": outcome, "reason": reason, **{k: res.get(k) for k in ("candidate", "previous")}}
        if self.metrics is not None:
            self.metrics.retrain(self.label, outcome)
            self.metrics.set_retrain_running(self.label, False)
        if outcome == "promoted":
            log.info("retrain %s: %s promoted (was %s) after %.1f s; the daemon swaps to it", self.name,
                     res.get("candidate"), res.get("previous"), took)
            if self.on_promoted is not None:
                self.on_promoted()
        else:
            log.warning("retrain %s %s after %.1f s: %s", self.name, outcome, took, reason)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop a running retrain (the daemon is stopping): wait ``timeout_s`` for it, then stop it."""
        for p in self._exiting:
            p.join(timeout=timeout_s)
        self._exiting = []
        if self._proc is None:
            return
        deadline = time.monotonic() + timeout_s
        while self._proc is not None and time.monotonic() < deadline:
            self._collect()
            if self._proc is not None:
                time.sleep(0.1)
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(timeout=10)
            self._finish("stopped", "the daemon stopped while it ran", {})


def _child(conn: Any, a: dict[str, Any]) -> None:
    """The retrain process: lower priority, one thread; sends ``{"ok": ..., **RetrainResult}``."""
    try:
        os.nice(10)
    except OSError:
        pass
    logging.basicConfig(level=a["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(1)
        from monitor.registry import Registry
        from monitor.retrain import retrain

        since_ms = int((time.time() - a["since_s"]) * 1000) if a["since_s"] else None
        res = retrain(Registry(a["root"]), a["name"], settings=a["settings"], topics=a["topics"], fmt=a["fmt"],
                      since_ms=since_ms, last=a["last"], validation_fraction=a["validation_fraction"],
                      max_fpr_factor=a["max_fpr_factor"], epochs=a["epochs"], lateness_ms=a["lateness_ms"],
                      gap_ms=a["gap_ms"], lane=a["lane"])
        conn.send({"ok": True, **res.to_dict()})
    except UserError as exc:
        conn.send({"ok": False, "reason": str(exc)})
    except Exception as exc:  # noqa: BLE001 - reported to the daemon, which logs and counts it
        conn.send({"ok": False, "reason": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()
