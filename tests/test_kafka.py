"""Kafka source and sink against the real embedded broker (never a mock)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from streams.kafka import (
    DeliveryError,
    KafkaSettings,
    SeekOutOfRangeError,
    Sink,
    Source,
    TopicPartition,
    committed_offsets,
    create_topics,
    describe_group,
    partition_ends,
    topic_partitions,
)

pytestmark = pytest.mark.broker

#: Group settings that keep Tansu's rebalances short.
FAST_GROUP = dict(session_timeout_ms=6000, heartbeat_interval_ms=300, max_poll_interval_ms=20000)


@pytest.fixture
def settings(broker):
    return KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-test")


def drain(source: Source, n: int, timeout_s: float = 30.0) -> list:
    """Poll until ``n`` records arrived (fails with what was seen on timeout)."""
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out.extend(source.poll(0.3))
    assert len(out) >= n, f"got {len(out)} of {n} records"
    return out


def test_create_topics_is_idempotent(settings, topic_factory):
    a, b, c = topic_factory("a"), topic_factory("b"), topic_factory("c")
    assert create_topics(settings, {a: 4, b: 1}) == {a: "created", b: "created"}
    assert create_topics(settings, {a: 4, b: 1}) == {a: "exists", b: "exists"}
    assert len(topic_partitions(settings, a)) == 4
    assert create_topics(settings, [c], compacted=True) == {c: "created"}
    assert topic_partitions(settings, "does-not-exist-" + a) == []


def test_sink_source_round_trip_keys_headers_timestamps(settings, fresh_topic):
    create_topics(settings, {fresh_topic: 3})
    ts0 = 1_700_000_000_000
    with Sink(settings, linger_ms=20) as sink:
        for i in range(60):
            sink.send(
                fresh_topic,
                {"i": i} if i % 3 == 0 else (f"v{i}" if i % 3 == 1 else f"v{i}".encode()),
                key=f"sensor-{i % 7}",
                headers={"seq": str(i), "src": b"test"},
                timestamp_ms=ts0 + i,
            )
        sink.flush()
    assert sink.sent == 60
    with Source(settings, fresh_topic, "g-" + fresh_topic, **FAST_GROUP) as src:
        recs = drain(src, 60)
    assert len(recs) == 60
    parts_by_key = defaultdict(set)
    for r in recs:
        parts_by_key[r.key].add(r.partition)
        h = dict(r.headers)
        i = int(h["seq"])
        assert h["src"] == b"test" and r.timestamp == ts0 + i and r.key == f"sensor-{i % 7}".encode()
        assert r.value == (b'{"i":%d}' % i if i % 3 == 0 else f"v{i}".encode())
    assert all(len(p) == 1 for p in parts_by_key.values()), parts_by_key
    assert sorted(int(dict(r.headers)["seq"]) for r in recs) == list(range(60))


def test_manual_commit_and_resume_after_restart(settings, fresh_topic):
    create_topics(settings, {fresh_topic: 2})
    with Sink(settings) as sink:
        for i in range(40):
            sink.send(fresh_topic, str(i), key=str(i % 4))
    group = "g-" + fresh_topic
    src = Source(settings, fresh_topic, group, **FAST_GROUP).open()
    first = drain(src, 40)
    # process (and commit) only the first 5 records of each partition
    done = defaultdict(list)
    for r in first:
        if len(done[r.partition]) < 5:
            done[r.partition].append(r)
    committed = src.commit({TopicPartition(fresh_topic, p): rs[-1].offset + 1 for p, rs in done.items()})
    assert committed_offsets(settings, group) == committed
    src.close()  # no commit on close: the rest must come again
    src2 = Source(settings, fresh_topic, group, **FAST_GROUP).open()
    try:
        again = drain(src2, 40 - 5 * len(done))
        seen = {(r.partition, r.offset) for r in again}
        expected = {(r.partition, r.offset) for r in first} - {(r.partition, r.offset) for rs in done.values() for r in rs}
        assert seen == expected
        src2.commit()  # default: positions of everything polled
        for tp in src2.assignment():
            assert src2.committed(tp) == partition_ends(settings, [tp])[tp]
        assert all(v == 0 for v in src2.lag().values())
    finally:
        src2.close()


class Poller(threading.Thread):
    """Drives one Source in its own thread, as one process per member would."""

    def __init__(self, source: Source) -> None:
        super().__init__(daemon=True)
        self.source, self.records, self.stop = source, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.records.extend(self.source.poll(0.2))

    def halt(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def test_rebalance_hooks_two_consumers(settings, fresh_topic):
    create_topics(settings, {fresh_topic: 4})
    with Sink(settings) as sink:
        for i in range(20):
            sink.send(fresh_topic, str(i), partition=i % 4)
    group = "g-" + fresh_topic
    events: list[tuple[str, str, frozenset]] = []
    sources: dict[str, Source] = {}

    def hooks(name):
        def on_assign(tps):
            events.append((name, "assign", frozenset(tp.partition for tp in tps)))

        def on_revoke(tps):
            events.append((name, "revoke", frozenset(tp.partition for tp in tps)))
            sources[name].commit()  # a blocking commit here raises RuntimeError: Source sends it async

        return dict(on_assign=on_assign, on_revoke=on_revoke)

    a = sources["a"] = Source(settings, fresh_topic, group, **hooks("a"), **FAST_GROUP).open()
    pollers: list[Poller] = []
    try:
        assert a.wait_for_assignment() == {TopicPartition(fresh_topic, p) for p in range(4)}
        assert len(drain(a, 20)) == 20  # a consumed everything; nothing committed explicitly
        pollers.append(Poller(a))
        b = sources["b"] = Source(settings, fresh_topic, group, **hooks("b"), **FAST_GROUP).open()
        pollers.append(Poller(b))
        for p in pollers:
            p.start()

        def split():
            pa, pb = set(a.consumer.assignment()), set(b.consumer.assignment())
            return pa and pb and not (pa & pb) and len(pa | pb) == 4

        deadline = time.monotonic() + 60
        while not split() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let b's first fetch happen
        for p in pollers:
            p.halt()
        pa, pb = a.assignment(), b.assignment()
        assert split(), (pa, pb, events)
        assert events[:2] == [("a", "assign", frozenset(range(4))), ("a", "revoke", frozenset(range(4)))]
        assert ("a", "assign", frozenset(tp.partition for tp in pa)) in events
        assert ("b", "assign", frozenset(tp.partition for tp in pb)) in events
        assert not a.hook_errors and not b.hook_errors
        # a's consumed positions were committed when its partitions were revoked: b re-reads nothing
        assert pollers[1].records == []
        assert {tp: b.position(tp) for tp in pb} == partition_ends(settings, pb)
        assert committed_offsets(settings, group) == partition_ends(settings, pa | pb)
    finally:
        for p in pollers:
            p.stop.set()
        for s in sources.values():
            s.close()


def test_lag_end_offsets_seek_and_seek_to_time(settings, fresh_topic):
    create_topics(settings, {fresh_topic: 1})
    tp = TopicPartition(fresh_topic, 0)
    ts0 = 1_700_000_000_000
    with Sink(settings, linger_ms=50) as sink:
        for batch in range(4):  # several batches: Tansu's end_offsets would say 31, not 40
            for i in range(10):
                n = batch * 10 + i
                sink.send(fresh_topic, str(n), key="k", timestamp_ms=ts0 + 1000 * n)
            sink.flush()
    with Source(settings, fresh_topic, "g-" + fresh_topic, **FAST_GROUP) as src:
        src.wait_for_assignment()
        assert src.end_offsets() == {tp: 40}
        assert src.lag(refresh=True) == {tp: 40 - src.position(tp)}
        got = drain(src, 40)
        assert [r.offset for r in got] == list(range(40))
        assert src.lag() == {tp: 0} and src.highwater(tp) == 40
        assert src.seek_to_time(ts0 + 17_000) == {tp: 17}
        assert src.poll(5.0)[0].offset == 17
        assert src.seek_to_time(ts0 + 17_500) == {tp: 18}
        assert src.seek_to_time(0) == {tp: 0}
        assert src.seek_to_time(ts0 + 10**9) == {tp: 40}  # after the last record: the end
        with pytest.raises(SeekOutOfRangeError, match=r"range \[0, 40\]"):
            src.seek(tp, 41)
        src.seek(tp, 40)
        assert src.seek_to_end() == {tp: 40}


def test_describe_group_and_committed(settings, fresh_topic):
    create_topics(settings, {fresh_topic: 2})
    with Sink(settings) as sink:
        sink.send(fresh_topic, "x", key="k")
    group = "g-" + fresh_topic
    with Source(settings, fresh_topic, group, **FAST_GROUP) as src:
        drain(src, 1)
        committed = src.commit()
        d = describe_group(settings, group)
        assert d["group_state"] == "Stable" and len(d["members"]) == 1
    assert committed_offsets(settings, group) == committed


def _short_lived_sink(own_broker, topic):
    """A broker of the test's own (to stop) and a sink that gives up on it within ~1.5 s."""
    b = own_broker()
    s = KafkaSettings(bootstrap_servers=b.bootstrap)
    create_topics(s, {topic: 1})
    return b, Sink(s, producer_options=dict(delivery_timeout_ms=1500, request_timeout_ms=1000, max_block_ms=1500,
                                            retries=0))


