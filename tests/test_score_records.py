"""Score records: the fast encoder writes exactly what json.dumps writes."""
from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.score_records import ScoreRecordEncoder, ms


@settings(max_examples=300, deadline=None)
@given(series=st.text(min_size=1, max_size=8), comps=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True),
       data=st.data(), start=st.integers(0, 2**62), end=st.integers(0, 2**62), flag=st.booleans(),
       part=st.integers(0, 1000), now=st.floats(0, 4e12), model=st.text(max_size=5), version=st.text(max_size=5))
def test_encoder_writes_the_json_dumps_bytes(series, comps, data, start, end, flag, part, now, model, version):
    num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))
    scores = tuple(data.draw(num) for _ in comps)
    thr = {c: data.draw(st.floats(allow_nan=False, allow_infinity=True)) for c in comps}
    rec = {"id": f"{series}@{end}", "series": series, "start_ts": ms(start), "end_ts": ms(end),
           "scores": dict(zip(comps, scores)), "thresholds": thr, "anomalous": flag, "model": model,
           "version": version, "partition": part, "scored_at": round(now, 1)}
    enc = ScoreRecordEncoder(comps, thr, model, version, now)
    got = enc.record(enc.series(series), start, end, scores, flag, part)
    assert got == json.dumps(rec, separators=(",", ":")).encode()
    back = json.loads(got)
    assert back["id"] == f"{series}@{end}" and back["series"] == series
    for c, v in zip(comps, scores):
        assert (math.isnan(back["scores"][c]) and math.isnan(v)) or back["scores"][c] == v
