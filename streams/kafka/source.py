"""The kafka-python consumer-group Source: poll, assignment callbacks, commit, seek, lag.

Part of :mod:`streams.kafka`.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

from streams.kafka._lib import (
    ConsumerRebalanceListener, CorruptRecordError, KafkaConsumer, OffsetAndMetadata, TopicPartition,
    UnsupportedCodecError,
)
from streams.kafka.admin import offsets_for_times, partition_ends
from streams.kafka.errors import KafkaPlumbingError, SeekOutOfRangeError
from streams.kafka.settings import KafkaSettings

log = logging.getLogger("streams.kafka")


Hook = Callable[[set[TopicPartition]], None]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: "Source") -> None:
        self.source = source

    def on_partitions_revoked(self, revoked):
        self.source._run_hook("revoke", set(revoked))

    def on_partitions_assigned(self, assigned):
        self.source._run_hook("assign", set(assigned))

    def on_partitions_lost(self, lost):
        self.source._run_hook("lost", set(lost))


class Source:
    """A consumer-group source with manual commits.

    * ``enable_auto_commit=False``: nothing is committed unless :meth:`commit` is
      called (or, with ``commit_on_revoke=True``, when partitions are revoked: the
      positions of records already returned by :meth:`poll` are committed, as Kafka's
      own consumer does, before another member takes over).
    * ``on_assign(partitions)`` / ``on_revoke(partitions)`` / ``on_lost(partitions)``
      hooks get sets of :class:`TopicPartition`. They run on kafka-python's IO thread
      during :meth:`poll`: keep them short; :meth:`commit` called from a hook is sent
      with ``commit_async`` (a blocking commit there raises ``RuntimeError``).
    * :meth:`poll` returns a list of ``ConsumerRecord`` (``topic``, ``partition``,
      ``offset``, ``timestamp``, ``key``, ``value`` bytes, ``headers`` list of
      ``(str, bytes)``).

    Defaults suit Tansu (a join takes ~3 s there, a rebalance ~4 s).

    ``fast_fetch`` (default True) decodes fetched v2 record batches with
    :func:`streams.kafka.fetch.decode_records` (same records, half the CPU of
    kafka-python's per-record objects); it stays off, and ``fast_fetch`` reads False once
    the source is open, when the installed kafka-python does not match.

    During a rebalance :meth:`poll` blocks until the join completes (at most
    ``rebalance_wait_s``; not while the coordinator is unreachable): kafka-python
    3.0.12 otherwise drops a join that completes between two short polls and starts
    over, which on Tansu kept a second member waiting 30-75 s. Drive each Source from
    its own thread or process; two Sources polled in turn from one thread still hit it.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: str | Sequence[str],
        group_id: str,
        *,
        on_assign: Hook | None = None,
        on_revoke: Hook | None = None,
        on_lost: Hook | None = None,
        commit_on_revoke: bool = True,
        auto_offset_reset: str = "earliest",
        max_poll_records: int = 500,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        max_poll_interval_ms: int = 300_000,
        fetch_max_wait_ms: int = 200,
        rebalance_wait_s: float = 10.0,
        consumer_options: Mapping[str, Any] | None = None,
        fast_fetch: bool = True,
    ) -> None:
        self.settings = settings
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.group_id = group_id
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
        self.commit_on_revoke = commit_on_revoke
        self.rebalance_wait_s = float(rebalance_wait_s)
        self.fast_fetch = fast_fetch
        self._config = dict(
            settings.to_kafka_python(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            max_poll_records=max_poll_records,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._config.update(consumer_options or {})
        self._consumer: KafkaConsumer | None = None
        self._consumed: dict[TopicPartition, int] = {}  # next offset after records handed out
        self._pending: list = []  # records polled while waiting for an assignment
        self._unreadable: list[dict[str, Any]] = []  # batches skipped as unreadable, until take_unreadable()
        self._hook_thread: int | None = None
        self.hook_errors: list[BaseException] = []
        self.rebalances = 0

    # ------------------------------------------------------------ lifecycle
    @property
    def consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            raise KafkaPlumbingError("source is not open: call open() or use it as a context manager")
        return self._consumer

    def open(self) -> "Source":
        if self._consumer is None:
            self._consumer = KafkaConsumer(**self._config)
            if self.fast_fetch:
                from streams.kafka.fetch import SPEEDUPS, install_fast_fetch

                self.fast_fetch = install_fast_fetch(self._consumer, self._note_unreadable)
                log.debug("record decoder: %s", ("C loop" if SPEEDUPS else "Python loop") if self.fast_fetch
                          else "kafka-python's")
            self._consumer.subscribe(self.topics, listener=_Listener(self))
        return self

    def close(self, *, commit: bool = False) -> None:
        """Leave the group. ``commit=True`` commits the consumed positions first."""
        if self._consumer is None:
            return
        try:
            if commit:
                self.commit()
            # A member that leaves while its JoinGroup or SyncGroup is in flight, or while a rebalance another
            # member's departure started is in progress, can wedge the group on Tansu (docs/kafka.md): a join in
            # progress is finished first (a poll that timed out mid-rebalance, e.g. the last one before a
            # drain), then LeaveGroup goes out from a settled member.
            try:
                self._rejoin_if_rebalancing()
                self._settle_group()
            except Exception as exc:  # noqa: BLE001 - leave anyway
                log.warning("finishing a pending group join before leaving failed: %s", exc)
        finally:
            c, self._consumer = self._consumer, None
            c.close(autocommit=False)

    def __enter__(self) -> "Source":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ hooks
    def _in_hook(self) -> bool:
        return self._hook_thread == threading.get_ident()

    def _run_hook(self, kind: str, partitions: set[TopicPartition]) -> None:
        self._hook_thread = threading.get_ident()
        try:
            if kind == "revoke" and partitions and self.commit_on_revoke and self._consumer is not None:
                mine = {tp: off for tp, off in self._consumed.items() if tp in partitions}
                if mine:
                    self.commit_async(mine)
            hook = {"assign": self.on_assign, "revoke": self.on_revoke, "lost": self.on_lost or self.on_revoke}[kind]
            if kind == "assign":
                self.rebalances += 1
            if hook is not None and (partitions or kind == "assign"):
                hook(partitions)
        except Exception as exc:  # a failing hook must not kill the IO thread silently
            log.exception("rebalance hook %s failed", kind)
            self.hook_errors.append(exc)
        finally:
            if kind in ("revoke", "lost"):
                for tp in partitions:
                    self._consumed.pop(tp, None)
            self._hook_thread = None

    def _rejoin_if_rebalancing(self) -> None:
        """Ask the coordinator (one heartbeat) whether the group is rebalancing; if so, the member rejoins
        (:meth:`_settle_group`) before it leaves. On Tansu a member that leaves while a rebalance another
        member's departure started stays recorded as the group's leader, and no later member gets partitions
        until the broker restarts (issue 23.6; ``tests/test_group_leave.py``)."""
        coord = getattr(self.consumer, "_coordinator", None)
        if coord is None or not hasattr(coord, "_send_heartbeat_request") or coord.coordinator_unknown():
            return
        gen = getattr(coord, "_generation", None)
        if gen is None or not gen.has_member_id():
            return
        try:
            coord._net.run(coord._send_heartbeat_request)
        except Exception as exc:  # noqa: BLE001 - RebalanceInProgressError has requested the rejoin already
            log.debug("heartbeat before leaving: %s", exc)

    # ------------------------------------------------------------ consuming
    def _settle_group(self) -> None:
        """Finish a pending group join in one go.

        kafka-python 3.0.12 drops a JoinGroup/SyncGroup that completes after a short
        ``poll`` timed out (``join_group_async`` starts a new join when the previous
        task ``is_done``); on Tansu, where a join takes ~3 s, two members can then
        bounce for tens of seconds. Driving the coordinator with a timeout as long as
        a rebalance may take avoids it.
        """
        coord = getattr(self.consumer, "_coordinator", None)
        if coord is None or not hasattr(coord, "need_rejoin"):
            return
        if not coord.need_rejoin():
            return
        if coord.coordinator_unknown():
            coord.ensure_coordinator_ready(timeout_ms=1000)
            if coord.coordinator_unknown():  # broker unreachable: do not block here
                return
        coord.poll(timeout_ms=int(self.rebalance_wait_s * 1000))

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list:
        """Records fetched within ``timeout_s`` (may be empty), in partition order.

        During a rebalance it blocks until the group is joined (a few seconds on Tansu).
        """
        if self._pending:
            out, self._pending = self._pending, []
            return out
        self._settle_group()
        try:
            got = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except (CorruptRecordError, UnsupportedCodecError) as exc:  # kafka-python's own decoder (no fast fetch)
            self._skip_unreadable(exc)
            return []
        out = []
        for tp, recs in got.items():
            if recs:
                out.extend(recs)
                self._consumed[tp] = recs[-1].offset + 1
        if self.hook_errors:
            err = self.hook_errors.pop(0)
            raise KafkaPlumbingError(f"rebalance hook failed: {err!r}") from err
        return out

    def _skip_unreadable(self, exc: Exception) -> None:
        """kafka-python's own record loop raised for a batch (it would raise again on every poll): seek
        past the offset its message names. Without the fast decoder only the failing offset is known,
        so a batch of n records is skipped in n steps (each noted)."""
        m = re.search(r"partition TopicPartition\(topic='([^']*)', partition=(\d+)\) at offset (\d+)", str(exc))
        if m is None:
            raise KafkaPlumbingError(f"unreadable record batch ({type(exc).__name__}: {exc}); install the codec "
                                     "libraries (pip install 'kafka-python[lz4,snappy,zstd]')") from exc
        tp, off = TopicPartition(m.group(1), int(m.group(2))), int(m.group(3))
        reason = "crc" if "crc" in str(exc) else "corrupt"
        self._note_unreadable(tp.topic, tp.partition, off, off, reason, str(exc))
        log.warning("skipped unreadable records of %s:%d at offset %d (%s)", tp.topic, tp.partition, off, exc)
        self.consumer.seek(tp, off + 1)

    def _note_unreadable(self, topic: str, partition: int, first: int, last: int, reason: str, error: str) -> None:
        self._unreadable.append({"topic": topic, "partition": partition, "first_offset": first,
                                 "last_offset": last, "reason": reason, "error": error})

    def take_unreadable(self) -> list[dict[str, Any]]:
        """The record batches skipped as unreadable since the last call (and forgets them).

        Each is ``{"topic", "partition", "first_offset", "last_offset", "reason", "error"}``, reason
        ``crc`` (failed CRC check), ``codec`` (a compression codec whose library is missing) or
        ``corrupt`` (compressed data or records that do not decode). The partition goes on after it."""
        out, self._unreadable = self._unreadable, []
        return out

    def wait_for_assignment(self, timeout_s: float = 30.0) -> set[TopicPartition]:
        """Poll until the group gives this member partitions; records polled meanwhile are kept."""
        deadline = time.monotonic() + timeout_s
        while not self.consumer.assignment():
            if time.monotonic() > deadline:
                raise KafkaPlumbingError(f"no partitions assigned to group {self.group_id} within {timeout_s:g}s")
            self._pending.extend(self.poll(0.2) if not self._pending else [])
            if self._pending:
                break
        return set(self.consumer.assignment())

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    # ------------------------------------------------------------ offsets
    def commit_async(self, offsets: Mapping[TopicPartition, int],
                     on_error: Callable[[BaseException], None] | None = None) -> None:
        """Send a commit of ``{tp: next offset to read}`` without waiting; a failure is logged and passed to
        ``on_error(exc)`` (called from a later :meth:`poll`, on kafka-python's IO thread)."""
        if not offsets:
            return

        def done(_offsets, response):
            if isinstance(response, Exception):
                log.warning("asynchronous commit of %s failed (the next one covers it): %s", dict(offsets), response)
                if on_error is not None:
                    on_error(response)

        self.consumer.commit_async({tp: OffsetAndMetadata(int(off), "", -1) for tp, off in offsets.items()},
                                   callback=done)

    def coordinator_known(self) -> bool:
        """Whether this member knows its group coordinator (True where kafka-python does not say)."""
        if self._consumer is None:
            return False
        try:
            return not self._consumer._coordinator.coordinator_unknown()
        except AttributeError:  # another kafka-python: assume known, as the daemon did
            return True

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> dict[TopicPartition, int]:
        """Commit ``{tp: next offset to read}``; default: the positions of records :meth:`poll` returned.

        Blocking outside the rebalance hooks; inside a hook (kafka-python's IO thread)
        it is sent with ``commit_async`` instead. Returns what was committed.
        """
        if offsets is None:
            assigned = self.consumer.assignment()
            offsets = {tp: off for tp, off in self._consumed.items() if tp in assigned}
        offsets = {tp: int(off) for tp, off in offsets.items()}
        if not offsets:
            return {}
        if self._in_hook():
            self.commit_async(offsets)
        else:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        return offsets

    def committed(self, tp: TopicPartition) -> int | None:
        return self.consumer.committed(tp)

    def position(self, tp: TopicPartition) -> int:
        return self.consumer.position(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        """High watermark from the last fetch of ``tp`` (``None`` before the first fetch)."""
        return self.consumer.highwater(tp)

    def end_offsets(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """True partition ends (see :func:`partition_ends`); default: the assigned partitions."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        return partition_ends(self._config, tps)

    def lag(self, *, refresh: bool = False) -> dict[TopicPartition, int]:
        """Records behind the end, per assigned partition.

        ``refresh=False`` uses the high watermark of the last fetch (cheap, may be a
        poll old); partitions not fetched yet, or ``refresh=True``, ask the broker.
        """
        tps = sorted(self.assignment())
        ends: dict[TopicPartition, int] = {}
        if not refresh:
            for tp in tps:
                hw = self.consumer.highwater(tp)
                if hw is not None:
                    ends[tp] = hw
        missing = [tp for tp in tps if tp not in ends]
        if missing:
            ends.update(partition_ends(self._config, missing))
        return {tp: max(0, ends[tp] - self.consumer.position(tp)) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int, *, check: bool = True) -> None:
        """Move ``tp`` to ``offset``. With ``check`` (default) an offset outside
        ``[beginning, end]`` raises :class:`SeekOutOfRangeError` (Tansu and Kafka would
        otherwise fetch nothing / reset silently)."""
        if check:
            begin = self.consumer.beginning_offsets([tp])[tp]
            end = partition_ends(self._config, [tp])[tp]
            if not begin <= offset <= end:
                raise SeekOutOfRangeError(f"offset {offset} is outside {tp.topic}[{tp.partition}] range [{begin}, {end}]")
        self._pending = [r for r in self._pending if TopicPartition(r.topic, r.partition) != tp]
        self.consumer.seek(tp, offset)
        self._consumed.pop(tp, None)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        for tp, off in self.consumer.beginning_offsets(tps).items():
            self.seek(tp, off, check=False)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Seek to the true end (not kafka-python's ``seek_to_end``, wrong on Tansu)."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        ends = partition_ends(self._config, tps)
        for tp, off in ends.items():
            self.seek(tp, off, check=False)
        return ends

    def seek_to_time(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Seek each partition to its first record with timestamp ``>= timestamp_ms``
        (the end when there is none). Returns the offsets sought to."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        found = offsets_for_times(self._config, {tp: int(timestamp_ms) for tp in tps})
        ends = partition_ends(self._config, [tp for tp, off in found.items() if off is None])
        out = {tp: (off if off is not None else ends[tp]) for tp, off in found.items()}
        for tp, off in out.items():
            self.seek(tp, off, check=False)
        return out
