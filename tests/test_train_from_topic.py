"""``anomon train --from-topic`` (issue 19.2): the topic's history through the daemon's decoder and
windower. The training windows are exactly the windows the daemon scores on the same topic; what the
daemon dead-letters is counted and left out; windows the serving model flags can be left out."""
from __future__ import annotations

import json

import pytest

from monitor.cli import main
from tests.fixtures.daemon import daemon_config, expected_window_ids, make_bundle, produce_readings, read_topic, score_ids

pytestmark = pytest.mark.broker


def _bad_records(bootstrap: str, topic: str) -> None:
    from streams.kafka import KafkaSettings, Sink

    sink = Sink(KafkaSettings(bootstrap_servers=bootstrap))
    sink.send(topic, b"not json", key="s0")
    sink.send(topic, b'{"series": "s0", "ts": 1700000000000, "value": NaN}', key="s0")
    sink.send(topic, b'{"series": "s1", "value": 1.0}', key="s1")
    sink.flush()
    sink.close()


def test_training_windows_are_the_windows_the_daemon_scores(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    from monitor.topic_training import read_topic_windows
    from streams.kafka import KafkaSettings
    from streams.records import RecordFormat

    series, n = ["s0", "s1"], 150
    produce_readings(broker.bootstrap, fresh_topic, series, 60)
    _bad_records(broker.bootstrap, fresh_topic)
    produce_readings(broker.bootstrap, fresh_topic, series, n, start=60)
    produce_readings(broker.bootstrap, fresh_topic, ["s0"], 70, start=30)  # 40 late/duplicate readings: dead-lettered
    wins, ends, dead, n_read = read_topic_windows(KafkaSettings(bootstrap_servers=broker.bootstrap), [fresh_topic],
                                                  window=16, stride=4, fmt=RecordFormat())
    train_ids = {f"{s}@{int(e)}" for s, es in ends.items() for e in es}
    cfg = daemon_config(broker.bootstrap, fresh_topic, f"g-{fresh_topic}", daemon_bundle)
    r = inprocess_daemon(cfg)
    want = expected_window_ids(series, n, 16, 4)
    got = read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=len(want), timeout_s=60)
    dlq = read_topic(broker.bootstrap, f"{fresh_topic}.dlq", min_count=43, timeout_s=20)
    r.stop()
    assert train_ids == set(score_ids(got)) == want  # one code path: the same windows
    assert sum(len(w) for w in wins.values()) == len(want)
    assert n_read == 2 * n + 3 + 40
    daemon_reasons: dict[str, int] = {}
    for _, _, h in dlq:
        k = dict(h)["anomon.reason"].decode()
        daemon_reasons[k] = daemon_reasons.get(k, 0) + 1
    assert dict(dead) == daemon_reasons  # counted alike, by reason


def test_train_from_topic_writes_a_bundle_and_leaves_out_flagged_windows(broker, fresh_topic, tmp_path, capsys):
    from monitor.modelstore import load_bundle

    produce_readings(broker.bootstrap, fresh_topic, ["a", "b"], 400, anomaly=(200, 240))
    base = ["train", "robust-zscore", "--from-topic", fresh_topic, "--bootstrap-servers", broker.bootstrap,
            "--window", "16", "--stride", "4"]
    assert main([*base, "--out", str(tmp_path / "m1")]) == 0
    info = json.loads((tmp_path / "m1" / "train.json").read_text())
    assert info["data"]["read"]["windows"] == len(expected_window_ids(["a", "b"], 400, 16, 4))
    b = load_bundle(tmp_path / "m1")
    assert (b.length, b.stride) == (16, 4)
    capsys.readouterr()
    assert main([*base, "--exclude-flagged-by", str(tmp_path / "m1"), "--out", str(tmp_path / "m2")]) == 0
    read2 = json.loads((tmp_path / "m2" / "train.json").read_text())["data"]["read"]
    assert read2["flagged_windows_left_out"] >= 10  # the burst's windows (and the FPR's share of the rest)
    assert main([*base, "--last", "100", "--out", str(tmp_path / "m3")]) == 0
    read3 = json.loads((tmp_path / "m3" / "train.json").read_text())["data"]["read"]
    assert read3["records"] <= 100 * 4 and read3["records"] >= 100
    assert main([*base, "--since", "1h", "--last", "5", "--out", str(tmp_path / "m4")]) == 2
    assert "--since and --last: give one of them" in capsys.readouterr().err
    assert main(["train", "robust-zscore", "--from-topic", "no-such-topic", "--bootstrap-servers", broker.bootstrap,
                 "--window", "16", "--out", str(tmp_path / "m5")]) == 2
    assert "topic no-such-topic does not exist" in capsys.readouterr().err
