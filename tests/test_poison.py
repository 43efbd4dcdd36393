"""Poison input: a hand-written corpus plus >= 10,000 hypothesis-generated bad records.

Every bad record must land in the dead-letter topic with its reason (``anomon.reason`` header),
the daemon must not crash, and the good series interleaved with them must still be scored,
window for window. The records are generated in-process (derandomized), checked against the pure
decoder first, then all pushed through one real daemon on the real broker in one replay.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from monitor.reliability import record
from streams.records import REASONS, RecordError, RecordFormat, decode_record
from tests.fixtures.daemon import T0_MS, daemon_config, expected_window_ids, read_topic, score_ids, wait_until

CORPUS = Path(__file__).parent / "fixtures" / "poison_corpus"
MAX_BYTES, MAX_SAMPLES, MAX_CHANNELS = 16384, 512, 64
FMT = RecordFormat(max_message_bytes=MAX_BYTES, max_samples=MAX_SAMPLES, max_channels=MAX_CHANNELS)
N_GENERATED = 10_000
GOOD_SERIES = [f"good-{k}" for k in range(4)]
N_GOOD = 240  # readings per good series
PERIOD = 10
T, S = 16, 4
STATEFUL = ("late", "duplicate")
YEAR_2100_MS, YEAR_2200_MS = 4_102_444_800_000, 7_258_118_400_000


@dataclass
class Poison:
    key: bytes | None
    value: bytes | None
    reason: str
    kind: str
    after: tuple[int, int] | None = None  # (reading index, good series index) it must follow


# --------------------------------------------------------------------------- the corpus


def corpus() -> list[Poison]:
    out = []
    for f in sorted(CORPUS.glob("*.rec")):
        reason = f.stem.split("--")[0]
        assert reason in REASONS, f.name
        kf = f.with_suffix(".key")
        key = kf.read_bytes() if kf.exists() else None
        after = (0, int(key.decode().split("-")[1])) if reason in STATEFUL else None
        out.append(Poison(key, f.read_bytes(), reason, f"corpus:{f.stem}", after))
    return out


# --------------------------------------------------------------------------- the generator


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()  # allow_nan: NaN/Infinity literals on purpose


SERIES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10).map(lambda s: "px-" + s)
KEY = st.one_of(st.none(), SERIES.map(str.encode))
TS = st.integers(min_value=T0_MS - 10**9, max_value=T0_MS + 10**9)
NUM = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
SMALL_TEXT = st.text(max_size=8)
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), NUM, SMALL_TEXT)
SMALL_DICT = st.dictionaries(SMALL_TEXT, JSON_SCALAR, max_size=2)


@st.composite
def valid_obj(draw, form: str | None = None):
    """A good record object (with its series in the value) of one of the three forms."""
    form = form or draw(st.sampled_from(["single", "multi", "chunk"]))
    o = {"series": draw(SERIES), "ts": draw(TS)}
    if form == "single":
        o["value"] = draw(NUM)
    elif form == "multi":
        o["values"] = [draw(NUM)]
    else:
        o["period_ms"] = draw(st.sampled_from([1, 2.5, 10, 2.7777777778]))
        o["values"] = [[draw(NUM)] for _ in range(draw(st.integers(1, 6)))]
    return o


def _no_series(o: dict) -> dict:
    o = dict(o)
    del o["series"]
    return o


@st.composite
def undecodable(draw):
    kind = draw(st.sampled_from(["binary", "non-object", "truncated", "tombstone", "key-not-utf8", "not-utf8"]))
    key = draw(KEY)
    if kind == "binary":
        v = draw(st.binary(max_size=48))
        try:
            if isinstance(json.loads(v), dict):
                v = b"{" + v  # keep it broken
        except ValueError:
            pass
    elif kind == "non-object":
        v = _dumps(draw(st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=4))))
    elif kind == "truncated":
        full = _dumps(draw(valid_obj()))
        v = full[: draw(st.integers(1, len(full) - 1))]
    elif kind == "tombstone":
        key, v = key or b"px-tombstone", None  # Kafka needs a key or a value
    elif kind == "key-not-utf8":
        key = b"\xff" + draw(st.binary(max_size=6))
        v = _dumps(_no_series(draw(valid_obj())))
    else:
        o = draw(valid_obj("single"))
        o["series"] = o["series"] + "\u00e9"
        v = json.dumps(o, ensure_ascii=False).encode("latin-1")
    return Poison(key, v, "undecodable", f"undecodable:{kind}")


@st.composite
def missing_field(draw):
    o = draw(valid_obj())
    field = draw(st.sampled_from(["ts", "value", "series"]))
    key = draw(KEY) if field != "series" else None
    if field == "value":
        o.pop("value", None), o.pop("values", None), o.pop("period_ms", None)
    elif field == "series" and draw(st.booleans()):
        o["series"] = None
    else:
        del o[field]
    return Poison(key, _dumps(o), "missing_field", f"missing:{field}")


@st.composite
def bad_field(draw):
    kind = draw(st.sampled_from(["ts-type", "ts-range", "value-type", "series-type", "values-type", "values-element",
                                 "values-shape", "period", "duplicate-key"]))
    key = draw(KEY)
    if kind == "duplicate-key":
        o = draw(valid_obj("single"))
        dup = draw(st.sampled_from(["series", "ts", "value"]))
        other = _dumps({dup: draw(st.one_of(NUM, SMALL_TEXT))})[1:-1]
        v = _dumps(o)[:-1] + b"," + other + b"}"
        return Poison(key, v, "bad_field", f"bad_field:{kind}")
    o = draw(valid_obj("chunk" if kind == "period" else None))
    if kind == "period":
        o["values"].append([0.5])  # two samples at least, so that a huge period runs past year 2200
    if kind == "ts-type":
        o["ts"] = draw(st.one_of(SMALL_TEXT, st.booleans(), st.none(), st.lists(st.integers(), max_size=2), SMALL_DICT))
    elif kind == "ts-range":
        o["ts"] = draw(st.one_of(st.integers(max_value=-1, min_value=-10**30), st.floats(max_value=-0.01, min_value=-1e300),
                                 st.integers(min_value=7_258_118_400_001, max_value=10**30),
                                 st.integers(400, 4000).map(lambda d: 10**d)))
    elif kind == "value-type":
        o.pop("values", None), o.pop("period_ms", None)
        o["value"] = draw(st.one_of(SMALL_TEXT, st.booleans(), st.none(), st.lists(NUM, max_size=2), SMALL_DICT))
    elif kind == "series-type":
        key = None
        o["series"] = draw(st.one_of(st.booleans(), NUM, st.lists(st.integers(), max_size=2), SMALL_DICT, st.just("")))
    elif kind == "values-type":
        o.pop("value", None)
        o["values"] = draw(st.one_of(SMALL_TEXT, st.booleans(), NUM, SMALL_DICT, st.none()))
    elif kind == "values-element":
        o.pop("value", None), o.pop("period_ms", None)
        bad = draw(st.one_of(st.none(), SMALL_TEXT.map(lambda s: "s" + s), SMALL_DICT, st.booleans()))
        o["values"] = [[draw(NUM)], [bad]] if draw(st.booleans()) else [bad]
        if isinstance(o["values"][0], list):
            o["period_ms"] = 10
    elif kind == "values-shape":
        o.pop("value", None)
        o["period_ms"] = 10
        o["values"] = draw(st.sampled_from([[[1.0], [1.0, 2.0]], [[[1.0]], [[2.0]]], [[1.0], 2.0], [1.0, [2.0]]]))
    elif kind == "period":
        o["period_ms"] = draw(st.one_of(st.integers(-10**6, 0), st.floats(min_value=-1e9, max_value=0.0009),
                                        SMALL_TEXT, st.booleans(), st.none(), st.just(float("nan")),
                                        st.just(float("inf")), st.integers(400, 4000).map(lambda d: 10**d),
                                        st.floats(min_value=1e15, max_value=1e300)))
    return Poison(key, _dumps(o), "bad_field", f"bad_field:{kind}")


@st.composite
def nan_or_inf(draw):
    kind = draw(st.sampled_from(["value", "value-huge", "values", "chunk", "ts"]))
    o = draw(valid_obj("chunk" if kind == "chunk" else "single"))
    special = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    if kind == "value":
        o["value"] = special
    elif kind == "value-huge":
        o["value"] = draw(st.one_of(st.floats(min_value=3.1e38, max_value=1.7e308), st.integers(39, 300).map(lambda d: -10**d),
                                    st.integers(309, 4000).map(lambda d: 10**d)))
    elif kind == "values":
        o.pop("value")
        o["values"] = [special]
    elif kind == "chunk":
        o["values"].insert(draw(st.integers(0, len(o["values"]))), [special])
    else:
        o["ts"] = special
    return Poison(draw(KEY), _dumps(o), "nan_or_inf", f"nan_or_inf:{kind}")


@st.composite
def wrong_width(draw):
    o = draw(valid_obj("single"))
    o.pop("value")
    c = draw(st.integers(2, MAX_CHANNELS))
    if draw(st.booleans()):
        o["values"] = [0.25 * i for i in range(c)]
        kind = "multi"
    else:
        o["period_ms"] = 10
        o["values"] = [[0.5] * c for _ in range(draw(st.integers(1, 4)))]
        kind = "chunk"
    return Poison(draw(KEY), _dumps(o), "wrong_width", f"wrong_width:{kind}")


@st.composite
def too_large(draw):
    kind = draw(st.sampled_from(["bytes", "samples", "channels", "series-id", "key"]))
    key = draw(KEY)
    o = draw(valid_obj("single"))
    if kind == "bytes":
        o["pad"] = "x" * (MAX_BYTES + draw(st.integers(0, 3000)))
    elif kind == "samples":
        o.pop("value")
        o["period_ms"] = 1
        o["values"] = [[0.5]] * draw(st.integers(MAX_SAMPLES + 1, 2 * MAX_SAMPLES))
    elif kind == "channels":
        o.pop("value")
        o["values"] = [0.5] * draw(st.integers(MAX_CHANNELS + 1, MAX_SAMPLES))
    elif kind == "series-id":
        key = None
        o["series"] = "s" * draw(st.integers(257, 2000))
    else:
        key = b"k" * draw(st.integers(257, 2000))
    return Poison(key, _dumps(o), "too_large", f"too_large:{kind}")


@st.composite
def empty(draw):
    o = draw(valid_obj("single"))
    o.pop("value")
    if draw(st.booleans()):
        o["values"] = []
    else:
        o["period_ms"] = 10
        o["values"] = [[] for _ in range(draw(st.integers(1, 3)))]
    return Poison(draw(KEY), _dumps(o), "empty", "empty")


@st.composite
def out_of_order(draw):
    """Late (far or just out of order) or duplicate readings of a good series: bad only in context."""
    i, k = draw(st.integers(0, N_GOOD - 1)), draw(st.integers(0, len(GOOD_SERIES) - 1))
    ts_i = T0_MS + i * PERIOD
    kind = draw(st.sampled_from(["late", "duplicate", "future"]))
    if kind == "late":
        ts, reason = ts_i - draw(st.one_of(st.integers(1, 100), st.integers(1, T0_MS))), "late"
    elif kind == "duplicate":
        ts, reason = ts_i, "duplicate"
    else:  # years ahead (2100..2199): beyond input.max_future_s, it would make the rest of the series late
        ts, reason = draw(st.integers(YEAR_2100_MS, YEAR_2200_MS - 10**6)), "bad_field"
    v = _dumps({"series": GOOD_SERIES[k], "ts": ts, "value": draw(NUM)})
    return Poison(GOOD_SERIES[k].encode(), v, reason, kind, after=(i, k))


POISON = st.one_of(undecodable(), missing_field(), bad_field(), nan_or_inf(), wrong_width(), too_large(), empty(),
                   out_of_order())

_GENERATED: list[Poison] = []


def generated() -> list[Poison]:
    """10,000 records from the strategies: 200 derandomized examples of 50 records each (cached)."""
    if not _GENERATED:
        batch = 50

        @settings(max_examples=N_GENERATED // batch, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), deadline=None)
        @given(st.lists(POISON, min_size=batch, max_size=batch))
        def collect(recs):
            _GENERATED.extend(recs)

        collect()
        assert len(_GENERATED) >= N_GENERATED
        del _GENERATED[N_GENERATED:]
    return _GENERATED


# --------------------------------------------------------------------------- tests


def _check_decoder(p: Poison) -> str | None:
    """None when the pure decoder agrees with ``p``'s expected reason, else what it did."""
    try:
        decode_record(p.value, p.key, FMT, width=1)
    except RecordError as e:
        return None if e.reason == p.reason else f"{e.reason}: {e}"
    except Exception as e:  # noqa: BLE001
        return f"CRASH {type(e).__name__}: {e}"
    return None if p.reason in STATEFUL or "future" in p.kind else "accepted"


