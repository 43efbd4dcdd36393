"""Topics, partitions, offsets and groups (with the embedded broker's differences handled).

Part of :mod:`streams.kafka`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from streams.kafka._lib import kafka_errors, KafkaAdminClient, KafkaConsumer, TopicPartition
from streams.kafka.errors import KafkaPlumbingError
from streams.kafka.settings import KafkaSettings, _CONSUMER_ONLY_EXCLUDE, _connection_config

log = logging.getLogger("streams.kafka")


def _admin(settings: KafkaSettings | Mapping[str, Any]) -> KafkaAdminClient:
    cfg = _connection_config(settings)
    allowed = set(KafkaAdminClient.DEFAULT_CONFIG)
    return KafkaAdminClient(**{k: v for k, v in cfg.items() if k in allowed})


def _probe_consumer(config: Mapping[str, Any]) -> KafkaConsumer:
    allowed = set(KafkaConsumer.DEFAULT_CONFIG)
    cfg = {k: v for k, v in config.items() if k in allowed and k not in _CONSUMER_ONLY_EXCLUDE}
    cfg.update(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=64 * 1024,  # probes read one batch, not a megabyte
        client_id=f"{cfg.get('client_id') or 'anomon'}-probe",
    )
    return KafkaConsumer(**cfg)


def create_topics(
    settings: KafkaSettings | Mapping[str, Any],
    topics: Mapping[str, int] | Iterable[str],
    *,
    compacted: bool = False,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create topics if they do not exist; idempotent.

    ``topics`` maps name to partition count (a plain list means 1 partition each).
    ``compacted=True`` sets ``cleanup.policy=compact``. Returns ``{name: "created" |
    "exists"}``; an existing topic with a different partition count is logged as a
    warning, never changed.
    """
    wanted = dict(topics) if isinstance(topics, Mapping) else {t: 1 for t in topics}
    cfg = dict(configs or {})
    if compacted:
        cfg["cleanup.policy"] = "compact"
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        result = {name: "exists" for name in wanted if name in existing}
        new = {
            name: {"num_partitions": int(n), "replication_factor": int(replication_factor), "configs": dict(cfg)}
            for name, n in wanted.items()
            if name not in existing
        }
        if new:
            resp = admin.create_topics(new, timeout_ms=int(timeout_s * 1000), raise_errors=False)
            for t in resp["topics"]:
                err = kafka_errors.for_code(t["error_code"])
                if err is kafka_errors.NoError:
                    result[t["name"]] = "created"
                elif err is kafka_errors.TopicAlreadyExistsError:  # created by someone else meanwhile
                    result[t["name"]] = "exists"
                else:
                    raise KafkaPlumbingError(f"cannot create topic {t['name']}: {err.__name__}: {t.get('error_message')}")
        for name, status in result.items():
            if status == "exists":
                have = len(admin.describe_topics([name])[0].get("partitions") or [])
                if have and have != wanted[name]:
                    log.warning("topic %s exists with %d partitions (wanted %d); left as is", name, have, wanted[name])
        _wait_for_partitions(admin, {n: wanted[n] for n, s in result.items() if s == "created"}, timeout_s)
        return result
    finally:
        admin.close()


