"""The librdkafka backend (streams.kafka.confluent) against the real embedded broker (never a mock):
the cases of tests/test_kafka.py that matter, codecs, transactions, and agreement with the kafka-python Sink."""
from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from streams.kafka import (
    DeliveryError,
    KafkaPlumbingError,
    KafkaSettings,
    SeekOutOfRangeError,
    Sink,
    Source,
    TopicPartition,
    committed_offsets,
    create_topics,
    partition_ends,
)
from streams.kafka.confluent import ConfluentSink, ConfluentSource, to_librdkafka

pytestmark = pytest.mark.broker

FAST_GROUP = dict(session_timeout_ms=6000, heartbeat_interval_ms=300, max_poll_interval_ms=20000)


@pytest.fixture
def settings(broker):
    return KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-test")


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def grouped(records: list) -> list:
    """``records`` (one poll's), checked to come in one run per partition, in offset order (the daemon's
    groupby relies on it)."""
    runs = [(r.topic, r.partition) for j, r in enumerate(records)
            if j == 0 or (records[j - 1].topic, records[j - 1].partition) != (r.topic, r.partition)]
    assert len(runs) == len(set(runs)), runs
    for tp in runs:
        offs = [r.offset for r in records if (r.topic, r.partition) == tp]
        assert offs == sorted(set(offs)), (tp, offs)
    return records