def test_corpus_each_record_gets_its_reason_from_the_decoder():
    recs = corpus()
    assert len(recs) >= 60
    assert {p.reason for p in recs} == set(REASONS) - {"series_limit"}
    bad = {p.kind: r for p in recs if (r := _check_decoder(p))}
    assert not bad, bad


def test_10k_generated_records_each_get_their_reason_from_the_decoder():
    recs = generated()
    bad = [(p.kind, p.value[:120] if p.value else p.value, r) for p in recs if (r := _check_decoder(p))]
    assert not bad, bad[:10]
    kinds = Counter(p.kind.split(":")[0] for p in recs)
    assert set(kinds) == {"undecodable", "missing", "bad_field", "nan_or_inf", "wrong_width", "too_large", "empty",
                          "late", "duplicate", "future"}, kinds


def _stream(poison: list[Poison], seed: int = 7) -> list[tuple[bytes | None, bytes | None]]:
    """Good readings (round-robin over the good series) with every poison record spliced in."""
    from streams.records import encode_reading

    import numpy as np

    rng = random.Random(seed)
    n_slots = N_GOOD * len(GOOD_SERIES)
    slots: list[list[Poison]] = [[] for _ in range(n_slots + 1)]
    for p in poison:
        if p.after is not None:
            i, k = p.after
            slots[i * len(GOOD_SERIES) + k + 1].append(p)
        else:
            slots[rng.randrange(n_slots + 1)].append(p)
    out = [(p.key, p.value) for p in slots[0]]
    for i in range(N_GOOD):
        for k, s in enumerate(GOOD_SERIES):
            v = float(np.sin(2 * np.pi * i / 16.0 + k))
            out.append((s.encode(), encode_reading(s, T0_MS + i * PERIOD, v)))
            out.extend((p.key, p.value) for p in slots[i * len(GOOD_SERIES) + k + 1])
    return out


