"""streams.kafka.fetch reads fetched batches exactly as kafka-python 3.0.12 does (the daemon's
consumer relies on it; a regression test for a kafka-python upgrade), and a real broker's fetches too."""
from __future__ import annotations

import struct

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

import streams.kafka.fetch
from tests.fixtures.speedups import c_or_python, require_built
from streams.kafka.fetch import FastPartitionRecords, _self_test, decode_records, install_fast_fetch

TP = TopicPartition("readings", 2)
T0 = 1_700_000_000_000
_CRC_AT, _ATTR_AT, _LAST_DELTA_AT = 17, 21, 23  # positions in a v2 batch header (CRC covers from attributes)


def _batch(base: int, records: list, *, codec: int = 0, log_append: bool = False, control: bool = False,
           removed_tail: int = 0) -> bytes:
    """A v2 batch as a broker sends it; ``removed_tail``: last records removed by compaction (the
    batch keeps its last offset)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 24)
    for i, (ts, key, value, headers) in enumerate(records):
        assert b.append(i, timestamp=ts, key=key, value=value, headers=headers) is not None
    buf = bytearray(b.build())
    struct.pack_into(">q", buf, 0, base)
    if log_append or control or removed_tail:
        attrs = struct.unpack_from(">h", buf, _ATTR_AT)[0] | (0x08 if log_append else 0) | (0x20 if control else 0)
        struct.pack_into(">h", buf, _ATTR_AT, attrs)
        struct.pack_into(">i", buf, _LAST_DELTA_AT, len(records) - 1 + removed_tail)
        struct.pack_into(">I", buf, _CRC_AT, calc_crc32c(bytes(buf[_ATTR_AT:])))
    return bytes(buf)


@pytest.fixture(params=["c", "python"])
def loop(request, monkeypatch):
    """Each test runs with the C loop of decode_records (streams/_speedups.c; CI builds it) and with
    the Python loop."""
    return c_or_python(request, monkeypatch, streams.kafka.fetch, "SPEEDUPS", False)


def _drain(cls, data: bytes, fetch_offset: int, step: int | None):
    """(records, exception type or None, records_read, bytes_read, next_fetch_offset) of a full drain."""
    pr = cls(fetch_offset, TP, MemoryRecords(data))
    out, err = [], None
    try:
        while pr:
            got = pr.take(step)
            if not got:
                break
            out.extend(got)
    except Exception as exc:  # noqa: BLE001 - compared between the two readers
        err = type(exc)
    return out, err, pr.records_read, pr.bytes_read, pr.next_fetch_offset


# keys and values up to 20 KB (multi-byte length varints); above 2 KB a short random pattern repeated to
# a drawn length, so that large blobs do not overrun Hypothesis' entropy budget (data_too_large)
_large = st.tuples(st.integers(2_000, 20_000), st.binary(min_size=1, max_size=64)).map(
    lambda t: (t[1] * (t[0] // len(t[1]) + 1))[:t[0]])
blobs = st.one_of(st.none(), st.binary(max_size=30), st.binary(min_size=100, max_size=2_000), _large)
headers = st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=300))), max_size=3)
records = st.lists(st.tuples(st.integers(-10**9, 10**9), blobs, blobs, headers), min_size=1, max_size=25)
batches = st.lists(st.tuples(records, st.sampled_from([0, 1]), st.booleans(), st.integers(0, 3)), min_size=1,
                   max_size=4)


# (the loop fixture is the same for every example of a test: resetting it between them changes nothing)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches, base=st.integers(0, 2**40), skip=st.integers(0, 30), step=st.sampled_from([None, 1, 7]))
def test_fast_records_are_kafka_pythons(loop, batches, base, skip, step):
    """Offsets, timestamps (create and log-append time), keys, values, headers, sizes, gzip batches,
    control batches, a fetch offset inside the first batch, take(n) in pieces, and the counters."""
    chunks, off = [], base
    for recs, codec, log_append, gap in batches:
        control = gap == 3
        chunks.append(_batch(off, [(T0 + ts, k, v, h) for ts, k, v, h in recs], codec=codec,
                             log_append=log_append, control=control, removed_tail=gap % 3))
        off += len(recs) + gap  # gaps: offsets removed by compaction
    data = b"".join(chunks)
    want = _drain(Fetcher.PartitionRecords, data, base + skip, step)
    got = _drain(FastPartitionRecords, data, base + skip, step)
    assert want[1] is None
    assert got == want


class _Noted(FastPartitionRecords):
    """FastPartitionRecords whose skipped batches are kept (as install_fast_fetch wires them to the Source)."""
    skipped: list = []
    on_unreadable = staticmethod(lambda *a: _Noted.skipped.append(a[:5]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 10_000), byte=st.integers(0, 255), cut=st.integers(0, 3))
def test_a_batch_kafka_python_cannot_read_is_skipped_and_the_next_one_read(loop, at, byte, cut):
    """A batch whose records are damaged (with a valid CRC, so the damage reaches the record reader),
    followed by an intact batch: where kafka-python raises CorruptRecordError (and raises it again on
    every later poll: the partition and, in kafka-python, the whole consumer stop), the fast reader skips
    the damaged batch, notes it once with its offsets, and reads the next one; otherwise it reads the same."""
    recs = [(T0 + 40 * i, b"key-%d" % i, b"x" * (3 * i), [("h", b"v")] if i % 4 == 0 else []) for i in range(60)]
    buf = bytearray(_batch(5, recs))
    pos = 61 + at % (len(buf) - 61)
    buf[pos] = byte
    if cut:
        del buf[len(buf) - cut:]
        struct.pack_into(">i", buf, 8, len(buf) - 12)  # the batch length the broker would send
    struct.pack_into(">I", buf, _CRC_AT, calc_crc32c(bytes(buf[_ATTR_AT:])))
    intact = _batch(65, recs[:7])
    data = bytes(buf) + intact
    want = _drain(Fetcher.PartitionRecords, data, 0, None)
    _Noted.skipped = []
    got = _drain(_Noted, data, 0, None)
    if want[1] is None:
        assert got == want and _Noted.skipped == []
    else:
        assert want[1] is CorruptRecordError and got[1] is None
        assert _Noted.skipped == [("readings", 2, 5, 64, "corrupt")]
        assert [r.offset for r in got[0]] == list(range(65, 72))
        assert got[0] == _drain(Fetcher.PartitionRecords, intact, 65, None)[0]
        assert got[4] == 72


def test_a_batch_failing_its_crc_is_skipped_and_noted(loop):
    recs = [(T0 + i, b"k", b"v%d" % i, []) for i in range(10)]
    bad = bytearray(_batch(0, recs))
    bad[-1] ^= 0xFF  # damage after the CRC was computed
    data = bytes(bad) + _batch(10, recs)
    assert _drain(Fetcher.PartitionRecords, data, 0, None)[1] is CorruptRecordError
    _Noted.skipped = []
    got = _drain(_Noted, data, 0, None)
    assert got[1] is None and [r.offset for r in got[0]] == list(range(10, 20))
    assert _Noted.skipped == [("readings", 2, 0, 9, "crc")]


def test_a_batch_of_a_codec_without_its_library_is_skipped(loop, monkeypatch):
    import kafka.codec

    recs = [(T0 + i, b"k", b"v" * 200, []) for i in range(10)]  # (compressible: kept compressed)
    data = _batch(0, recs, codec=3) + _batch(10, recs)  # 3: lz4
    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: False)
    assert _drain(Fetcher.PartitionRecords, data, 0, None)[1] is not None
    _Noted.skipped = []
    got = _drain(_Noted, data, 0, None)
    assert got[1] is None and [r.offset for r in got[0]] == list(range(10, 20))
    assert _Noted.skipped == [("readings", 2, 0, 9, "codec")]


def test_next_fetch_offset_follows_what_take_handed_out(loop):
    """After take(10) of a 40-record batch at offset 100, the position is 110 (kafka-python's), not 140."""
    data = _batch(100, [(T0 + i, b"k", b"v", []) for i in range(40)])
    for cls in (Fetcher.PartitionRecords, FastPartitionRecords):
        pr = cls(100, TP, MemoryRecords(data))
        assert [r.offset for r in pr.take(10)] == list(range(100, 110))
        assert pr.next_fetch_offset == 110, cls
        pr.take(25)
        assert pr.next_fetch_offset == 135, cls
        pr.take(10)
        assert pr.next_fetch_offset == 140, cls


@settings(max_examples=300, deadline=None)
@given(records=records, at=st.integers(0, 10_000), byte=st.integers(0, 255), cut=st.integers(-3, 3),
       log_append=st.booleans(), base=st.sampled_from([0, 2**40, 2**63 - 30]))
def test_the_c_loop_reads_what_the_python_loop_reads_or_leaves_it(records, at, byte, cut, log_append, base):
    """On any records part, intact or with a byte changed, cut short or extended: the C loop gives the
    Python loop's records and size, or None where the Python loop raises (or for what it does not
    read exactly: an offset beyond 64 bits, a varint of 10 bytes), never another result."""
    c_loop = streams.kafka.fetch._c_decode_records
    require_built(c_loop)
    from kafka.consumer.fetcher import ConsumerRecord

    buf = bytearray(_batch(0, [(T0 + ts, k, v, h) for ts, k, v, h in records], log_append=log_append))
    if at % 3:  # two in three: damaged
        buf[61 + at % (len(buf) - 61)] = byte
    if cut > 0:
        del buf[len(buf) - cut:]
    elif cut < 0:
        buf += bytes([byte]) * -cut
    args = (bytes(buf), 61, len(records), base, T0, T0 + 7 if log_append else None, "t", 3, 0)
    try:
        want = decode_records(*args)
    except CorruptRecordError:
        want = None
    got = c_loop(*args, ConsumerRecord)
    assert got is None or got == want
    if want is None:
        assert got is None
    elif at % 3 == 0 and cut == 0 and base < 2**62:
        assert got == want  # an intact batch: the C loop reads it


class _Text:
    def deserialize(self, topic, headers, data):
        return data.decode()


def test_consumer_with_deserializers_keeps_kafka_pythons_path():
    data = _batch(0, [(T0, b"k", b"v", [])])
    pr = FastPartitionRecords(0, TP, MemoryRecords(data), key_deserializer=None, value_deserializer=_Text())
    assert [r.value for r in pr.take()] == ["v"]


def test_self_test_passes_on_the_pinned_kafka_python():
    assert _self_test() is True


class _NoFetcher:
    pass


def test_install_refuses_what_it_does_not_know():
    assert install_fast_fetch(_NoFetcher()) is False


@pytest.mark.broker
def test_source_reads_what_kafka_python_reads(broker, fresh_topic):
    """Real broker: gzip and plain batches with headers, read by the fast Source and by kafka-python's own."""
    from streams.kafka import KafkaSettings, Sink, Source, create_topics

    s = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-test")
    create_topics(s, {fresh_topic: 2})
    for codec in (None, "gzip"):
        with Sink(s, linger_ms=5, compression_type=codec) as sink:
            for i in range(400):
                sink.send(fresh_topic, b"v" * (i % 250), key=None if i % 9 == 0 else b"s%d" % (i % 13),
                          headers={"n": str(i)} if i % 5 == 0 else None, timestamp_ms=T0 + (i * 37) % 1000)
            sink.flush()
    seen = {}
    for fast in (True, False):
        with Source(s, fresh_topic, f"g-{fast}-{fresh_topic}", fast_fetch=fast, session_timeout_ms=6000,
                    heartbeat_interval_ms=300) as src:
            assert src.fast_fetch is fast
            out = []
            for _ in range(100):
                out.extend(src.poll(0.3))
                if len(out) >= 800:
                    break
        seen[fast] = sorted(out, key=lambda r: (r.partition, r.offset))
    assert len(seen[True]) == 800
    assert seen[True] == seen[False]