def drain(source, n: int, timeout_s: float = 30.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out.extend(grouped(source.poll(0.3)))
    assert len(out) >= n, f"got {len(out)} of {n} records"
    return out


def test_settings_map_to_librdkafka_with_secrets_only_there(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = KafkaSettings(bootstrap_servers="k1:9093", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                      sasl_plain_username="u", sasl_plain_password_file=str(pw), ssl_check_hostname=False,
                      options={"fetch.min.bytes": 10, "connections_max_idle_ms": 5})
    cfg = to_librdkafka(s)
    assert cfg == {"bootstrap.servers": "k1:9093", "client.id": "anomon", "security.protocol": "sasl_ssl",
                   "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "s3cret",
                   "ssl.endpoint.identification.algorithm": "none", "fetch.min.bytes": 10}
    assert "s3cret" not in repr(s)


def test_round_trip_keys_headers_null_values_timestamps(settings):
    topic = _topic("cf-rt")
    create_topics(settings, {topic: 3})
    ts0 = 1_700_000_000_000
    with ConfluentSink(settings, linger_ms=20) as sink:
        for i in range(60):
            value = None if i % 10 == 9 else ({"i": i} if i % 3 == 0 else f"v{i}")
            sink.send(topic, value, key=None if i == 4 else f"sensor-{i % 7}",
                      headers={"seq": str(i), "src": b"test"}, timestamp_ms=ts0 + i)
        sink.flush()
    assert sink.sent == 60
    with ConfluentSource(settings, topic, "g-" + topic, **FAST_GROUP) as src:
        src.wait_for_assignment()
        time.sleep(0.3)  # let the fetches of all 3 partitions arrive: one poll then spans them
        recs = drain(src, 60)
        assert src.coordinator_known()
    assert len(recs) == 60
    by_part = defaultdict(list)
    for r in recs:
        by_part[(r.topic, r.partition)].append(r.offset)
        h = dict(r.headers)
        i = int(h["seq"])
        assert h["src"] == b"test" and r.timestamp == ts0 + i
        assert r.key == (None if i == 4 else f"sensor-{i % 7}".encode())
        assert r.value == (None if i % 10 == 9 else (b'{"i":%d}' % i if i % 3 == 0 else f"v{i}".encode()))
    for offs in by_part.values():
        assert offs == sorted(offs)
    # grouped by partition within each poll, as the daemon's groupby expects
    assert sorted(int(dict(r.headers)["seq"]) for r in recs) == list(range(60))


def test_commit_then_a_new_member_resumes_at_the_committed_offset(settings):
    topic = _topic("cf-commit")
    create_topics(settings, {topic: 2})
    with ConfluentSink(settings) as sink:
        for i in range(40):
            sink.send(topic, str(i), key=str(i % 4))
    group = "g-" + topic
    src = ConfluentSource(settings, topic, group, **FAST_GROUP).open()
    first = drain(src, 40)
    done = defaultdict(list)
    for r in first:
        if len(done[r.partition]) < 5:
            done[r.partition].append(r)
    committed = src.commit({TopicPartition(topic, p): rs[-1].offset + 1 for p, rs in done.items()})
    assert committed_offsets(settings, group) == committed
    src.close()  # no commit on close
    src2 = ConfluentSource(settings, topic, group, **FAST_GROUP).open()
    try:
        again = drain(src2, 40 - 5 * len(done))
        expected = {(r.partition, r.offset) for r in first} - {(r.partition, r.offset) for rs in done.values() for r in rs}
        assert {(r.partition, r.offset) for r in again} == expected
        src2.commit()
        ends = partition_ends(settings, src2.assignment())
        for tp in src2.assignment():
            assert src2.committed(tp) == ends[tp] == src2.position(tp)
        assert all(v == 0 for v in src2.lag().values())
        # commit_async: sent without waiting, visible after the next poll; errors go to on_error
        errors: list = []
        tp0 = TopicPartition(topic, 0)
        src2.commit_async({tp0: 3}, on_error=errors.append)
        deadline = time.monotonic() + 10
        while committed_offsets(settings, group).get(tp0) != 3 and time.monotonic() < deadline:
            src2.poll(0.1)
        assert committed_offsets(settings, group)[tp0] == 3 and errors == []
    finally:
        src2.close()


def test_kafka_python_source_commit_async_and_coordinator_known(settings):
    topic = _topic("kp-async")
    create_topics(settings, {topic: 1})
    with Sink(settings) as sink:
        for i in range(5):
            sink.send(topic, str(i))
    group = "g-" + topic
    with Source(settings, topic, group, **FAST_GROUP) as src:
        drain(src, 5)
        assert src.coordinator_known()
        errors: list = []
        tp = TopicPartition(topic, 0)
        src.commit_async({tp: 4}, on_error=errors.append)
        deadline = time.monotonic() + 10
        while committed_offsets(settings, group).get(tp) != 4 and time.monotonic() < deadline:
            src.poll(0.1)
        assert committed_offsets(settings, group)[tp] == 4 and errors == []
    assert not src.coordinator_known()


def test_lag_end_offsets_seek_and_seek_to_time(settings):
    topic = _topic("cf-seek")
    create_topics(settings, {topic: 1})
    tp = TopicPartition(topic, 0)
    ts0 = 1_700_000_000_000
    with ConfluentSink(settings, linger_ms=50) as sink:
        for batch in range(4):  # several batches: Tansu's ListOffsets would say 31, not 40
            for i in range(10):
                n = batch * 10 + i
                sink.send(topic, str(n), key="k", timestamp_ms=ts0 + 1000 * n)
            sink.flush()
    with ConfluentSource(settings, topic, "g-" + topic, **FAST_GROUP) as src:
        src.wait_for_assignment()
        assert src.end_offsets() == {tp: 40}
        assert src.lag(refresh=True) == {tp: 40 - src.position(tp)}
        got = drain(src, 40)
        assert [r.offset for r in got] == list(range(40))
        assert src.lag() == {tp: 0} and src.highwater(tp) == 40
        assert src.seek_to_time(ts0 + 17_000) == {tp: 17}
        assert drain(src, 1, 5.0)[0].offset == 17
        assert src.seek_to_time(ts0 + 17_500) == {tp: 18}
        assert drain(src, 1, 5.0)[0].offset == 18
        assert src.seek_to_time(0) == {tp: 0}
        assert src.seek_to_time(ts0 + 10**9) == {tp: 40}
        with pytest.raises(SeekOutOfRangeError, match=r"range \[0, 40\]"):
            src.seek(tp, 41)
        src.seek(tp, 35)
        assert src.position(tp) == 35 and src.commit() == {}  # as kafka-python's: only what poll returned
        assert [r.offset for r in drain(src, 5, 5.0)] == [35, 36, 37, 38, 39]
        assert src.seek_to_end() == {tp: 40}
        src.seek_to_beginning()
        assert drain(src, 1, 5.0)[0].offset == 0


class Poller(threading.Thread):
    def __init__(self, source) -> None:
        super().__init__(daemon=True)
        self.source, self.records, self.stop = source, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.records.extend(self.source.poll(0.2))

    def halt(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def test_two_members_split_four_partitions_with_incremental_hooks(settings):
    topic = _topic("cf-reb")
    create_topics(settings, {topic: 4})
    with ConfluentSink(settings) as sink:
        for i in range(20):
            sink.send(topic, str(i), partition=i % 4)
    group = "g-" + topic
    events: list[tuple[str, str, frozenset]] = []
    sources: dict[str, ConfluentSource] = {}

    def hooks(name):
        def on_assign(tps):
            events.append((name, "assign", frozenset(tp.partition for tp in tps)))

        def on_revoke(tps):
            events.append((name, "revoke", frozenset(tp.partition for tp in tps)))
            sources[name].commit()  # a commit from a hook

        return dict(on_assign=on_assign, on_revoke=on_revoke)

    a = sources["a"] = ConfluentSource(settings, topic, group, **hooks("a"), **FAST_GROUP).open()
    pollers: list[Poller] = []
    try:
        assert a.wait_for_assignment() == {TopicPartition(topic, p) for p in range(4)}
        assert len(drain(a, 20)) == 20  # nothing committed explicitly
        b = sources["b"] = ConfluentSource(settings, topic, group, **hooks("b"), instance_id="member-b",
                                           **FAST_GROUP).open()
        pollers = [Poller(a), Poller(b)]
        for p in pollers:
            p.start()

        def split():
            pa, pb = a.assignment(), b.assignment()
            return pa and pb and not (pa & pb) and len(pa | pb) == 4

        deadline = time.monotonic() + 45
        while not split() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for p in pollers:
            p.halt()
        pa, pb = a.assignment(), b.assignment()
        assert split(), (pa, pb, events)
        assert events[0] == ("a", "assign", frozenset(range(4)))
        # cooperative: a gives up only what b takes, and is not handed its kept partitions again
        a_revoked = [e[2] for e in events if e[:2] == ("a", "revoke")]
        assert a_revoked and frozenset().union(*a_revoked) == frozenset(tp.partition for tp in pb)
        assert all(not e[2] for e in events[1:] if e[:2] == ("a", "assign")), events  # nothing handed back
        b_assigned = frozenset().union(*[e[2] for e in events if e[:2] == ("b", "assign")])
        assert b_assigned == frozenset(tp.partition for tp in pb)
        assert not a.hook_errors and not b.hook_errors
        # a's consumed positions were committed when its partitions were revoked: b re-reads nothing
        assert pollers[1].records == []
        assert committed_offsets(settings, group) == partition_ends(settings, pa | pb)  # (the hook committed all)
    finally:
        for p in pollers:
            p.stop.set()
        for s in sources.values():
            s.close()


def test_same_key_same_partition_as_the_kafka_python_sink(settings):
    topic = _topic("cf-keys")
    create_topics(settings, {topic: 5})
    keys = [f"series-{i}".encode() for i in range(200)]
    with ConfluentSink(settings, linger_ms=5) as csink, Sink(settings, linger_ms=5) as ksink:
        cfuts = [csink.send(topic, b"c", key=k) for k in keys]  # placed by librdkafka's partitioner
        kfuts = [ksink.send(topic, b"k", key=k) for k in keys]  # placed by kafka-python's
        csink.flush()
        ksink.flush()
        by_librdkafka = [f.get(timeout=10).partition for f in cfuts]
        by_kafka_python = [f.get(timeout=10).partition for f in kfuts]
        assert by_librdkafka == by_kafka_python
        assert csink.key_partitions(topic, keys) == by_librdkafka == ksink.key_partitions(topic, keys)
        part = csink.keyed_partitioner(topic)
        assert [part(k) for k in keys] == by_librdkafka and len(set(by_librdkafka)) == 5


def test_send_batch_to_a_partition_and_by_key(settings):
    topic = _topic("cf-batch")
    create_topics(settings, {topic: 3})
    with ConfluentSink(settings, linger_ms=5) as sink:
        futs = [f for p in range(3) for f in sink.send_batch(topic, p, [(b"k", b"p%d-%d" % (p, i)) for i in range(20)],
                                                                 wake=False)]
        sink.wake()
        assert sorted(f.get(timeout=10).partition for f in futs) == [0, 1, 2]
        keyed = [(b"key-%d" % (i % 9), b"v%d" % i) for i in range(45)]
        sink.send_batch(topic, None, keyed)
        with pytest.raises(Exception, match="no partition 3"):
            sink.send_batch(topic, 3, [(b"k", b"v")])
        sink.flush()
        where = sink.keyed_partitioner(topic)
    assert sink.sent == 105
    with ConfluentSource(settings, topic, "g-" + topic) as src:
        got = drain(src, 105)
    for p in range(3):
        assert [r.value for r in got if r.partition == p and r.value.startswith(b"p")] == \
            [b"p%d-%d" % (p, i) for i in range(20)]
    assert all(r.partition == where(r.key) for r in got if r.value.startswith(b"v"))


def test_every_codec_is_read(settings):
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    topic = _topic("cf-codec")
    create_topics(settings, {topic: len(codecs)})
    for p, codec in enumerate(codecs):
        with ConfluentSink(settings, compression_type=codec, linger_ms=20) as sink:
            sink.send_batch(topic, p, [(b"k%d" % i, (b"%s-%d " % (codec.encode(), i)) * 20) for i in range(50)])
    with ConfluentSource(settings, topic, "g-" + topic) as src:
        got = drain(src, 50 * len(codecs))
        assert src.take_unreadable() == []
    for p, codec in enumerate(codecs):
        assert [r.value for r in got if r.partition == p] == [(b"%s-%d " % (codec.encode(), i)) * 20 for i in range(50)]


def _transactions(settings, topic):
    """5 records in an aborted transaction, then 5 in a committed one (offsets 0-4, marker, 6-10, marker)."""
    p = Producer(dict(to_librdkafka(settings), **{"transactional.id": "tx-" + topic}))
    p.init_transactions(15)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, b"aborted-%d" % i)
    p.flush(10)
    p.abort_transaction(15)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, b"committed-%d" % i)
    p.commit_transaction(15)


def test_transactional_records_read_committed(settings):
    """The source reads read_committed: a committed transaction's records come out, in order, the control
    records (the markers at offsets 5 and 11) never. That aborted records stay out is Apache Kafka's part:
    Tansu 0.6 hands them to both clients (tests/test_tansu_librdkafka.py pins it)."""
    topic = _topic("cf-txn")
    create_topics(settings, {topic: 1})
    _transactions(settings, topic)
    with ConfluentSource(settings, topic, "g-" + topic) as src:
        assert src.consumer  # open
        assert src._config["isolation.level"] == "read_committed"
        got = drain(src, 5)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            got += src.poll(0.3)
        assert src.take_unreadable() == []
    committed = [(r.offset, r.value) for r in got if r.value.startswith(b"committed")]
    assert committed == [(6 + i, b"committed-%d" % i) for i in range(5)]
    assert {r.offset for r in got}.isdisjoint({5, 11})


def test_flush_raises_delivery_error_when_records_are_not_delivered(settings, own_broker):
    """A partition the topic lacks is refused at once, naming it; records the broker never takes (stopped)
    make flush raise DeliveryError with their count, and a source no longer knows its coordinator. (Tansu takes records of any size and creates unknown
    topics, so "record too large" cannot fail there.)"""
    topic = _topic("cf-fail")
    create_topics(settings, {topic: 1})
    with ConfluentSink(settings) as sink:
        with pytest.raises(KafkaPlumbingError, match=r"has no partition 7 \(partitions: \[0\]\)"):
            sink.send(topic, "nowhere", partition=7)
    b = own_broker()
    s = KafkaSettings(bootstrap_servers=b.bootstrap)
    create_topics(s, {topic: 1})
    sink = ConfluentSink(s, producer_options={"delivery_timeout_ms": 1500})
    src = ConfluentSource(s, topic, "g-" + topic, **FAST_GROUP).open()
    try:
        sink.send_batch(topic, 0, [(b"k", b"ok")] * 10)
        sink.send(topic, "ok too")
        sink.flush()
        src.wait_for_assignment()
        assert src.coordinator_known()
        b.stop(timeout=0.5)
        deadline = time.monotonic() + 10  # the group state comes with librdkafka's statistics, every second
        while src.coordinator_known() and time.monotonic() < deadline:
            src.poll(0.2)
        assert not src.coordinator_known()  # what the daemon's readiness reads
        sink.send_batch(topic, 0, [(b"k", b"lost")] * 25)
        fut = sink.send(topic, "lost too")
        with pytest.raises(DeliveryError, match="26 record"):
            sink.flush(timeout_s=10)
        with pytest.raises(DeliveryError):
            fut.get(timeout=1)
        sink.flush()  # each failure is reported once
    finally:
        sink.close(timeout_s=1)
        src.close()


def _produce_raw_batch(bootstrap: str, topic: str, batch: bytes) -> None:
    """One ProduceRequest v3 carrying ``batch`` as it is (no client would send a corrupt batch)."""
    import socket
    import struct

    def s16(x):
        return struct.pack(">h", x)

    def s32(x):
        return struct.pack(">i", x)

    def st(x):
        return s16(len(x.encode())) + x.encode()

    body = s16(-1) + s16(-1) + s32(5000) + s32(1) + st(topic) + s32(1) + s32(0) + s32(len(batch)) + batch
    req = s16(0) + s16(3) + s32(1) + st("raw-test") + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as so:
        so.sendall(s32(len(req)) + req)
        n = struct.unpack(">i", so.recv(4))[0]
        resp = b""
        while len(resp) < n:
            resp += so.recv(n - len(resp))
    assert resp[-22:-20] == b"\x00\x00", resp.hex()  # the partition's error_code 0: the broker stored it


def test_a_batch_failing_its_crc_is_skipped_listed_once_and_the_partition_goes_on(settings):
    """3 good records, a 5-record batch whose CRC does not match (offsets 3-7), 3 good records: the 6
    good ones come out, take_unreadable() names offsets 3-7 once with reason crc. Before the skip
    (librdkafka 2.16 alone) the partition stopped at the bad batch: the 3 records after it never came."""
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", DeprecationWarning)
        from kafka.record.default_records import DefaultRecordBatchBuilder

    topic = _topic("cf-crc")
    create_topics(settings, {topic: 1})
    with ConfluentSink(settings) as sink:
        sink.send_batch(topic, 0, [(None, b"before-%d" % i) for i in range(3)])
    bb = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                   producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(5):
        bb.append(i, timestamp=int(time.time() * 1000), key=b"k", value=b"corrupt-%d" % i, headers=[])
    batch = bytearray(bb.build())
    batch[-3] ^= 0xFF  # a byte of the last value: the CRC no longer matches
    _produce_raw_batch(settings.bootstrap_servers, topic, bytes(batch))
    with ConfluentSink(settings) as sink:
        sink.send_batch(topic, 0, [(None, b"after-%d" % i) for i in range(3)])
    with ConfluentSource(settings, topic, "g-" + topic) as src:
        got = drain(src, 6, timeout_s=20)
        bad = src.take_unreadable()
        assert src.position(TopicPartition(topic, 0)) == 11 and src.take_unreadable() == []
    assert [(r.offset, r.value) for r in got] == [(i, b"before-%d" % i) for i in range(3)] + \
        [(8 + i, b"after-%d" % i) for i in range(3)]
    assert [{k: v for k, v in d.items() if k != "error"} for d in bad] == [
        {"topic": topic, "partition": 0, "first_offset": 3, "last_offset": 7, "reason": "crc"}]
    assert "CRC" in bad[0]["error"]


def test_records_of_a_partition_in_several_runs_are_grouped(settings):
    """Where consume() interleaves partitions (a, b, a: the broker cannot be made to do it on demand, so
    real confluent_kafka.Message objects stand in for one consume() answer), poll groups each partition's
    records, in offset order, and notes each partition's next offset."""
    import confluent_kafka

    msgs = [confluent_kafka.Message(topic="t", partition=p, offset=o, key=b"k", value=b"%d-%d" % (p, o),
                                    headers=[("h", None)], timestamp=(1, 1000 + o))
            for p, o in [(0, 5), (0, 6), (1, 2), (0, 7), (1, 3), (2, 0)]]

    class OneAnswer:
        def consume(self, n, timeout):
            return msgs

    src = ConfluentSource(settings, "t", "g")
    src._consumer = OneAnswer()
    got = src.poll(0)
    assert [(r.partition, r.offset) for r in got] == [(0, 5), (0, 6), (0, 7), (1, 2), (1, 3), (2, 0)]
    assert got[0].headers == [("h", b"")] and got[0].timestamp == 1005 and got[0].value == b"0-5"
    assert src._consumed == {TopicPartition("t", 0): 8, TopicPartition("t", 1): 4, TopicPartition("t", 2): 1}


def test_librdkafka_options_override_the_defaults_but_not_manual_commits(settings):
    s = KafkaSettings(bootstrap_servers=settings.bootstrap_servers,
                      options={"partition.assignment.strategy": "range", "enable.auto.commit": True,
                               "fetch.queue.backoff.ms": 50})
    src = ConfluentSource(s, "t", "g", instance_id="w-1", consumer_options={"queued.min.messages": 1000})
    cfg = src._config
    assert (cfg["partition.assignment.strategy"], cfg["fetch.queue.backoff.ms"], cfg["queued.min.messages"]) == \
        ("range", 50, 1000)
    assert cfg["enable.auto.commit"] is False and cfg["group.instance.id"] == "w-1" and cfg["group.id"] == "g"
    assert cfg["isolation.level"] == "read_committed" and cfg["check.crcs"] is True
    sink = ConfluentSink(s, producer_options={"linger_ms": 7}, acks=1)
    try:
        assert sink._config["linger.ms"] == 7 and sink._config["acks"] == "1"
        assert sink._config["enable.idempotence"] is False and sink._config["partitioner"] == "murmur2_random"
    finally:
        sink.close(timeout_s=0)
