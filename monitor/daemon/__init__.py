"""``anomon run``: consume readings, window them, score micro-batches, emit scores and alerts.

The daemon is one class, :class:`Daemon` (``loop.py``: the poll -> decode -> window -> score ->
emit -> checkpoint loop and nothing else), made of named parts, one concept a file:

============== ==========================================================================
``loop``       :class:`Daemon`: setup, the model and its reload, the main loop, decoding and
               windowing, keyless readings, housekeeping, readiness
``partitions`` assignment, revocation, parking and adoption after a broker log reset, setting
               up a newly assigned partition from its progress record
``progress``   the progress record: its versioned schema (older versions still read), writing
               and reading it
``checkpoint`` the commit order: flush sinks -> flush the producer -> progress -> commit offsets;
               the rewind after a failed flush
``scoring``    micro-batching and the model call (inline, scoring thread, child process)
``emission``   score records, per-partition thresholds and ADWIN, the anomaly likelihood, dead
               letters
``alerts``     hysteresis, alert events, stale alerts, the hand-over between owners
============== ==========================================================================

:mod:`monitor.workers` supervises N daemon processes (``--workers``).
"""
from monitor.daemon.emission import ADWIN_KEEP, DLQ_MAX_BYTES, LIKELIHOOD
from monitor.daemon.loop import GC_YOUNG_THRESHOLD, Daemon, _freeze_heap, create_daemon_topics
from monitor.daemon.partitions import PARK_TTL_S
from monitor.daemon.progress import PROGRESS_CHUNK, PROGRESS_VERSION
from monitor.daemon.scoring import EMIT_WINDOWS, INLINE_SCORE_S

__all__ = ["Daemon", "create_daemon_topics", "PROGRESS_VERSION", "PROGRESS_CHUNK", "ADWIN_KEEP", "LIKELIHOOD",
           "DLQ_MAX_BYTES", "PARK_TTL_S", "INLINE_SCORE_S", "EMIT_WINDOWS", "GC_YOUNG_THRESHOLD", "_freeze_heap"]
