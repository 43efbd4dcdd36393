"""streams.kafka.encode_records writes exactly what kafka-python's record batch builder writes
(a regression test for an upgrade of kafka-python: Sink.send_batch relies on both)."""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from kafka.record.default_records import DefaultRecordBatchBuilder, DefaultRecordBatch
from streams.kafka import encode_records

_HEADER = DefaultRecordBatchBuilder.HEADER_STRUCT.size

# large blobs (8-20 KB: records that cross batch limits) are a short random pattern repeated to a drawn
# length: drawing 20 KB of random bytes per blob overran Hypothesis' entropy budget
# (FailedHealthCheck data_too_large, now and then in CI)
_large = st.tuples(st.integers(8000, 20000), st.binary(min_size=1, max_size=64)).map(
    lambda t: (t[1] * (t[0] // len(t[1]) + 1))[:t[0]])
blobs = st.one_of(st.none(), st.binary(max_size=40), _large)


@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.tuples(blobs, blobs), max_size=60), limit=st.integers(1, 30_000),
       start=st.integers(0, 20_000), first=st.integers(0, 3_000),
       delta=st.one_of(st.just(0), st.integers(-10**6, 10**9)))
def test_encode_records_is_what_kafka_python_writes(records, limit, start, first, delta):
    chunks = encode_records(records, limit, start_offset=start, first_limit_bytes=first, first_ts_delta=delta)
    assert sum(n for _, n in chunks) == len(records)
    i = 0
    for c, (payload, n) in enumerate(chunks):
        if c > 0:
            assert n >= 1  # only the first part may be empty (when the open batch has no room)
        off0 = start if c == 0 else 0
        room = first if c == 0 else limit
        assert len(payload) <= room or n == 1 or (c == 0 and off0 == 0 and n == 1)
        b = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 10**9)
        b._first_timestamp = b._max_timestamp = 1_700_000_000_000  # a continued batch: its first record came before
        for j in range(n):
            k, v = records[i + j]
            ts = 1_700_000_000_000 + (delta if c == 0 else 0)
            assert b.append(off0 + j, ts, k, v, []) is not None
        assert bytes(b._buffer[_HEADER:]) == bytes(payload)
        i += n


def test_encoded_records_read_back():
    """A batch built from encode_records' payload reads back (crc, keys, values, offsets)."""
    recs = [(b"key-%d" % i, b"value" * i) for i in range(300)] + [(None, b"v"), (b"k", None)]
    (payload, n), = encode_records(recs, 1 << 20)
    b = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 22)
    b._buffer += payload
    b._first_timestamp = b._max_timestamp = 1_700_000_000_000
    b._num_records, b._last_offset = n, n - 1
    batch = DefaultRecordBatch(bytes(b.build()))
    assert batch.validate_crc()
    got = [(r.offset, r.key, r.value, r.timestamp) for r in batch]
    assert got == [(i, k, v, 1_700_000_000_000) for i, (k, v) in enumerate(recs)]
