"""``anomon dlq tail``, ``anomon dlq replay`` and ``anomon status`` on the real broker (issue 23.7).

Bad records (bad JSON, NaN, a wrong number of channels) and good readings go through the in-process
daemon; the commands then read what it dead-lettered and committed, through ``monitor.cli.main``.
"""
from __future__ import annotations

import collections
import json

import pytest

from tests.fixtures.daemon import daemon_config, produce_readings, read_topic, wait_until, write_config

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

BAD = {  # key -> (value, reason the daemon gives it)
    b"bad-json-1": (b'{"series": "x", "ts": 1700000000000, "value": ', "undecodable"),
    b"bad-json-2": (b"\xff\xfenot json at all\x1b[2J", "undecodable"),
    b"bad-nan-1": (b'{"series": "n1", "ts": 1700000000000, "value": NaN}', "nan_or_inf"),
    b"bad-nan-2": (b'{"series": "n2", "ts": 1700000000000, "value": Infinity}', "nan_or_inf"),
    b"bad-nan-3": (b'{"series": "n3", "ts": 1700000000000, "period_ms": 10, "values": [[NaN]]}', "nan_or_inf"),
    b"bad-width": (b'{"series": "w", "ts": 1700000000000, "period_ms": 10, "values": [[1.0, 2.0]]}', "wrong_width"),
}


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    import logging

    from monitor.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        rc = main(list(argv))
    finally:  # main() points the root logger at the captured stderr: give pytest its handlers back
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    return rc, out, err


