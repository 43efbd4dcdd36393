"""Tansu 0.6 differences from Apache Kafka as librdkafka (confluent-kafka 2.16) meets them.

As in tests/test_tansu_differences.py, each test pins the observed behaviour (the quirk) and checks
what ``streams.kafka.confluent`` does about it. A quirk assertion that starts failing after an
upgrade means the difference is gone: update docs/kafka.md and consider dropping the workaround.
"""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as TP

from streams.kafka import KafkaSettings, TopicPartition, create_topics
from streams.kafka.confluent import ConfluentSink, ConfluentSource, to_librdkafka

pytestmark = pytest.mark.broker
TS0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def two_batches(broker):
    """A 1-partition topic holding offsets 0..9 in two record batches (0-4, 5-9), ts = TS0 + 1000*offset."""
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-quirks-rdkafka")
    topic = f"rdq-{uuid.uuid4().hex[:10]}"
    create_topics(settings, {topic: 1})
    with ConfluentSink(settings, linger_ms=50) as sink:
        for batch in (range(0, 5), range(5, 10)):
            for i in batch:
                sink.send(topic, f"v{i}", key="k", timestamp_ms=TS0 + 1000 * i)
            sink.flush()
    return settings, topic


def _assigned(settings: KafkaSettings, topic: str, offset: int = 0) -> Consumer:
    c = Consumer(dict(to_librdkafka(settings), **{"group.id": "quirk-" + topic, "enable.auto.commit": False}))
    c.assign([TP(topic, 0, offset)])
    return c


def test_list_offsets_report_the_last_batch_start_plus_one(two_batches):
    settings, topic = two_batches
    c = _assigned(settings, topic)
    try:
        # quirk: the real end is 10; Tansu's ListOffsets answers 6 = start of the last batch (5) + 1
        assert c.get_watermark_offsets(TP(topic, 0), timeout=10) == (0, 6)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 10 and time.monotonic() < deadline:
            got += [m for m in c.consume(10, 0.3) if m.error() is None]
        # the high watermark of a fetch is right
        assert len(got) == 10 and c.get_watermark_offsets(TP(topic, 0), cached=True) == (0, 10)
    finally:
        c.close()
    # workaround: ConfluentSource's ends come from a fetch's high watermark (no group needed for it)
    src = ConfluentSource(settings, topic, "g-" + topic)
    assert src.end_offsets([TopicPartition(topic, 0)]) == {TopicPartition(topic, 0): 10}


def test_offsets_for_times_ignores_the_timestamp(two_batches):
    settings, topic = two_batches
    c = _assigned(settings, topic)
    try:
        answer = c.offsets_for_times([TP(topic, 0, TS0 + 7000)], timeout=10)[0].offset
        assert answer == 0  # quirk: offset 7 has that timestamp
    finally:
        c.close()
    from streams.kafka import offsets_for_times

    # workaround used by ConfluentSource.seek_to_time: checked against the records, binary search
    assert offsets_for_times(settings, {TopicPartition(topic, 0): TS0 + 7000}) == {TopicPartition(topic, 0): 7}


def test_aborted_transactions_are_handed_out_under_read_committed(broker):
    """Quirk without a workaround: both markers are written (offsets 5 and 11 are control records), but
    a read_committed consumer still gets the aborted records (Tansu's fetch does not list the aborted
    transactions). anomon scores them on Tansu; on Apache Kafka they stay out."""
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    topic = f"rdq-tx-{uuid.uuid4().hex[:10]}"
    create_topics(settings, {topic: 1})
    p = Producer(dict(to_librdkafka(settings), **{"transactional.id": "tx-" + topic}))
    p.init_transactions(15)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, b"aborted-%d" % i)
    p.flush(10)
    p.abort_transaction(15)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, b"committed-%d" % i)
    p.commit_transaction(15)
    c = Consumer(dict(to_librdkafka(settings), **{"group.id": "q-" + topic, "isolation.level": "read_committed",
                                                  "enable.auto.commit": False}))
    c.assign([TP(topic, 0, 0)])
    try:
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 6 and time.monotonic() < deadline:
            got += [(m.offset(), m.value()) for m in c.consume(10, 0.3) if m.error() is None]
    finally:
        c.close()
    assert got == [(i, b"aborted-%d" % i) for i in range(3)] + [(4 + i, b"committed-%d" % i) for i in range(3)]


def test_produce_creates_unknown_topics_and_takes_records_of_any_size(broker):
    """Why no test here makes the broker refuse a record: Tansu creates a topic it does not know on the
    first produce, and stores a record far above its topic's max.message.bytes."""
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    small = f"rdq-small-{uuid.uuid4().hex[:10]}"
    create_topics(settings, {small: 1}, configs={"max.message.bytes": "1000"})
    with ConfluentSink(settings, producer_options={"delivery.timeout.ms": 5000}) as sink:
        unknown = sink.send(f"rdq-unknown-{uuid.uuid4().hex[:10]}", b"x")
        big = sink.send(small, b"x" * 5000)
        sink.flush(10)
        assert unknown.get(1).offset == 0 and big.get(1).offset == 0
