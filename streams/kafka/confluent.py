"""The librdkafka backend: :class:`ConfluentSource` and :class:`ConfluentSink` on confluent-kafka.

They offer the public interface of :class:`streams.kafka.Source` and :class:`streams.kafka.Sink`
(same constructor arguments, hooks with sets of ``kafka.structs.TopicPartition``, records as
kafka-python ``ConsumerRecord`` namedtuples), so the code above them does not change with the
client library. librdkafka reads every codec (none, gzip, snappy, lz4, zstd) itself, commits with
cooperative-sticky rebalancing (a rebalance moves only the partitions that change owner) and
reads ``read_committed`` (a transaction's aborted records never come out).

Tansu 0.6 differs from Apache Kafka for librdkafka as it does for kafka-python
(``tests/test_tansu_librdkafka.py`` keeps a regression test per difference):

* ListOffsets answers the start of the last batch + 1 (``get_watermark_offsets`` with a query
  says 1 where the end is 6): the ends come from a fetch's high watermark (the watermark
  librdkafka caches from its fetches, else :func:`streams.kafka.partition_ends`).
* ``offsets_for_times`` ignores the timestamp: :meth:`ConfluentSource.seek_to_time` uses
  :func:`streams.kafka.offsets_for_times` (checked against the records, binary search).
* seeking past the end is silent: :meth:`ConfluentSource.seek` checks the range.

Examples
--------
>>> from streams.kafka import KafkaSettings
>>> cfg = to_librdkafka(KafkaSettings(bootstrap_servers=["b1:9093", "b2:9093"], security_protocol="SASL_SSL",
...     sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="anomon", sasl_plain_password="hunter2",
...     options={"socket.keepalive.enable": True, "connections_max_idle_ms": 1}))
>>> cfg["bootstrap.servers"], cfg["sasl.mechanism"], cfg["sasl.password"], cfg["socket.keepalive.enable"]
('b1:9093,b2:9093', 'SCRAM-SHA-512', 'hunter2', True)
>>> "connections_max_idle_ms" in cfg  # a kafka-python option (no dot): not a librdkafka setting
False
"""
from __future__ import annotations

import dataclasses
import json
import logging
import operator
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as _TP

from streams.kafka import (
    DeliveryError,
    KafkaConfigError,
    KafkaPlumbingError,
    KafkaSettings,
    SeekOutOfRangeError,
    TopicPartition,
    offsets_for_times,
    partition_ends,
)
from streams.kafka.sink import _headers, _to_bytes

with __import__("warnings").catch_warnings():
    __import__("warnings").simplefilter("ignore", DeprecationWarning)
    from kafka.consumer.fetcher import ConsumerRecord
    from kafka.partitioner.default import murmur2

__all__ = ["to_librdkafka", "ConfluentSource", "ConfluentSink", "classify_error", "Delivery"]

log = logging.getLogger(__name__)
_rdlog = logging.getLogger("streams.kafka.confluent.librdkafka")

#: librdkafka consumer queue settings: a deep pre-fetch queue and a short backoff when it is full
#: (librdkafka's default 1,000 ms backoff capped raw consume at 139k-151k records/s here, against
#: 403k-521k with these values; issue 20).
QUEUE_TUNING = {"queued.min.messages": 1_000_000, "fetch.queue.backoff.ms": 10}

#: how often the consumer refreshes metadata (librdkafka's default is 300,000): a subscribed topic
#: that did not exist, or was created again, is assigned within about this long
METADATA_REFRESH_MS = 5_000

_OFFSET_INVALID = confluent_kafka.OFFSET_INVALID  # -1001

#: kafka-python producer/consumer options that have no librdkafka equivalent (dropped, with a debug log)
_NO_EQUIVALENT = frozenset({"max_block_ms", "api_version_auto_timeout_ms"})