def _wait_for_partitions(admin: KafkaAdminClient, topics: Mapping[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(topics)
    while pending:
        for d in admin.describe_topics(list(pending)):
            if d.get("error_code", 0) == 0 and len(d.get("partitions") or []) >= pending.get(d["name"], 1):
                pending.pop(d["name"], None)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KafkaPlumbingError(f"topics not visible in metadata after {timeout_s:g}s: {sorted(pending)}")
        time.sleep(0.05)


def topic_partitions(
    settings: KafkaSettings | Mapping[str, Any], topic: str, *, timeout_s: float = 10.0
) -> list[TopicPartition]:
    """The partitions of ``topic`` (empty list when it does not exist).

    Tansu now and then answers a metadata request for an existing topic, under load, with
    ``UNKNOWN_TOPIC_OR_PARTITION`` and no partitions. A topic that the broker lists is
    therefore described again (with a short backoff, up to ``timeout_s``) rather than
    reported as missing.
    """
    admin = _admin(settings)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            d = admin.describe_topics([topic])[0]
            parts = d.get("partitions") or []
            if not d.get("error_code", 0) and parts:
                return sorted(TopicPartition(topic, p["partition_index"]) for p in parts)
            if topic not in set(admin.list_topics()) or time.monotonic() >= deadline:
                return []
            log.debug("topic %s is listed but described with error %s; asking again", topic, d.get("error_code"))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    finally:
        admin.close()


def topic_ids(settings: KafkaSettings | Mapping[str, Any], topics: Iterable[str]) -> dict[str, str]:
    """The topic id of each of ``topics`` that exists and has one (topics without are left out).

    A topic deleted and created again under the same name (or lost with a broker's in-memory
    storage) gets a new id: its offsets start again and old positions mean nothing.
    """
    names = sorted(set(topics))
    if not names:
        return {}
    admin = _admin(settings)
    try:
        out = {}
        for d in admin.describe_topics(names):
            tid = d.get("topic_id")
            if not d.get("error_code", 0) and tid and str(tid).strip("0-"):  # the null uuid means "no id"
                out[d["name"]] = str(tid)
        return out
    finally:
        admin.close()


def partition_ends(
    config: KafkaSettings | KafkaConsumer | Mapping[str, Any],
    partitions: Iterable[TopicPartition],
    *,
    timeout_s: float = 10.0,
) -> dict[TopicPartition, int]:
    """The true end (next offset to be written) of each partition, from a fetch's high watermark.

    Works on Tansu, where ``end_offsets`` reports the start of the last batch + 1. A
    short-lived probe consumer (no group) fetches once from each partition.
    """
    tps = list(dict.fromkeys(partitions))
    if not tps:
        return {}
    probe = _probe_consumer(_connection_config(config))
    try:
        probe.assign(tps)
        reported = probe.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        begins = probe.beginning_offsets(tps, timeout_ms=int(timeout_s * 1000))
        for tp in tps:  # a valid offset at or before the real end: the fetch answers the high watermark
            probe.seek(tp, max(begins.get(tp, 0), reported.get(tp, 0)))
        deadline = time.monotonic() + timeout_s
        ends: dict[TopicPartition, int] = {}
        while True:
            for tp in tps:
                hw = probe.highwater(tp)
                if hw is not None:
                    ends[tp] = hw
            if len(ends) == len(tps):
                return ends
            if time.monotonic() > deadline:
                missing = [tp for tp in tps if tp not in ends]
                raise KafkaPlumbingError(f"no high watermark for {missing} within {timeout_s:g}s")
            probe.poll(timeout_ms=100, max_records=1)
    finally:
        probe.close()


def partition_end(consumer: KafkaConsumer, tp: TopicPartition, *, refresh: bool = True, timeout_s: float = 10.0) -> int:
    """The end of one partition, robust to Tansu.

    With ``refresh=False`` and ``tp`` assigned to ``consumer``, the high watermark of
    its last fetch (``consumer.highwater(tp)``) is returned when known; otherwise, and
    by default, a probe consumer with the same connection settings fetches it fresh.
    """
    if not refresh and tp in consumer.assignment():
        hw = consumer.highwater(tp)
        if hw is not None:
            return hw
    return partition_ends(consumer, [tp], timeout_s=timeout_s)[tp]


class _TimestampProbe:
    """Reads record timestamps at given offsets, caching every record a fetch returns."""

    def __init__(self, consumer: KafkaConsumer, timeout_s: float) -> None:
        self.c = consumer
        self.timeout_s = timeout_s
        self.cache: dict[tuple[TopicPartition, int], int] = {}

    def at(self, tp: TopicPartition, offset: int) -> int:
        key = (tp, offset)
        if key in self.cache:
            return self.cache[key]
        self.c.seek(tp, offset)
        deadline = time.monotonic() + self.timeout_s
        while key not in self.cache:
            got = self.c.poll(timeout_ms=200)
            for recs in got.values():
                for r in recs:
                    self.cache[(TopicPartition(r.topic, r.partition), r.offset)] = r.timestamp
            if key not in self.cache:
                # gaps (compaction, transaction markers): take the next offset fetched
                later = sorted(o for (t, o) in self.cache if t == tp and o > offset)
                if later and got:
                    return self.cache[(tp, later[0])]
                if time.monotonic() > deadline:
                    raise KafkaPlumbingError(f"no record at {tp} offset {offset} within {self.timeout_s:g}s")
                self.c.seek(tp, offset)
        return self.cache[key]


def offsets_for_times(
    config: KafkaSettings | KafkaConsumer | Mapping[str, Any],
    timestamps: Mapping[TopicPartition, int],
    *,
    timeout_s: float = 10.0,
) -> dict[TopicPartition, int | None]:
    """For each partition, the first offset whose record timestamp is ``>=`` the target (ms).

    ``None`` means no such record (seek to the end). The broker's own answer
    (``KafkaConsumer.offsets_for_times``) is used when it checks out against the
    records (2 fetches); otherwise (Tansu answers 0 for any timestamp) a binary search
    over offsets finds it, assuming timestamps do not decrease within a partition.
    """
    tps = list(timestamps)
    if not tps:
        return {}
    cfg = _connection_config(config)
    ends = partition_ends(cfg, tps, timeout_s=timeout_s)
    probe = _probe_consumer(cfg)
    try:
        probe.assign(tps)
        begins = probe.beginning_offsets(tps, timeout_ms=int(timeout_s * 1000))
        try:
            answer = probe.offsets_for_times({tp: int(timestamps[tp]) for tp in tps}, timeout_ms=int(timeout_s * 1000))
        except (kafka_errors.KafkaError, ValueError) as exc:  # unsupported: search only
            log.debug("offsets_for_times not usable (%s); searching", exc)
            answer = {}
        ts_at = _TimestampProbe(probe, timeout_s)
        out: dict[TopicPartition, int | None] = {}
        for tp in tps:
            target, lo, hi = int(timestamps[tp]), begins.get(tp, 0), ends[tp]
            if lo >= hi:
                out[tp] = None
                continue
            got = answer.get(tp)
            cand = got.offset if got is not None else None
            if cand is None:
                if ts_at.at(tp, hi - 1) < target:
                    out[tp] = None
                    continue
            elif lo <= cand < hi and ts_at.at(tp, cand) >= target and (cand == lo or ts_at.at(tp, cand - 1) < target):
                out[tp] = cand
                continue
            # the broker's answer is wrong (Tansu): binary search on [lo, hi)
            while lo < hi:
                mid = (lo + hi) // 2
                if ts_at.at(tp, mid) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            out[tp] = lo if lo < ends[tp] else None
        return out
    finally:
        probe.close()


def describe_group(settings: KafkaSettings | Mapping[str, Any], group_id: str) -> dict[str, Any]:
    """``describe_groups`` for one group, robust to Tansu's ACL bits.

    kafka-python converts the group's ``authorized_operations`` bit set into
    ``ACLOperation`` values and fails (``ValueError: 15 is not a valid ACLOperation``)
    on Tansu's; this keeps the raw integers instead. Returns kafka-python's dict
    (``group_state``, ``protocol_type``, ``members`` ...).
    """
    admin = _admin(settings)
    try:
        try:
            return admin.describe_groups([group_id])[group_id]
        except ValueError as exc:
            log.debug("describe_groups failed on ACL bits (%s); retrying without decoding them", exc)
            admin._process_acl_operations = lambda d: d  # instance override of the decoder
            return admin.describe_groups([group_id])[group_id]
    finally:
        admin.close()


def committed_offsets(settings: KafkaSettings | Mapping[str, Any], group_id: str) -> dict[TopicPartition, int]:
    """A group's committed offsets, read through the admin API (metadata is dropped)."""
    admin = _admin(settings)
    try:
        got = admin.list_group_offsets({group_id: None}).get(group_id, {})
        return {tp: om.offset for tp, om in got.items() if om is not None and om.offset >= 0}
    finally:
        admin.close()
