"""Micro-batching and the model call: windows queue until ``scoring.max_batch`` or
``scoring.max_wait_ms``; a cheap model scores inline, a slow one on the scoring thread or in a
child process (``scoring.child_process``), at most two batches in flight, emitted in order.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger("anomon.daemon")


#: model calls shorter than this (moving average) run inline: handing a batch to the scoring thread and
#: back costs up to a GIL switch interval (5 ms) while other Python threads (the Kafka client's) run
INLINE_SCORE_S = 0.002


#: batches scored inline are emitted together, up to this many windows at once
EMIT_WINDOWS = 4096


def _timed_score(bundle: Any, X: np.ndarray) -> tuple[Any, float]:
    """One model call (on the scoring thread): the scores and the seconds it took."""
    t0 = time.perf_counter()
    scores = bundle.score_windows(X)
    return scores, time.perf_counter() - t0


def _child_score(child: Any, bundle: Any, X: np.ndarray) -> tuple[Any, float]:
    """One model call in the scoring child; in this process instead if the child has died (the scores
    are the same: the same bundle, deterministic scoring)."""
    from monitor.score_process import ScoringProcessError

    try:
        return child.score(bundle, X)
    except ScoringProcessError:
        if child.error is None:  # the model itself failed on this batch: as on the thread
            raise
        return _timed_score(bundle, X)


class ScoringMixin:
    """Micro-batches and the model call. A part of :class:`monitor.daemon.Daemon`."""

    def _queue(self, batches: list, now: float) -> None:
        """Queue windows for scoring, ``(window batch, record timestamp ms per window)`` each; score
        every full batch (``scoring.max_batch`` windows) at once, the rest waits (``max_wait_ms``)."""
        if not self._pending:
            self._pending_since = now
        self._pending.extend(batches)
        self._pending_n += sum(len(b) for b, _ in batches)
        if self._pending_n >= self.cfg.scoring.max_batch:
            self._score_pending(full_only=True)
            if self._pending:  # what is left came with this call (less than a batch was pending before)
                self._pending_since = now

    def _score_pending(self, full_only: bool = False) -> None:
        """Score what is pending, in batches of ``scoring.max_batch`` windows (one model call each; a
        window batch that straddles two model calls is split): everything, or with ``full_only``
        only full batches."""
        mb = self.cfg.scoring.max_batch
        while self._pending and (not full_only or self._pending_n >= mb):
            pending, i, m = self._pending, 0, len(self._pending)
            take, n = [], 0
            while i < m and n < mb:
                b, ts = pending[i]
                k = len(b)
                if n + k > mb:  # the front part fills the batch, the rest stays first in the queue
                    cut = mb - n
                    take.append((b.take(slice(0, cut)), ts[:cut]))
                    pending[i] = (b.take(slice(cut, k)), ts[cut:])
                    n = mb
                    break
                take.append(pending[i])
                n += k
                i += 1
            # one slice per model call (popping the front one window at a time is quadratic at stride 1)
            self._pending = pending[i:]
            self._pending_n -= n
            self._score(take)
        self._emit_scored()
        if not self._pending:
            self._pending_n = 0

    def _emit_scored(self) -> None:
        """Emit the batches scored inline and not emitted yet (:meth:`_score`), together."""
        if self._scored:
            batches, self._scored, self._scored_n = self._scored, [], 0
            self._emit(batches)

    def _score(self, take: list) -> None:
        """Queue a batch for the model on the scoring thread, then emit the batch before it: the main
        thread goes on polling and decoding while the model runs (torch and numpy release the GIL),
        and the model goes from one batch to the next without waiting for the emission of the
        previous (at most two batches in flight). Outputs keep their order; :meth:`_finish_inflight`
        emits them. A model whose calls take under ``INLINE_SCORE_S`` on average is called inline."""
        bundle = self.bundle
        X = np.concatenate([b.X for b, _ in take]) if len(take) > 1 else take[0][0].X
        if getattr(bundle, "series_norm", None) is not None:  # per-series statistics of `anomon train` (by each window's series)
            X = bundle.normalize_series(X, [sid for b, _ in take for sid in b.window_series()])
        if self._score_ewma_s < INLINE_SCORE_S:  # a cheap model: a thread handoff costs more than it overlaps
            self._finish_inflight()
            scores, dt = _timed_score(bundle, X)
            # emitted with the next ones of this drain of the queue (_score_pending), up to EMIT_WINDOWS
            self._scored.append((take, bundle, self.thresholds, scores, dt))
            self._scored_n += scores.n
            if self._scored_n >= EMIT_WINDOWS:
                self._emit_scored()
            return
        self._emit_scored()  # (they came before this batch)
        if self._scorer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._scorer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-score")
        child = self._child_for(bundle)
        call = _timed_score if child is None else functools.partial(_child_score, child)
        self._inflight.append((self._scorer.submit(call, bundle, X), take, bundle, self.thresholds))
        if child is not None:
            self.stats["child_batches"] += 1
        self.stats["threaded_batches"] += 1
        while len(self._inflight) > 1:
            self._finish_one()

    def _child_for(self, bundle: Any) -> Any:
        """The child process scoring ``bundle`` once it has loaded it (``scoring.child_process``); None
        meanwhile, when off or when the child failed (the scoring thread scores then). A new bundle
        (reload) gets a new child."""
        if not self.cfg.scoring.child_process or getattr(bundle, "path", None) is None:
            return None
        if self._child is not None and self._child.bundle is not bundle:
            self._close_child()
        if self._child is None:
            from monitor.score_process import ScoringProcess

            self._child = ScoringProcess(bundle, blas_threads=self.cfg.scoring.blas_threads)
        return self._child if self._child.ready() else None  # a failed child stays not ready

    def _close_child(self) -> None:
        proc, self._child = self._child, None
        if proc is not None:
            try:
                proc.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping the scoring process failed: %s", exc)

    def _finish_one(self) -> None:
        """Wait for the oldest batch in flight and emit its scores and alerts (it leaves the queue
        even when the model failed: the error propagates)."""
        fut, take, bundle, thresholds = self._inflight.popleft()
        scores, dt = fut.result()
        self._emit([(take, bundle, thresholds, scores, dt)])

    def _finish_inflight(self, done_only: bool = False) -> None:
        """Emit the batches in flight, in order: all of them (waiting for the model), or with
        ``done_only`` those the model has finished."""
        q = self._inflight
        while q and (not done_only or q[0][0].done()):
            self._finish_one()