# --------------------------------------------------------------------------- settings
def to_librdkafka(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka configuration for ``settings`` (connection and security only).

    The only place the secrets are revealed for librdkafka; never log its result. ``options``
    whose key holds a dot (``"socket.keepalive.enable"``) pass through as librdkafka settings;
    the others are kafka-python options and are left out.
    """
    settings.validate()
    servers = settings.bootstrap_servers
    out: dict[str, Any] = {
        "bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers),
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol.lower(),
    }
    if settings.sasl_mechanism:
        out["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_plain_username:
        out["sasl.username"] = settings.sasl_plain_username
    password = settings._password("sasl_plain_password")
    if password is not None:
        out["sasl.password"] = password.reveal()
    if settings.sasl_kerberos_service_name:
        out["sasl.kerberos.service.name"] = settings.sasl_kerberos_service_name
    for ours, theirs in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"),
                         ("ssl_keyfile", "ssl.key.location"), ("ssl_crlfile", "ssl.crl.location"),
                         ("ssl_ciphers", "ssl.cipher.suites")):
        v = getattr(settings, ours)
        if v:
            out[theirs] = v
    key_password = settings._password("ssl_password")
    if key_password is not None:
        out["ssl.key.password"] = key_password.reveal()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
    if settings.request_timeout_ms is not None:
        out["socket.timeout.ms"] = int(settings.request_timeout_ms)
    out.update({k: v for k, v in settings.options.items() if "." in k})
    return out


def _kafka_python_settings(settings: KafkaSettings) -> KafkaSettings:
    """``settings`` for the kafka-python helpers (end offsets, offsets for times): librdkafka options dropped."""
    return dataclasses.replace(settings, options={k: v for k, v in settings.options.items() if "." not in k})


def _client_options(options: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``producer_options``/``consumer_options`` as librdkafka settings: dotted keys as they are, kafka-python
    names (``delivery_timeout_ms``) with their underscores as dots (the Java names both clients share)."""
    out: dict[str, Any] = {}
    for k, v in (options or {}).items():
        if "." in k or k in ("on_delivery", "error_cb", "stats_cb", "logger", "on_commit", "throttle_cb"):
            out[k] = v
        elif k in _NO_EQUIVALENT:
            log.debug("%s: %s has no librdkafka equivalent; ignored", what, k)
        else:
            out[k.replace("_", ".")] = v
    return out


def _make(kind: type, cfg: dict[str, Any], what: str):
    try:
        return kind(cfg)
    except (KafkaException, ValueError, TypeError) as exc:
        raise KafkaConfigError(f"{what}: librdkafka refused the configuration: {exc}") from None


def _log_cb(_client):
    """librdkafka's log lines to Python logging (the connection chatter at debug level)."""
    return _rdlog


# --------------------------------------------------------------------------- errors
_CODEC = {KafkaError._BAD_COMPRESSION}
_CORRUPT = {KafkaError._BAD_MSG, KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD}
#: errors about a topic or partition, not about its records ("Subscribed topic not available" while
#: a topic is created again): reported as client errors, never as unreadable records
_NOT_RECORDS = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION,
                KafkaError.TOPIC_AUTHORIZATION_FAILED}


def classify_error(err: KafkaError) -> str:
    """The reason a record batch could not be read: ``crc``, ``codec``, ``corrupt`` or ``other``.

    >>> classify_error(KafkaError(KafkaError._BAD_COMPRESSION))
    'codec'
    >>> classify_error(KafkaError(KafkaError._BAD_MSG, "Message at offset 4 (batch) failed CRC32C check"))
    'crc'
    >>> classify_error(KafkaError(KafkaError._BAD_MSG)), classify_error(KafkaError(KafkaError._TIMED_OUT))
    ('corrupt', 'other')
    """
    code, text = err.code(), (err.str() or "").lower()
    if "crc" in text or "checksum" in text:
        return "crc"
    if code in _CODEC or "compress" in text or "codec" in text:
        return "codec"
    if code in _CORRUPT:
        return "corrupt"
    return "other"


# --------------------------------------------------------------------------- source
_BY_PARTITION = operator.itemgetter(0, 1)  # a ConsumerRecord's (topic, partition)
Hook = Callable[[set[TopicPartition]], None]


def _tps(parts: Iterable[_TP]) -> set[TopicPartition]:
    return {TopicPartition(p.topic, p.partition) for p in parts}


