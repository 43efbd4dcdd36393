"""Scoring in a child process, so that a slow model does not share the daemon's interpreter.

A model scored on a thread of the daemon's process competes with the Kafka client and the decoding for
the GIL: measured with the streaming bench's VRAE (batches of 134 windows, one torch thread, BLAS capped
at 1) beside a JSON-decoding load at 15 % duty cycle, the model scores 2,725 windows/s when the load is a
thread of its process and 3,011 when the load is another process (3,369 alone); at 50 % duty 1,971
against 2,804. :class:`ScoringProcess` runs the model bundle in a spawned child instead: the child loads
the bundle from its directory, and windows and scores cross a pipe as raw bytes with a JSON header (no
pickle). The daemon's scoring thread still orders the batches; it blocks on the pipe while the child
works.

>>> import numpy as np, tempfile
>>> from models import get_detector
>>> from monitor.modelstore import load_bundle, save_bundle
>>> X = np.random.default_rng(0).normal(size=(64, 8, 1)).astype(np.float32)
>>> d = tempfile.mkdtemp()
>>> _ = save_bundle(get_detector("robust-zscore")().fit(X.reshape(64, -1)), d, window_length=8, stride=1,
...                 channels=1, calibration=X, fpr=0.05)
>>> b = load_bundle(d)
>>> p = ScoringProcess(b)
>>> p.wait_ready(120)
True
>>> s, dt = p.score(b, X[:5])
>>> bool(np.allclose(s["max_abs_z"], b.score_windows(X[:5])["max_abs_z"]))
True
>>> p.close()
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def limit_blas(n: int) -> Any:
    """Cap BLAS threads (numpy/scipy) at ``n``, process-wide, until the returned limiter's
    ``restore_original_limits()`` (it is also a context manager); None when ``n`` is 0 (leave as is)
    or the cap cannot be set (an optimisation, never a reason not to run: logged)."""
    if not n:
        return None
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=int(n), user_api="blas")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not cap BLAS threads at %d: %s", n, exc)
        return None


class ScoringProcessError(RuntimeError):
    """The scoring child failed to start, died, or could not score a batch."""


def _child(conn: Any, bundle_dir: str, blas_threads: int) -> None:  # pragma: no cover - runs in the child
    try:
        limit_blas(blas_threads)
        from monitor.modelstore import load_bundle

        bundle = load_bundle(bundle_dir)
        conn.send_bytes(json.dumps({"ready": True, "version": bundle.version}).encode())
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which scores in-process instead
        conn.send_bytes(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    while True:
        try:
            head = json.loads(conn.recv_bytes())
            if head.get("op") == "stop":
                return
            X = np.frombuffer(conn.recv_bytes(), dtype=np.float32).reshape(head["shape"])
        except (EOFError, OSError):
            return
        try:
            t0 = time.perf_counter()
            scores = bundle.score_windows(X)
            dt = time.perf_counter() - t0
            names = list(scores.keys())
            body = b"".join(np.ascontiguousarray(scores[c], dtype=np.float64).tobytes() for c in names)
            conn.send_bytes(json.dumps({"components": names, "n": len(X), "dt": dt}).encode())
            conn.send_bytes(body)
        except Exception as exc:  # noqa: BLE001 - the parent raises it for this batch
            conn.send_bytes(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())


class ScoringProcess:
    """A spawned child that scores windows with ``bundle`` (loaded again there from ``bundle.path``).

    :meth:`ready` tells, without blocking, whether the child has loaded the model; :meth:`score` is one
    model call (called from one thread at a time). Any failure raises :class:`ScoringProcessError`.
    """

    def __init__(self, bundle: Any, *, blas_threads: int = 1):
        ctx = mp.get_context("spawn")  # fork would copy the daemon's threads' locks
        self.bundle = bundle
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, str(bundle.path), int(blas_threads)),
                                 name="anomon-scorer", daemon=True)
        self._proc.start()
        child.close()
        self._ready: bool | None = None
        self.error: str | None = None

    def ready(self) -> bool:
        """Whether the child has loaded the model (never blocks). False for good after a failure."""
        if self._ready is None:
            try:
                if not self._conn.poll():
                    if not self._proc.is_alive():
                        self._fail("the scoring process exited before loading the model")
                    return False
                msg = json.loads(self._conn.recv_bytes())
            except (EOFError, OSError) as exc:
                self._fail(f"the scoring process went away while starting ({exc})")
                return False
            if "error" in msg:
                self._fail(f"the scoring process could not load {self.bundle.path}: {msg['error']}")
            else:
                self._ready = True
        return bool(self._ready)

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.ready() and self._ready is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self._ready)

    def _fail(self, message: str) -> None:
        self._ready = False
        self.error = message
        log.warning("%s; scoring in the daemon's process instead", message)

    def score(self, bundle: Any, X: np.ndarray) -> tuple[Any, float]:
        """One model call in the child: ``(Scores, seconds the model took)``."""
        from models.base import Scores

        if not self._ready:
            raise ScoringProcessError(self.error or "the scoring process is not ready")
        X = np.ascontiguousarray(X, dtype=np.float32)
        try:
            self._conn.send_bytes(json.dumps({"op": "score", "shape": list(X.shape)}).encode())
            self._conn.send_bytes(X)
            head = json.loads(self._conn.recv_bytes())
            if "error" in head:
                raise ScoringProcessError(f"scoring process: {head['error']}")
            data = np.frombuffer(self._conn.recv_bytes(), dtype=np.float64)
        except (EOFError, OSError) as exc:
            self._fail(f"the scoring process died ({exc})")
            raise ScoringProcessError(self.error) from exc
        n = int(head["n"])
        values = {c: data[i * n:(i + 1) * n] for i, c in enumerate(head["components"])}
        return Scores(values, components=bundle.detector.components), float(head["dt"])

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self._conn.send_bytes(json.dumps({"op": "stop"}).encode())
        except (OSError, ValueError):
            pass
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout_s)
        self._conn.close()
