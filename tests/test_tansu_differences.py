"""Every Tansu 0.6 / kafka-python 3.0.12 difference from Apache Kafka that anomon works around.

Each test pins the observed behaviour (the "quirk") and checks that the workaround in
``streams.kafka`` / ``streams.broker`` gives the right answer. If a quirk assertion starts
failing after an upgrade, the difference is gone: update the README's operations notes and
consider dropping the workaround (keep the workaround assertion).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from streams.kafka import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaSettings,
    OffsetAndMetadata,
    SeekOutOfRangeError,
    Sink,
    Source,
    TopicPartition,
    committed_offsets,
    create_topics,
    describe_group,
    offsets_for_times,
    partition_end,
    partition_ends,
)
from kafka import OffsetSpec  # after streams.kafka: already imported, no warning
from kafka.consumer.subscription_state import ConsumerRebalanceListener

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.broker
FAST_GROUP = dict(session_timeout_ms=6000, heartbeat_interval_ms=300, max_poll_interval_ms=20000)
TS0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def two_batches(broker, tmp_path_factory):
    """A 1-partition topic holding offsets 0..9 in two record batches (0-4, 5-9), ts = TS0 + 1000*offset."""
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-quirks")
    topic = f"quirks-{os.getpid()}-{time.monotonic_ns()}"
    create_topics(settings, {topic: 1})
    with Sink(settings, linger_ms=50) as sink:
        for batch in (range(0, 5), range(5, 10)):
            for i in batch:
                sink.send(topic, f"v{i}", key="k", timestamp_ms=TS0 + 1000 * i)
            sink.flush()
    return settings, TopicPartition(topic, 0)


def _raw_consumer(settings: KafkaSettings, **kw) -> KafkaConsumer:
    return KafkaConsumer(**settings.to_kafka_python(), enable_auto_commit=False, **kw)


def test_end_offsets_seek_to_end_and_admin_latest_report_last_batch_start_plus_one(two_batches):
    settings, tp = two_batches
    c = _raw_consumer(settings)
    admin = KafkaAdminClient(**settings.to_kafka_python())
    try:
        c.assign([tp])
        # quirk: the real end is 10; Tansu answers 6 = start of the last batch (5) + 1
        assert c.end_offsets([tp]) == {tp: 6}
        c.seek_to_end(tp)
        assert c.position(tp) == 6
        assert admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset == 6
        # the high watermark of a fetch is right
        c.seek(tp, 0)
        got = c.poll(timeout_ms=5000)
        assert sum(len(v) for v in got.values()) == 10 and c.highwater(tp) == 10
    finally:
        c.close()
        admin.close()
    # workaround
    assert partition_ends(settings, [tp]) == {tp: 10}
    c = _raw_consumer(settings)
    try:
        c.assign([tp])
        assert partition_end(c, tp) == 10
    finally:
        c.close()


def test_offsets_for_times_ignores_the_timestamp(two_batches):
    settings, tp = two_batches
    c = _raw_consumer(settings)
    try:
        c.assign([tp])
        # quirk: Kafka answers offset 7 for TS0+7000 and None after the last record; Tansu answers 0 for both
        assert c.offsets_for_times({tp: TS0 + 7000})[tp].offset == 0
        assert c.offsets_for_times({tp: TS0 + 10**9})[tp].offset == 0
    finally:
        c.close()
    # workaround: verify the broker's answer against record timestamps, else binary search
    assert offsets_for_times(settings, {tp: TS0 + 7000}) == {tp: 7}
    assert offsets_for_times(settings, {tp: TS0 + 6500}) == {tp: 7}
    assert offsets_for_times(settings, {tp: TS0}) == {tp: 0}
    assert offsets_for_times(settings, {tp: TS0 + 10**9}) == {tp: None}


def test_delete_records_is_refused_so_the_memory_log_only_grows(broker):
    """Tansu 0.6 (memory storage) keeps every batch: DeleteRecords drops the connection and the
    records stay readable (it also ignores ``retention.ms``). Each fetch that returns data lists
    every batch stored in the partition, so a long run costs the broker more CPU per fetch as the
    log grows; ``anomon bench soak`` therefore sends fewer, larger batches (README, benchmarks)."""
    from kafka.errors import KafkaError

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-quirks")
    topic = f"quirks-del-{os.getpid()}-{time.monotonic_ns()}"
    create_topics(settings, {topic: 1})
    tp = TopicPartition(topic, 0)
    with Sink(settings, linger_ms=20) as sink:
        for i in range(4):
            sink.send(topic, f"v{i}", key="k")
        sink.flush()
    admin = KafkaAdminClient(**settings.to_kafka_python())
    try:
        with pytest.raises(KafkaError):  # quirk: Kafka would move the log start to 2
            admin.delete_records({tp: 2})
    finally:
        admin.close()
    c = _raw_consumer(settings, auto_offset_reset="earliest")
    try:  # the records are still there, from offset 0
        c.assign([tp])
        c.seek(tp, 0)
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 4 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.extend(r.offset for r in recs)
        assert got[:1] == [0] and len(got) == 4
    finally:
        c.close()


def test_seek_past_the_end_is_silent(two_batches):
    settings, tp = two_batches
    c = _raw_consumer(settings)
    try:
        c.assign([tp])
        c.seek(tp, 50)  # quirk: no error now, no records, no reset later
        assert c.poll(timeout_ms=1000) == {}
        assert c.position(tp) == 50
    finally:
        c.close()
    # workaround: Source.seek checks the bounds
    with Source(settings, tp.topic, f"g-seek-{tp.topic}", **FAST_GROUP) as src:
        src.wait_for_assignment()
        with pytest.raises(SeekOutOfRangeError, match=r"offset 50 is outside .*\[0, 10\]"):
            src.seek(tp, 50)
        src.seek(tp, 10)  # the end itself is fine
        assert src.position(tp) == 10


class _CommitInListener(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.consumer: KafkaConsumer | None = None
        self.errors: list[BaseException] = []

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        try:
            self.consumer.commit({tp: OffsetAndMetadata(1, "", -1) for tp in assigned})
        except Exception as exc:  # noqa: BLE001 - the quirk under test
            self.errors.append(exc)


def test_commit_inside_rebalance_listener_raises_and_metadata_is_dropped_and_describe_groups_fails(two_batches):
    """One group join (~3 s on Tansu) serves three differences."""
    settings, tp = two_batches
    group = f"g-raw-{tp.topic}"
    listener = _CommitInListener()
    c = _raw_consumer(settings, group_id=group, auto_offset_reset="earliest", **FAST_GROUP)
    listener.consumer = c
    admin = KafkaAdminClient(**settings.to_kafka_python())
    try:
        c.subscribe([tp.topic], listener=listener)
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(timeout_ms=5000)
        assert c.assignment() == {tp}
        # quirk 1: a blocking commit() in the listener raises RuntimeError (the listener runs on kafka-python's IO thread)
        assert len(listener.errors) == 1 and isinstance(listener.errors[0], RuntimeError)
        assert "Cannot block on net.run() from the IO thread" in str(listener.errors[0])

        # quirk 2: committed offsets come back without their metadata string
        c.commit({tp: OffsetAndMetadata(3, "anomon-meta", -1)})
        back = c.committed(tp, metadata=True)
        assert back.offset == 3 and back.metadata in (None, "")  # Kafka returns "anomon-meta"
        # workaround: nothing relies on metadata; the offsets themselves are right
        assert committed_offsets(settings, group) == {tp: 3}

        # quirk 3: kafka-python's describe_groups fails on Tansu's authorized-operations bits
        with pytest.raises(ValueError, match="is not a valid ACLOperation"):
            admin.describe_groups([group])
        # workaround
        d = describe_group(settings, group)
        assert d["group_state"] == "Stable" and len(d["members"]) == 1
    finally:
        c.close(autocommit=False)
        admin.close()


def test_commit_inside_a_source_hook_is_sent_async(two_batches):
    settings, tp = two_batches
    group = f"g-hook-{tp.topic}"
    holder: dict[str, Source] = {}

    def on_assign(tps):
        holder["src"].commit({t: 2 for t in tps})  # would raise RuntimeError if it blocked

    src = holder["src"] = Source(settings, tp.topic, group, on_assign=on_assign, **FAST_GROUP)
    with src:
        src.wait_for_assignment()
        src.poll(0.5)
        assert not src.hook_errors
        deadline = time.monotonic() + 10
        while committed_offsets(settings, group) != {tp: 2} and time.monotonic() < deadline:
            src.poll(0.2)
        assert committed_offsets(settings, group) == {tp: 2}


def test_import_kafka_emits_deprecation_warnings():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    raw = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", "import kafka"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert raw.returncode != 0 and "DeprecationWarning" in raw.stderr  # quirk
    # A filter on module kafka.* alone is not enough: one of the warnings is attributed to importlib.resources.
    code = (
        "import warnings; warnings.filterwarnings('error', category=DeprecationWarning);"
        "warnings.filterwarnings('ignore', category=DeprecationWarning, module='kafka.*');"
        "import kafka"
    )
    partial = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert partial.returncode != 0 and "open_text is deprecated" in partial.stderr
    # workaround: streams.kafka imports kafka with DeprecationWarning silenced
    ok = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", "import streams.kafka, kafka"],
                        capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_broker_does_not_exit_promptly_on_sigterm_with_a_client_connected(own_broker):
    b = own_broker()
    pid = b.pid
    conn = socket.create_connection(("127.0.0.1", b.port))  # any open client connection
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # quirk: still running 1 s later
            time.sleep(0.1)
        assert b.running
        # workaround: stop() escalates to SIGKILL after its timeout
        b.stop(timeout=0.5)
        assert b.last_stop_killed is True and not b.running
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        conn.close()