def test_sink_flush_reports_failed_delivery(own_broker, fresh_topic):
    b, sink = _short_lived_sink(own_broker, fresh_topic)
    try:
        sink.send(fresh_topic, "ok")
        sink.flush()
        b.stop(timeout=0.5)
        sink.send(fresh_topic, "lost")
        with pytest.raises(DeliveryError, match="1 record"):
            sink.flush(timeout_s=10)
    finally:
        sink.close(timeout_s=1)


def test_keyed_partitioner_matches_the_producers_default(settings):
    """Sink.keyed_partitioner picks the partition kafka-python's default partitioner picks for a key
    (records sent with it land where key-only sends land), and remembers it."""
    import uuid

    topic = f"kp-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 5})
    with Sink(settings) as sink:
        part = sink.keyed_partitioner(topic)
        for i in range(40):
            key = f"series-{i}".encode()
            by_default = sink.send(topic, b"x", key=key).get(timeout=10).partition
            assert part(key) == by_default == sink.send(topic, b"y", key=key, partition=part(key)).get(timeout=10).partition
        assert len({part(f"series-{i}".encode()) for i in range(40)}) > 1


def test_sink_send_batch_falls_back_to_send(settings):
    """Where kafka-python's internals are not what send_batch expects, it sends record by record."""
    import uuid

    topic = f"sbf-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 1})
    recs = [(b"k%d" % i, b"v%d" % i) for i in range(30)]
    with Sink(settings) as sink:
        sink._bulk_ok = False
        futs = sink.send_batch(topic, 0, recs)
        assert len(futs) == 30 and sink.sent == 30
        sink.flush()
        assert [f.get(timeout=5).offset for f in futs] == list(range(30))
    with Source(settings, [topic], group_id=f"g-{topic}", auto_offset_reset="earliest") as src:
        src.wait_for_assignment()
        assert [(r.key, r.value) for r in drain(src, 30)] == recs