class ConfluentSource:
    """A consumer-group source with manual commits, on librdkafka.

    The interface of :class:`streams.kafka.Source`. Differences:

    * cooperative-sticky assignment: ``on_assign``/``on_revoke`` get only the partitions that
      change (incremental sets), not the whole assignment; hooks run inside :meth:`poll` (and
      :meth:`wait_for_assignment`), as librdkafka calls them from ``consume()``. A commit from a
      hook is synchronous (librdkafka allows it).
    * ``instance_id`` sets ``group.instance.id`` (static membership: a member that comes back
      within the session timeout gets its partitions back without a rebalance).
    * ``fast_fetch`` and ``rebalance_wait_s`` are accepted and have no effect (kafka-python only).
    * a record batch that cannot be read (CRC, codec, corrupt) raises nothing: it is listed by
      :meth:`take_unreadable`.
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
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.group_id = group_id
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
        self.commit_on_revoke = commit_on_revoke
        self.auto_offset_reset = auto_offset_reset
        self.max_poll_records = int(max_poll_records)
        self.rebalance_wait_s = float(rebalance_wait_s)
        self.fast_fetch = False
        self.instance_id = instance_id
        self._config: dict[str, Any] = dict(
            to_librdkafka(dataclasses.replace(settings, options={})),
            **{
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "auto.offset.reset": auto_offset_reset,
                "session.timeout.ms": int(session_timeout_ms),
                "heartbeat.interval.ms": int(heartbeat_interval_ms),
                "max.poll.interval.ms": int(max_poll_interval_ms),
                "fetch.wait.max.ms": int(fetch_max_wait_ms),
                "check.crcs": True,  # as Java clients do: a corrupt batch is reported, not handed out
                "statistics.interval.ms": 1000,  # the group coordinator's state, for coordinator_known()
                # a subscribed topic that comes back (created again, or a broker that lost its storage)
                # is assigned within seconds: librdkafka sees it only at a metadata refresh (5 min by default)
                "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            },
            **QUEUE_TUNING,
        )
        if instance_id:
            self._config["group.instance.id"] = instance_id
        # the user's librdkafka settings (kafka.options with a dot, then consumer_options) over these
        # defaults; never over manual commits, the group, or the callbacks this class relies on
        self._config.update({k: v for k, v in settings.options.items() if "." in k})
        self._config.update(_client_options(consumer_options, "consumer_options"))
        self._config.update({"group.id": group_id, "enable.auto.commit": False, "enable.auto.offset.store": False},
                            stats_cb=self._on_stats, on_commit=self._on_commit, error_cb=self._on_error)
        self._config.setdefault("logger", _rdlog)
        self._probe_settings = _kafka_python_settings(settings)
        self._consumer: confluent_kafka.Consumer | None = None
        self._consumed: dict[TopicPartition, int] = {}
        self._pending: list = []
        self._assigned: frozenset[TopicPartition] = frozenset()  # kept by the rebalance callbacks
        self._unreadable: list[dict[str, Any]] = []
        self._skip_at: dict[TopicPartition, int] = {}  # where a skip past unreadable records sought to
        self._sought: dict[TopicPartition, int] = {}  # where seek() put a partition, until poll() returns from it
        self._async_errbacks: list[Callable[[BaseException], None] | None] = []
        self._group_state: str | None = None
        self._closing = False
        self._hook_thread: int | None = None
        self.hook_errors: list[BaseException] = []
        self.client_errors: list[KafkaError] = []
        self.rebalances = 0

    # ------------------------------------------------------------ lifecycle
    @property
    def consumer(self) -> confluent_kafka.Consumer:
        if self._consumer is None:
            raise KafkaPlumbingError("source is not open: call open() or use it as a context manager")
        return self._consumer

    def open(self) -> "ConfluentSource":
        if self._consumer is None:
            self._consumer = _make(confluent_kafka.Consumer, self._config, "consumer")
            self._consumer.subscribe(self.topics, on_assign=self._cb_assign, on_revoke=self._cb_revoke,
                                     on_lost=self._cb_lost)
        return self

    def close(self, *, commit: bool = False) -> None:
        """Leave the group. ``commit=True`` commits the consumed positions first.

        Hooks do not run while closing (as with kafka-python's ``close``) and nothing else is committed.
        """
        if self._consumer is None:
            return
        try:
            if commit:
                self.commit()
        finally:
            c = self._consumer
            self._closing = True
            try:
                c.close()
            finally:
                self._consumer, self._closing = None, False
                self._assigned = frozenset()

    def __enter__(self) -> "ConfluentSource":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ librdkafka callbacks (inside consume())
    def _on_stats(self, raw: str) -> None:
        try:
            self._group_state = (json.loads(raw).get("cgrp") or {}).get("state")
        except ValueError:
            pass

    def _on_error(self, err: KafkaError) -> None:
        self.client_errors.append(err)
        del self.client_errors[:-100]
        log.warning("kafka client: %s", err.str())

    def _on_commit(self, err: KafkaError | None, parts: list[_TP]) -> None:
        errback = self._async_errbacks.pop(0) if self._async_errbacks else None
        failed = [p for p in parts or () if p.error is not None]
        if err is None and not failed:
            return
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return
        exc = KafkaException(err if err is not None else failed[0].error)
        log.warning("asynchronous commit failed (the next one covers it): %s", exc)
        if errback is not None:
            errback(exc)

    def _cb_assign(self, consumer, parts: list[_TP]) -> None:
        tps = _tps(parts)
        self._assigned = self._assigned | tps
        self._run_hook("assign", tps)

    def _cb_revoke(self, consumer, parts: list[_TP]) -> None:
        tps = _tps(parts)
        try:
            self._run_hook("revoke", tps)
        finally:
            self._assigned = self._assigned - tps

    def _cb_lost(self, consumer, parts: list[_TP]) -> None:
        tps = _tps(parts)
        try:
            self._run_hook("lost", tps)
        finally:
            self._assigned = self._assigned - tps

    def _in_hook(self) -> bool:
        return self._hook_thread == threading.get_ident()

    def _run_hook(self, kind: str, partitions: set[TopicPartition]) -> None:
        if self._closing:
            for tp in partitions if kind != "assign" else ():
                self._consumed.pop(tp, None)
            return
        self._hook_thread = threading.get_ident()
        try:
            if kind == "revoke" and partitions and self.commit_on_revoke:
                mine = {tp: off for tp, off in self._consumed.items() if tp in partitions}
                if mine:
                    self.commit(mine)
            hook = {"assign": self.on_assign, "revoke": self.on_revoke, "lost": self.on_lost or self.on_revoke}[kind]
            if kind == "assign":
                self.rebalances += 1
            if hook is not None and (partitions or kind == "assign"):
                hook(partitions)
        except Exception as exc:  # raised from poll(), as the kafka-python Source does
            log.exception("rebalance hook %s failed", kind)
            self.hook_errors.append(exc)
        finally:
            if kind in ("revoke", "lost"):
                for tp in partitions:
                    self._consumed.pop(tp, None)
                    self._sought.pop(tp, None)
                    self._skip_at.pop(tp, None)
                self._pending = [r for r in self._pending if TopicPartition(r.topic, r.partition) not in partitions]
            self._hook_thread = None

    # ------------------------------------------------------------ consuming
    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list:
        """Records fetched within ``timeout_s`` (may be empty), grouped by partition in offset order."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        # consume() waits for a whole batch of max_records or the timeout. Taking what is queued and else
        # waiting for the first record only cut the p99 at 10,000 readings/s (321 -> 89 ms), but made the
        # keyless repartitioning release readings out of order (tests/test_keyless.py failed 2 of 3 runs):
        # not kept until the repartitioner's watermarks are made to hold with small polls
        msgs = self.consumer.consume(int(max_records or self.max_poll_records), max(0.0, float(timeout_s)))
        if self.hook_errors:
            err = self.hook_errors.pop(0)
            raise KafkaPlumbingError(f"rebalance hook failed: {err!r}") from err
        out: list = []
        append = out.append
        new, record = tuple.__new__, ConsumerRecord
        errors: dict | None = None
        consumed = self._consumed
        runs: list[tuple[str, int]] = []  # (topic, partition) of each run of records, in arrival order
        topic = partition = last = None
        for m in msgs:
            err = m.error()
            if err is not None:
                if errors is None:
                    errors = {}
                self._on_message_error(m, err, errors)
                continue
            t, p, off = m.topic(), m.partition(), m.offset()
            if p != partition or t != topic:
                if last is not None:
                    consumed[TopicPartition(topic, partition)] = last + 1
                topic, partition = t, p
                runs.append((t, p))
            last = off
            ts = m.timestamp()
            headers = m.headers()
            key, value = m.key(), m.value()
            append(new(record, (
                t, p, m.leader_epoch(), off, ts[1], ts[0], key, value,
                [(k, v if v is not None else b"") for k, v in headers] if headers else [], None,
                -1 if key is None else len(key), -1 if value is None else len(value), -1,
            )))  # fmt: skip
        if last is not None:
            consumed[TopicPartition(topic, partition)] = last + 1
        if errors:
            self._skip_unreadable(errors, out)
        if not out:
            return out
        if self._skip_at or self._sought:
            for tp in set(runs):
                self._skip_at.pop(TopicPartition(*tp), None)
                self._sought.pop(TopicPartition(*tp), None)
        if len(runs) != len(set(runs)):  # a partition's records in more than one run: group them
            out.sort(key=_BY_PARTITION)  # stable: offset order within a partition
        return out

    def _on_message_error(self, m, err: KafkaError, errors: dict) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if not topic or partition is None or partition < 0 or err.code() in _NOT_RECORDS:
            self._on_error(err)  # not about a record batch (e.g. an unknown topic)
            return
        errors.setdefault(TopicPartition(topic, partition), []).append(
            (offset if offset is not None else -1, classify_error(err), err.str()))

    def _skip_unreadable(self, errors: dict, out: list) -> None:
        """Seek past records librdkafka could not read, and note them.

        librdkafka reports a batch that fails its CRC (or does not decompress) at the batch's first
        offset and then fetches nothing more from that partition (observed with 2.16: the records
        after such a batch never came). Without the batch's length, each step skips one offset: a
        fetch from inside the batch fails at the same first offset, and the next step moves one on,
        until the fetch starts after the batch. A partition that handed out later records in this
        poll has gone on by itself and is left alone. Error offsets past the high watermark (librdkafka
        parsing the corrupt bytes as records) count as the offset being skipped."""
        for tp, items in errors.items():
            hw = self.highwater(tp)
            nxt = self._skip_at.get(tp, self._consumed.get(tp))
            plausible = [it for it in items if it[0] >= 0 and (hw is None or it[0] < hw)]
            if plausible:
                off, reason, text = min(plausible)
            else:
                off, reason, text = (nxt if nxt is not None else 0), items[0][1], items[0][2]
            if nxt is not None and off < nxt:  # the same batch again, fetched from inside it
                off = nxt
            if any(r.offset >= off and r.topic == tp.topic and r.partition == tp.partition for r in out):
                continue
            self._note_unreadable(tp, off, reason, text)
            try:
                self.consumer.seek(_TP(tp.topic, tp.partition, off + 1))
            except KafkaException as exc:
                log.warning("cannot skip unreadable records of %s[%d]: %s", tp.topic, tp.partition, exc)
                continue
            self._skip_at[tp] = self._consumed[tp] = off + 1

    def _note_unreadable(self, tp: TopicPartition, off: int, reason: str, text: str) -> None:
        prev = self._unreadable[-1] if self._unreadable else None
        if (prev is not None and (prev["topic"], prev["partition"]) == (tp.topic, tp.partition)
                and prev["first_offset"] <= off <= prev["last_offset"] + 1):
            prev["last_offset"] = max(prev["last_offset"], off)
            return
        self._unreadable.append({"topic": tp.topic, "partition": tp.partition, "first_offset": off,
                                 "last_offset": off, "reason": reason, "error": text})
        log.warning("unreadable records in %s[%d] from offset %d (%s): %s; skipped", tp.topic, tp.partition, off,
                    reason, text)

    def take_unreadable(self) -> list[dict[str, Any]]:
        """Record batches that could not be read since the last call (and clear the list): dicts with
        ``topic``, ``partition``, ``first_offset``, ``last_offset``, ``reason`` (``crc``, ``codec``,
        ``corrupt``, ``other``) and ``error`` (librdkafka's message)."""
        out, self._unreadable = self._unreadable, []
        return out

    def wait_for_assignment(self, timeout_s: float = 30.0) -> set[TopicPartition]:
        """Poll until the group gives this member partitions; records polled meanwhile are kept."""
        deadline = time.monotonic() + timeout_s
        while not self.assignment():
            if time.monotonic() > deadline:
                raise KafkaPlumbingError(f"no partitions assigned to group {self.group_id} within {timeout_s:g}s")
            self._pending.extend(self.poll(0.2) if not self._pending else [])
            if self._pending:
                break
        return self.assignment()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns, as the rebalance callbacks left them.

        Not librdkafka's ``assignment()``: called from another thread while a rebalance callback
        waits for the interpreter lock, that one blocks for good."""
        self.consumer  # noqa: B018 - raises when not open
        return set(self._assigned)

    def coordinator_known(self) -> bool:
        """Whether this member is connected to its group coordinator (librdkafka's group state ``up``)."""
        if self._consumer is None:
            return False
        if self._group_state is None:  # no statistics yet: joined means known
            return bool(self._consumer.memberid())
        return self._group_state == "up"

    # ------------------------------------------------------------ offsets
    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> dict[TopicPartition, int]:
        """Commit ``{tp: next offset to read}`` (blocking); default: the positions of records :meth:`poll` returned."""
        if offsets is None:
            assigned = self.assignment()
            offsets = {tp: off for tp, off in self._consumed.items() if tp in assigned}
        offsets = {tp: int(off) for tp, off in offsets.items()}
        if not offsets:
            return {}
        try:
            self.consumer.commit(offsets=[_TP(tp.topic, tp.partition, off) for tp, off in offsets.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            raise KafkaPlumbingError(f"commit of {len(offsets)} partition(s) failed: {exc}") from exc
        return offsets

    def commit_async(self, offsets: Mapping[TopicPartition, int],
                     on_error: Callable[[BaseException], None] | None = None) -> None:
        """Send a commit of ``{tp: next offset to read}`` without waiting; a failure is logged and passed to
        ``on_error(exc)`` (called from a later :meth:`poll`)."""
        parts = [_TP(tp.topic, tp.partition, int(off)) for tp, off in offsets.items()]
        if not parts:
            return
        self._async_errbacks.append(on_error)
        try:
            self.consumer.commit(offsets=parts, asynchronous=True)
        except KafkaException as exc:
            self._async_errbacks.pop()
            log.warning("asynchronous commit failed (the next one covers it): %s", exc)
            if on_error is not None:
                on_error(exc)

    def committed(self, tp: TopicPartition) -> int | None:
        got = self.consumer.committed([_TP(tp.topic, tp.partition)], timeout=10)[0]
        return got.offset if got.offset >= 0 else None

    def position(self, tp: TopicPartition) -> int:
        """The next offset :meth:`poll` returns for ``tp`` (the committed offset, or the reset one, before the first)."""
        if tp in self._consumed:
            return self._consumed[tp]
        if tp in self._sought:
            return self._sought[tp]
        off = self.consumer.position([_TP(tp.topic, tp.partition)])[0].offset
        if off >= 0:
            return off
        committed = self.committed(tp)
        if committed is not None:
            return committed
        if self.auto_offset_reset in ("latest", "largest", "end"):
            return partition_ends(self._probe_settings, [tp])[tp]
        return self._low(tp)

    def _low(self, tp: TopicPartition) -> int:
        low, _ = self.consumer.get_watermark_offsets(_TP(tp.topic, tp.partition), timeout=10)
        return max(0, low)

    def highwater(self, tp: TopicPartition) -> int | None:
        """High watermark from the last fetch of ``tp`` (``None`` before the first fetch)."""
        try:
            _, high = self.consumer.get_watermark_offsets(_TP(tp.topic, tp.partition), cached=True)
        except KafkaException:
            return None
        return high if high is not None and high >= 0 else None

    def end_offsets(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """True partition ends (see :func:`streams.kafka.partition_ends`); default: the assigned partitions."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        return partition_ends(self._probe_settings, tps)

    def lag(self, *, refresh: bool = False) -> dict[TopicPartition, int]:
        """Records behind the end, per assigned partition (the last fetch's high watermark unless ``refresh``)."""
        tps = sorted(self.assignment())
        ends: dict[TopicPartition, int] = {}
        if not refresh:
            for tp in tps:
                hw = self.highwater(tp)
                if hw is not None:
                    ends[tp] = hw
        missing = [tp for tp in tps if tp not in ends]
        if missing:
            ends.update(partition_ends(self._probe_settings, missing))
        return {tp: max(0, ends[tp] - self.position(tp)) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int, *, check: bool = True) -> None:
        """Move ``tp`` to ``offset``; with ``check`` an offset outside ``[beginning, end]`` raises
        :class:`streams.kafka.SeekOutOfRangeError`."""
        if check:
            begin, end = self._low(tp), partition_ends(self._probe_settings, [tp])[tp]
            if not begin <= offset <= end:
                raise SeekOutOfRangeError(f"offset {offset} is outside {tp.topic}[{tp.partition}] range [{begin}, {end}]")
        self._pending = [r for r in self._pending if TopicPartition(r.topic, r.partition) != tp]
        try:
            self.consumer.seek(_TP(tp.topic, tp.partition, int(offset)))
        except KafkaException as exc:
            raise KafkaPlumbingError(f"cannot seek {tp.topic}[{tp.partition}] to {offset}: {exc}") from exc
        self._consumed.pop(tp, None)  # as the kafka-python Source: commit() commits only what poll() returned
        self._sought[tp] = int(offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        for tp in tps:
            self.seek(tp, self._low(tp), check=False)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Seek to the true end (from a fetch's high watermark: Tansu's ListOffsets is wrong)."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        ends = partition_ends(self._probe_settings, tps)
        for tp, off in ends.items():
            self.seek(tp, off, check=False)
        return ends

    def seek_to_time(self, timestamp_ms: int,
                     partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Seek each partition to its first record with timestamp ``>= timestamp_ms`` (the end when none)."""
        tps = list(partitions) if partitions is not None else sorted(self.assignment())
        found = offsets_for_times(self._probe_settings, {tp: int(timestamp_ms) for tp in tps})
        ends = partition_ends(self._probe_settings, [tp for tp, off in found.items() if off is None])
        out = {tp: (off if off is not None else ends[tp]) for tp, off in found.items()}
        for tp, off in out.items():
            self.seek(tp, off, check=False)
        return out


# --------------------------------------------------------------------------- sink
@dataclasses.dataclass(frozen=True)
class RecordMetadata:
    """Where a record landed (the fields of kafka-python's ``RecordMetadata`` that callers read)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class Delivery:
    """A future for one record or a batch: :meth:`get` waits (serving the producer's callbacks) and returns the
    :class:`RecordMetadata` of its (first) record or raises :class:`streams.kafka.DeliveryError`."""

    __slots__ = ("_sink", "_left", "_meta", "_error", "_errbacks", "_callbacks")

    def __init__(self, sink: "ConfluentSink", n: int = 1) -> None:
        self._sink, self._left, self._meta, self._error = sink, n, None, None
        self._errbacks: list = []
        self._callbacks: list = []

    def _done(self, err, msg) -> None:
        if err is not None:
            if self._error is None:
                self._error = DeliveryError(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
                for fn in self._errbacks:
                    fn(self._error)
        elif self._meta is None:
            self._meta = RecordMetadata(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
        self._left -= 1
        if self._left == 0 and self._error is None:
            for fn in self._callbacks:
                fn(self._meta)

    def is_done(self) -> bool:
        return self._left <= 0

    def succeeded(self) -> bool:
        return self._left <= 0 and self._error is None

    def add_errback(self, fn: Callable[[BaseException], Any]) -> "Delivery":
        if self._error is not None:
            fn(self._error)
        else:
            self._errbacks.append(fn)
        return self

    def add_callback(self, fn: Callable[[RecordMetadata], Any]) -> "Delivery":
        if self.succeeded():
            fn(self._meta)
        else:
            self._callbacks.append(fn)
        return self

    def get(self, timeout: float | None = None) -> RecordMetadata:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._left > 0:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError(f"not delivered within {timeout:g}s")
            self._sink.producer.poll(min(left, 0.1))
        if self._error is not None:
            raise self._error
        return self._meta


class ConfluentSink:
    """A keyed producer with headers on librdkafka, the interface of :class:`streams.kafka.Sink`.

    ``acks="all"`` and idempotence by default, librdkafka's ``murmur2_random`` partitioner (a key lands
    on the partition Java and kafka-python clients pick). ``producer_options`` are librdkafka settings
    (kafka-python names such as ``delivery_timeout_ms`` are read as ``delivery.timeout.ms``).
    :meth:`send` and :meth:`send_batch` return :class:`Delivery` futures; :meth:`flush` raises
    :class:`streams.kafka.DeliveryError` if any record since the previous flush failed.
    """

    #: most keys whose partition a keyed partitioner remembers (per topic)
    KEY_PARTITION_CACHE = 65_536

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        acks: int | str = "all",
        linger_ms: int = 5,
        batch_size: int | None = None,
        compression_type: str | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        cfg: dict[str, Any] = dict(
            to_librdkafka(dataclasses.replace(settings, options={})),
            **{"acks": str(acks), "linger.ms": linger_ms, "partitioner": "murmur2_random"},
        )
        cfg["enable.idempotence"] = str(acks) in ("all", "-1")
        if batch_size is not None:
            cfg["batch.size"] = int(batch_size)
        if compression_type is not None:
            cfg["compression.type"] = compression_type
        # the user's librdkafka settings (kafka.options with a dot, then producer_options) over these defaults
        cfg.update({k: v for k, v in settings.options.items() if "." in k})
        cfg.update(_client_options(producer_options, "producer_options"))
        cfg.setdefault("error_cb", self._on_client_error)
        cfg.setdefault("logger", _rdlog)
        self._config = cfg
        self._producer: confluent_kafka.Producer | None = _make(confluent_kafka.Producer, cfg, "producer")
        self._lock = threading.Lock()
        self._failed = 0
        self._last_error: BaseException | None = None
        self.sent = 0
        self._key_parts: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        self._partitions: dict[str, tuple[float, list[int]]] = {}

    @property
    def producer(self) -> confluent_kafka.Producer:
        if self._producer is None:
            raise KafkaPlumbingError("sink is closed")
        return self._producer

    def _on_client_error(self, err: KafkaError) -> None:
        log.warning("kafka producer: %s", err.str())

    def _count_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failed += 1
            self._last_error = exc

    def _produce(self, topic: str, value, key, on_delivery, **kw) -> None:
        p = self.producer
        while True:
            try:
                p.produce(topic, value, key, on_delivery=on_delivery, **kw)
                return
            except BufferError:  # the local queue is full: let deliveries drain it (kafka-python blocks too)
                p.poll(0.05)
            except KafkaException as exc:
                raise DeliveryError(f"cannot send to {topic}: {exc}") from exc

    def _record_cb(self, fut: Delivery):
        def cb(err, msg):
            if err is not None:
                self._count_failure(KafkaException(err))
                log.warning("delivery failed: %s", err.str())
            fut._done(err, msg)

        return cb

    def send(self, topic: str, value: Any, *, key: Any = None,
             headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
             timestamp_ms: int | None = None, partition: int | None = None) -> Delivery:
        """Queue one record; returns a :class:`Delivery` (``.get(timeout)`` -> :class:`RecordMetadata`)."""
        fut = Delivery(self)
        kw: dict[str, Any] = {}
        if partition is not None:
            self._check_partition(topic, partition)
            kw["partition"] = int(partition)
        if timestamp_ms is not None:
            kw["timestamp"] = int(timestamp_ms)
        h = _headers(headers)
        if h:
            kw["headers"] = h
        self._produce(topic, _to_bytes(value), _to_bytes(key), self._record_cb(fut), **kw)
        self.sent += 1
        self.producer.poll(0)  # serve earlier deliveries' callbacks
        return fut

    def _topic_partitions(self, topic: str) -> list[int]:
        cached = self._partitions.get(topic)
        if cached is not None and time.monotonic() - cached[0] < 30:
            return cached[1]
        md = self.producer.list_topics(topic, timeout=10).topics.get(topic)
        parts = sorted(md.partitions) if md is not None and md.error is None else []
        self._partitions[topic] = (time.monotonic(), parts)
        return parts

    def _check_partition(self, topic: str, partition: int) -> None:
        if partition not in self._topic_partitions(topic):
            self._partitions.pop(topic, None)  # new partitions since: ask again
            parts = self._topic_partitions(topic)
            if partition not in parts:
                raise KafkaPlumbingError(f"topic {topic!r} has no partition {partition} (partitions: {parts})")

    def send_batch(self, topic: str, partition: int | None, records: Sequence[tuple[bytes | None, bytes | None]],
                   wake: bool = True) -> list[Delivery]:
        """Queue keyed records for one partition, in order; returns one :class:`Delivery` for all of them.

        ``partition=None`` lets the partitioner place each record by its key. Records carry no headers and
        the time of this call. ``wake`` serves the delivery callbacks once (librdkafka's sender does not
        sleep on a linger as kafka-python's does).
        """
        if not records:
            return []
        if partition is not None:
            self._check_partition(topic, partition)
        fut = Delivery(self, len(records))
        cb = self._record_cb(fut)
        p = self.producer
        produce = p.produce
        for key, value in records:
            try:
                if partition is None:
                    produce(topic, value, key, on_delivery=cb)
                else:
                    produce(topic, value, key, partition, on_delivery=cb)
            except BufferError:
                if partition is None:
                    self._produce(topic, value, key, cb)
                else:
                    self._produce(topic, value, key, cb, partition=partition)
        self.sent += len(records)
        if wake:
            p.poll(0)
        return [fut]

    def wake(self) -> None:
        """Serve delivery callbacks now (librdkafka's own thread sends; nothing sleeps)."""
        if self._producer is not None:
            self._producer.poll(0)

    def keyed_partitioner(self, topic: str) -> Callable[[bytes], int | None]:
        """``key -> partition`` for ``topic``: murmur2 of the key as librdkafka's ``murmur2_random`` (and
        kafka-python's and Java's default) picks it, remembered per key; ``None`` for another partitioner."""
        known = self._key_memo(topic)
        if known is None:
            return lambda key: None
        parts, memo = known
        n = len(parts)

        def partition(key: bytes) -> int:
            p = memo.get(key)
            if p is None:
                p = memo[key] = parts[(murmur2(key) & 0x7FFFFFFF) % n]
            return p

        return partition

    def key_partitions(self, topic: str, keys: Sequence[bytes]) -> list[int] | None:
        """The partition of each key, as :meth:`keyed_partitioner` gives them; None for another partitioner."""
        known = self._key_memo(topic)
        if known is None:
            return None
        out = list(map(known[1].get, keys))
        if None in out:
            part_of = self.keyed_partitioner(topic)
            out = [p if p is not None else part_of(k) for k, p in zip(keys, out)]
        return out

    def _key_memo(self, topic: str) -> tuple[list[int], dict[bytes, int]] | None:
        if self._config.get("partitioner") not in ("murmur2_random", "murmur2"):
            return None
        parts = self._topic_partitions(topic)
        if not parts:
            raise KafkaPlumbingError(f"topic {topic!r} has no partitions (does it exist?)")
        cached = self._key_parts.get(topic)
        if cached is None or cached[0] != parts or len(cached[1]) > self.KEY_PARTITION_CACHE:
            cached = self._key_parts[topic] = (parts, {})
        return cached

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record; raise :class:`streams.kafka.DeliveryError` if any failed or, after
        ``timeout_s``, some are still queued."""
        left = self.producer.flush(-1 if timeout_s is None else float(timeout_s))
        with self._lock:
            failed, err = self._failed, self._last_error
            self._failed, self._last_error = 0, None
        if failed:
            raise DeliveryError(f"{failed} record(s) not delivered; last error: {err!r}")
        if left:
            raise DeliveryError(f"{left} record(s) still queued after {timeout_s:g}s")

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued within ``timeout_s``, then drop the rest (their futures fail)."""
        if self._producer is not None:
            p = self._producer
            try:
                if p.flush(timeout_s):
                    p.purge()
                    p.flush(0)
            finally:
                self._producer = None

    def __enter__(self) -> "ConfluentSink":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.flush()
        self.close()