def _fresh_read(bs: str, topic: str, group: str) -> tuple[dict, dict]:
    """Committed offsets (the group's, asked without joining) and ends (records read) of every partition."""
    from streams.kafka import KafkaConsumer, KafkaSettings, TopicPartition, topic_partitions

    s = KafkaSettings(bootstrap_servers=bs)
    tps = topic_partitions(s, topic)
    g = KafkaConsumer(**s.to_kafka_python(), group_id=group, enable_auto_commit=False)
    try:
        committed = {tp.partition: g.committed(tp) for tp in tps}
    finally:
        g.close(autocommit=False)
    ends = {tp.partition: 0 for tp in tps}
    for_part = collections.Counter()
    c = KafkaConsumer(**s.to_kafka_python(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        c.assign(tps)
        c.seek_to_beginning(*tps)
        idle = 0
        while idle < 4:
            got = c.poll(timeout_ms=300)
            idle = 0 if got else idle + 1
            for tp, recs in got.items():
                for r in recs:
                    ends[tp.partition] = max(ends[tp.partition], r.offset + 1)
                    for_part[tp.partition] += 1
    finally:
        c.close()
    assert all(isinstance(tp, TopicPartition) for tp in tps)
    return committed, ends


def test_tail_replay_and_status_on_what_the_daemon_dead_lettered(broker, daemon_bundle, fresh_topic, tmp_path,
                                                                  inprocess_daemon, capsys):
    from streams.kafka import KafkaSettings, Sink, create_topics

    bs, topic, group = broker.bootstrap, fresh_topic, f"{fresh_topic}-g"
    dlq, t2 = f"{topic}.dlq", f"{topic}.fixed"
    settings = KafkaSettings(bootstrap_servers=bs)
    create_topics(settings, {topic: 2, t2: 2})
    n_good = produce_readings(bs, topic, ["s1", "s2"], 48)
    with Sink(settings) as sink:
        for k, (v, _) in BAD.items():
            sink.send(topic, v, key=k)
    cfg = daemon_config(bs, topic, group, daemon_bundle, **{"http.enabled": True, "http.port": 0})
    conf = str(write_config(tmp_path / "daemon.toml", cfg))
    r = inprocess_daemon(cfg)
    assert len(read_topic(bs, dlq, min_count=len(BAD), timeout_s=60)) == len(BAD)

    seen = []

    def settled() -> bool:  # every record read, the committed offsets no longer moving
        committed, ends = _fresh_read(bs, topic, group)
        seen.append(committed)
        return (sum(ends.values()) == n_good + len(BAD) and None not in committed.values()
                and len(seen) > 1 and seen[-2] == committed)

    assert wait_until(settled, timeout_s=30, every_s=0.5), seen[-3:]
    want = collections.Counter(reason for _, reason in BAD.values())

    # tail: one line per dead letter, the counts per reason at the end
    rc, out, err = _cli(capsys, "dlq", "tail", "--config", conf, "--limit", "0")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == len(BAD) + 1
    summary = lines[-1]
    assert summary.startswith(f"# {len(BAD)} dead letter(s) in {dlq}")
    assert "by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))) \
        in summary
    assert all("\x1b" not in ln and "\xff" not in ln for ln in lines)  # terminal-safe
    assert any("\\x1b" in ln and "\\xff" in ln for ln in lines)
    assert sum(f" {topic}:" in ln for ln in lines) == len(BAD)
    (tmp_path / "tail.txt").write_text(out)
    rc, out, _ = _cli(capsys, "dlq", "tail", "--config", conf, "--limit", "1", "--reason", "wrong_width", "--json")
    (tmp_path / "tail-wrong_width.jsonl").write_text(out)

    # --json: every header, the full key and value; --reason filters; --limit keeps the last N
    rc, out, _ = _cli(capsys, "dlq", "tail", "--config", conf, "--limit", "0", "--json")
    objs = [json.loads(x) for x in out.splitlines()]
    letters, summ = objs[:-1], objs[-1]["summary"]
    assert collections.Counter(o["reason"] for o in letters) == want and summ["by_reason"] == dict(want)
    by_key = {o["key"]: o for o in letters}
    assert set(by_key) == {k.decode() for k in BAD}
    assert by_key["bad-nan-1"]["value"] == BAD[b"bad-nan-1"][0].decode()
    assert "value_base64" in by_key["bad-json-2"]
    assert all(o["source"].startswith(f"{topic}:") and o["error"] for o in letters)
    rc, out, _ = _cli(capsys, "dlq", "tail", "--config", conf, "--reason", "nan_or_inf", "--limit", "2", "--json")
    objs = [json.loads(x) for x in out.splitlines()]
    assert [o["reason"] for o in objs[:-1]] == ["nan_or_inf"] * 2
    assert objs[-1]["summary"] == {"topic": dlq, "dead_letters": 3, "shown": 2, "by_reason": {"nan_or_inf": 3}}
    rc, out, _ = _cli(capsys, "dlq", "tail", "--config", conf, "--since", "1h")
    assert out.splitlines()[-1].startswith(f"# {len(BAD)} dead letter(s)")
    rc, out, _ = _cli(capsys, "dlq", "tail", "--config", conf, "--since", "2099-01-01T00:00:00Z")
    assert out.splitlines() == [f"# 0 dead letter(s) in {dlq} since 2099-01-01T00:00:00Z; shown 0; by reason: none"]

    # replay --dry-run sends nothing; replay --reason R --to T2 sends exactly those, keys kept, provenance added
    rc, out, _ = _cli(capsys, "dlq", "replay", "--config", conf, "--reason", "nan_or_inf", "--to", t2, "--dry-run")
    assert rc == 0 and out.splitlines() == [f"would send 3 dead letter(s) to {t2}: nan_or_inf 3"]
    rc, out, _ = _cli(capsys, "dlq", "replay", "--config", conf, "--dry-run", "--since", "1h")  # to the sources
    assert rc == 0 and out.splitlines() == [f"would send 6 dead letter(s) to {topic}: nan_or_inf 3, undecodable 2, "
                                            "wrong_width 1"]
    rc, out, err = _cli(capsys, "dlq", "replay", "--config", conf, "--reason", "nan_or_inf", "--to", t2)
    assert rc == 0, err
    assert out.splitlines() == [f"sent 3 dead letter(s) to {t2}: nan_or_inf 3"]
    (tmp_path / "replay.txt").write_text(out)
    got = read_topic(bs, t2, idle_s=1.5, timeout_s=30)
    nan_keys = {k for k, (_, reason) in BAD.items() if reason == "nan_or_inf"}
    assert sorted(k for k, _, _ in got) == sorted(nan_keys)
    dl = {o["key"].encode(): o for o in letters}
    for k, v, headers in got:
        h = dict(headers)
        assert v == BAD[k][0]
        assert h["anomon.replayed_from"].decode() == dl[k]["dlq"] and h["anomon.replayed_from"].startswith(dlq.encode())
        assert h["anomon.source"].decode() == dl[k]["source"]

    # status: committed and high-water as a fresh consumer reads them, the lag, the model, /readyz up
    rc, out, err = _cli(capsys, "status", "--config", conf, "--http-port", str(r.http_port), "--json")
    assert rc == 0, err
    (tmp_path / "status-running.json").write_text(out)
    s = json.loads(out)
    committed, ends = _fresh_read(bs, topic, group)
    assert {p["partition"]: p["committed"] for p in s["partitions"]} == committed
    assert {p["partition"]: p["high_water"] for p in s["partitions"]} == ends
    assert {p["partition"]: p["lag"] for p in s["partitions"]} == {p: ends[p] - committed[p] for p in ends}
    assert all(p["owner"] and p["owner"]["member_id"] for p in s["partitions"])
    assert s["model"]["name"] == "test-model" and s["model"]["version"]
    assert s["readyz"]["state"] == "ready" and s["group"] == group and s["members"] == 1
    rc, out, _ = _cli(capsys, "status", "--config", conf, "--http-port", str(r.http_port))
    assert rc == 0 and f"group {group} on {bs}" in out and "readyz: ready" in out
    (tmp_path / "status-running.txt").write_text(out)
    assert r.daemon.lag() and not any(r.daemon.lag().values())  # the daemon has read everything
    # the daemon commits at the oldest reading its series' next windows need (16-reading windows, stride 4:
    # the last 12 of each series' 48), so the group's lag is those readings plus the dead letters after them
    held = 2 * (48 - 36)
    assert held <= s["total_lag"] <= held + len(BAD)
    # stopped: drained and committed, the same offsets and lag; /readyz is down (exit code 3)
    port = r.http_port
    r.stop()
    rc, out, _ = _cli(capsys, "status", "--config", conf, "--http-port", str(port), "--json")
    s = json.loads(out)
    committed, ends = _fresh_read(bs, topic, group)
    assert {p["partition"]: p["committed"] for p in s["partitions"]} == committed
    assert {p["partition"]: p["lag"] for p in s["partitions"]} == {p: ends[p] - committed[p] for p in ends}
    assert all(p["owner"] is None for p in s["partitions"]) and s["members"] == 0
    assert rc == 3 and s["readyz"]["state"] == "down"
    rc, out, _ = _cli(capsys, "status", "--config", conf, "--http-port", str(port))
    assert rc == 3 and f"total lag {s['total_lag']} record(s)" in out and "readyz: down" in out
    (tmp_path / "status-stopped.txt").write_text(out)


def test_operator_errors_are_one_line(broker, fresh_topic, capsys):
    rc, out, err = _cli(capsys, "dlq", "tail", "--bootstrap-servers", broker.bootstrap, "--topic", fresh_topic)
    assert rc == 2 and err.count("\n") == 1 and f"dead-letter topic {fresh_topic!r} does not exist" in err
    rc, out, err = _cli(capsys, "dlq", "replay", "--bootstrap-servers", broker.bootstrap, "--topic", fresh_topic,
                        "--since", "yesterday")
    assert rc == 2 and err.startswith("anomon: error: --since 'yesterday': neither a duration")
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for argv in (["dlq", "tail"], ["dlq", "replay"], ["status"]):
        rc, out, err = _cli(capsys, *argv, "--bootstrap-servers", dead, "--connect-timeout", "0.3")
        assert rc == 3 and err.count("\n") == 1 and f"no Kafka broker answers at {dead}" in err, (argv, err)


def test_follow_yields_the_backlog_then_new_dead_letters(broker, fresh_topic):
    from monitor.commands.dlq import read_dead_letters
    from streams.kafka import KafkaSettings, Sink, create_topics

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    create_topics(settings, {fresh_topic: 2})

    def dead_letter(sink, i: int, reason: str) -> None:
        sink.send(fresh_topic, b"v%d" % i, key=b"k%d" % i, partition=i % 2,
                  headers=[("anomon.reason", reason), ("anomon.error", "e"), ("anomon.source", f"in:0:{i}")])
        sink.flush()

    with Sink(settings) as sink:
        dead_letter(sink, 0, "bad_field")
        dead_letter(sink, 1, "late")
        it = read_dead_letters(settings, fresh_topic, follow=True)
        backlog = []
        for d in it:
            if d is None:
                break
            backlog.append((d.key, d.reason, d.headers["anomon.source"]))
        assert sorted(backlog) == [(b"k0", "bad_field", "in:0:0"), (b"k1", "late", "in:0:1")]
        dead_letter(sink, 2, "empty")
        new = next(it)
        assert (new.key, new.reason, new.where) == (b"k2", "empty", f"{fresh_topic}:0:1")
        it.close()