def test_sink_send_batch_without_waking_is_delivered_after_one_wake(settings):
    """send_batch(wake=False) on several partitions, then one Sink.wake() (the daemon's emission): every
    record arrives, without a flush."""
    import uuid

    topic = f"sbw-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 3})
    with Sink(settings, linger_ms=5) as sink:
        futs = [f for p in range(3) for f in sink.send_batch(topic, p, [(b"k", b"p%d-%d" % (p, i)) for i in range(20)],
                                                                 wake=False)]
        sink.wake()
        metas = [f.get(timeout=10) for f in futs]  # (no flush: the sender was woken once)
        assert sorted(m.partition for m in metas) == [0, 1, 2]
    with Source(settings, [topic], group_id=f"g-{topic}", auto_offset_reset="earliest") as src:
        src.wait_for_assignment()
        got = drain(src, 60)
    assert sorted(r.value for r in got) == sorted(b"p%d-%d" % (p, i) for p in range(3) for i in range(20))


def test_sink_send_batch_without_a_partition_lets_the_producer_place_each_record(settings):
    """partition=None (a user partitioner: keyed_partitioner gives None) sends record by record, each
    where the producer's partitioner puts its key."""
    import uuid

    topic = f"sbn-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 3})
    recs = [(b"key-%d" % (i % 9), b"v%d" % i) for i in range(45)]
    with Sink(settings) as sink:
        futs = sink.send_batch(topic, None, recs)
        sink.flush()
        where = sink.keyed_partitioner(topic)
        assert [f.get(timeout=5).partition for f in futs] == [where(k) for k, _ in recs]
    assert len({where(k) for k, _ in recs}) > 1