@pytest.mark.broker
@pytest.mark.timeout(300)
def test_poison_through_the_daemon_all_dead_lettered_good_series_scored(broker, fresh_topic, daemon_bundle,
                                                                         inprocess_daemon):
    from streams.kafka import KafkaSettings, Sink, create_topics

    bs, topic = broker.bootstrap, fresh_topic
    create_topics(KafkaSettings(bootstrap_servers=bs), {topic: 4})
    # two giants, over kafka-python's 1 MiB max_request_size: forwarded whole they would stop the daemon
    giants = [Poison(b"px-giant", _dumps({"series": "px-giant", "ts": T0_MS, "value": 1, "pad": "x" * 3 * 2**20}),
                     "too_large", "too_large:3MiB-value"),
              Poison(b"k" * 2 * 2**20, _dumps({"ts": T0_MS, "value": 1}), "too_large", "too_large:2MiB-key")]
    poison = corpus() + generated() + giants
    stream = _stream(poison)
    with Sink(KafkaSettings(bootstrap_servers=bs), linger_ms=20, producer_options={"max_request_size": 8 * 2**20}) as sink:
        for key, value in stream:
            sink.send(topic, value, key=key)
    cfg = daemon_config(bs, topic, "g-" + topic, daemon_bundle, input__max_message_bytes=MAX_BYTES,
                        input__max_samples=MAX_SAMPLES, input__max_channels=MAX_CHANNELS)
    r = inprocess_daemon(cfg)
    want = expected_window_ids(GOOD_SERIES, N_GOOD, T, S)
    dlq = read_topic(bs, f"{topic}.dlq", min_count=len(poison), timeout_s=180)
    scores = read_topic(bs, f"{topic}.scores", min_count=len(want), timeout_s=60)
    assert r.thread.is_alive()  # nothing crashed it
    assert wait_until(lambda: r.daemon.stats["records"] >= len(stream), timeout_s=60)
    stats = r.stop()

    got, cut = Counter(), []
    for key, value, headers in dlq:
        h = {k: v.decode() for k, v in headers}
        assert h.get("anomon.error"), h
        if "anomon.truncated" in h:
            cut.append((key, value, h["anomon.reason"]))
        else:
            got[(value, h["anomon.reason"])] += 1
    assert len(cut) == len(giants)
    for key, value, reason in cut:  # copied to the DLQ cut to their first bytes
        assert reason == "too_large" and any(g.value.startswith(value) and g.key.startswith(key) for g in giants)
    expected = Counter((p.value, p.reason) for p in poison if p not in giants)
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (list(missing.items())[:5], list(extra.items())[:5])
    ids = score_ids(scores)
    assert set(ids) == want and len(ids) == len(want)
    by_reason = Counter(p.reason for p in poison)
    record("poison-input", {
        "bad_records_tried": len(poison), "hand_written": len(corpus()) + len(giants),
        "hypothesis_generated": len(generated()), "over_1MiB_cut_in_dlq": len(cut),
        "dead_lettered": len(dlq), "dead_letter_reasons": dict(sorted(by_reason.items())),
        "good_windows_expected": len(want), "good_windows_scored": len(set(ids)), "daemon_crashes": 0,
        "records_consumed": stats["records"],
    }, title="poison input: hand-written corpus + hypothesis-generated bad records, one daemon run",
        notes="each lands in the DLQ with the expected `anomon.reason`; 4 good series interleaved",
        reproduce="pytest tests/test_poison.py")