def test_sink_send_batch_in_order_with_sends_and_large_records(settings):
    """send_batch delivers every record to its partition in order, interleaved with send() on the same
    partition, keys and values intact (null ones too), across several record batches (small
    batch_size), a record bigger than a batch included; flush waits for all of them."""
    import uuid

    topic = f"sb-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 2})
    expect: dict[int, list] = {0: [], 1: []}
    with Sink(settings, batch_size=2048, linger_ms=50) as sink:
        n = 0
        for rnd in range(6):
            for p in (0, 1):
                recs = [(f"k{p}-{n + j}".encode() if j % 7 else None, (b"v%d-" % (n + j)) * (1 + j % 5))
                        for j in range(150)]
                if rnd == 3:
                    recs.append((b"big", b"x" * 5000))  # bigger than batch_size: a batch of its own
                    recs.append((b"null-value", None))
                futs = sink.send_batch(topic, p, recs)
                assert futs and len(futs) >= 2  # 150 records of ~10-40 bytes do not fit one 2 KiB batch
                expect[p] += recs
                n += len(recs)
                sink.send(topic, b"single-%d" % n, key=b"s", partition=p)  # behind this batch, before the next
                expect[p].append((b"s", b"single-%d" % n))
        assert sink.sent == n + 12
        sink.flush()
        for f in futs:
            assert f.get(timeout=5).partition == 1
    got: dict[int, list] = {0: [], 1: []}
    with Source(settings, [topic], group_id=f"g-{topic}", auto_offset_reset="earliest") as src:
        src.wait_for_assignment()
        for r in drain(src, sum(map(len, expect.values()))):
            got[r.partition].append((r.key, r.value))
            assert r.headers == [] and r.timestamp > 0
    assert got == expect


def test_sink_send_batch_records_carry_the_time_of_their_call(settings):
    """Records that a later send_batch call adds to a still open batch carry that call's time (not the
    time the batch was opened): the daemon's and the latency bench's timestamps depend on it."""
    import uuid

    topic = f"sbt-{uuid.uuid4().hex[:8]}"
    create_topics(settings, {topic: 1})
    stamps = []
    with Sink(settings, linger_ms=1000) as sink:  # the first call's batch stays open for the later ones
        for i in range(3):
            stamps.append(time.time() * 1000)
            sink.send_batch(topic, 0, [(b"k", b"%d-%d" % (i, j)) for j in range(5)])
            time.sleep(0.15)
        sink.flush()
    with Source(settings, [topic], group_id=f"g-{topic}", auto_offset_reset="earliest") as src:
        src.wait_for_assignment()
        recs = drain(src, 15)
    for r in recs:
        i = int(r.value.split(b"-")[0])
        assert stamps[i] - 2 <= r.timestamp <= stamps[i] + 100, (i, r.timestamp - stamps[i])


def test_sink_send_batch_refuses_a_missing_partition_and_counts_failed_records(own_broker, fresh_topic):
    b, sink = _short_lived_sink(own_broker, fresh_topic)
    try:
        with pytest.raises(Exception, match="no partition 3"):
            sink.send_batch(fresh_topic, 3, [(b"k", b"v")])
        sink.send_batch(fresh_topic, 0, [(b"k", b"ok")] * 10)
        sink.flush()
        b.stop(timeout=0.5)
        sink.send_batch(fresh_topic, 0, [(b"k", b"lost")] * 25)
        with pytest.raises(DeliveryError, match="25 record"):
            sink.flush(timeout_s=10)
    finally:
        sink.close(timeout_s=1)
