"""``anomon dlq tail`` and ``anomon dlq replay``: read the dead-letter topic, and send dead letters back.

The daemon dead-letters every record it cannot score (``Daemon._dlq``), with headers
``anomon.reason``, ``anomon.error``, ``anomon.source`` (``topic:partition:offset``) and, where they
apply, ``anomon.samples`` and ``anomon.truncated``. Both commands read the topic with a consumer of no
group (they never join the daemon's group and never commit), from the start or ``--since``, up to the
end the topic had when the command started (``tail --follow`` goes on).

>>> _duration_ms("90s"), _duration_ms("15m"), _duration_ms("2h"), _duration_ms("1d")
(90000, 900000, 7200000, 86400000)
>>> _since_ms("2026-01-02T03:04:05Z", now_ms=0)
1767323045000
>>> print(_text(b'{"v": NaN}\\n\\x1b[2J', 80), _text(b"x" * 100, 8), _text(None, 8))
{"v": NaN}\\n\\x1b[2J xxxxxxxx… (100 bytes) (null)
>>> _parse_source("readings:3:1200")
('readings', 3, 1200)
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from monitor.commands.daemon_config import add_config_args, load_daemon_config
from monitor.errors import UnavailableError, UserError

#: the headers ``Daemon._dlq`` writes (others are kept under ``headers`` in ``--json``)
HEADERS = ("anomon.reason", "anomon.error", "anomon.source", "anomon.samples", "anomon.truncated")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dlq", help="show the dead-letter topic (tail) or send dead letters back after a fix (replay)",
        description="Read the daemon's dead-letter topic (output.dlq_topic of the config, or --topic) without "
        "joining its consumer group: `tail` shows each dead letter with its reason, source and error; `replay` "
        "sends the original key and value back (to the topic each came from, or --to).")
    dsub = p.add_subparsers(dest="dlq_command", metavar="{tail,replay}", required=True)

    t = dsub.add_parser("tail", help="show dead letters: time, reason, source, error, value; counts per reason",
                        description="Show the last dead letters, one line each (time, reason, source "
                        "topic:partition:offset, error, the value cut to --width), then the counts per reason of "
                        "every dead letter read. --follow keeps printing new ones until Ctrl-C.")
    _common(t)
    t.add_argument("--limit", type=int, default=20, metavar="N",
                   help="show the last N dead letters (default 20; 0 = all); the summary counts all of them")
    t.add_argument("--follow", "-f", action="store_true", help="then keep printing new dead letters until Ctrl-C")
    t.add_argument("--json", action="store_true",
                   help="one JSON object per dead letter (full key and value), then a summary object")
    t.add_argument("--width", type=int, default=80, metavar="N", help="characters of the value shown (default 80)")
    t.set_defaults(func=tail)

    r = dsub.add_parser("replay", help="send dead letters back (original key and value) after a fix",
                        description="Send each selected dead letter's original key and value to --to, or to the "
                        "topic named in its anomon.source header, with headers anomon.replayed_from "
                        "(DLQTOPIC:partition:offset) and anomon.source. Dead letters whose value was cut "
                        "(anomon.truncated) are not sent, and counted. Prints the counts per reason.")
    _common(r)
    r.add_argument("--to", metavar="TOPIC", help="topic to send to (default: each dead letter's source topic)")
    r.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    r.set_defaults(func=replay)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--topic", metavar="TOPIC", help="the dead-letter topic (default: output.dlq_topic of the config)")
    p.add_argument("--reason", action="append", metavar="R",
                   help="only dead letters of this reason (repeatable), e.g. bad_field, nan_or_inf, undecodable")
    p.add_argument("--since", metavar="DURATION|ISO",
                   help="only dead letters written since then: a duration ago (90s, 15m, 2h, 1d) or an ISO time "
                   "(2026-12-07T08:00:00Z; no zone = UTC)")


# --------------------------------------------------------------------------- parsing
def _duration_ms(text: str) -> int:
    from monitor.durations import parse_duration

    return int(parse_duration(text) * 1000)


def _since_ms(text: str | None, now_ms: float | None = None) -> int | None:
    """``--since`` as a timestamp in ms (None: from the start)."""
    if text is None:
        return None
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    try:
        return int(now_ms - _duration_ms(text))
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {text!r}: neither a duration (90s, 15m, 2h, 1d) nor an ISO time "
                        "(2026-12-07T08:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def _parse_source(src: str | None) -> tuple[str, int, int] | None:
    """``topic:partition:offset`` -> its parts (None when missing or malformed)."""
    if not src:
        return None
    parts = src.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        return None


def _text(b: bytes | None, width: int) -> str:
    """Bytes as one printable line: UTF-8 (bad bytes as ``\\xNN``), control characters escaped, cut to
    ``width`` characters (then the full size in bytes)."""
    if b is None:
        return "(null)"
    s = b[: width * 4 + 4].decode("utf-8", "backslashreplace")
    s = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)
    if len(s) <= width and len(b) <= width * 4 + 4:
        return s
    return f"{s[:width]}… ({len(b)} bytes)"


# --------------------------------------------------------------------------- reading
class DeadLetter:
    """One record of the dead-letter topic, its ``anomon.*`` headers decoded."""

    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, rec: Any) -> None:
        self.topic, self.partition, self.offset = rec.topic, rec.partition, rec.offset
        self.timestamp, self.key, self.value = rec.timestamp, rec.key, rec.value
        self.headers = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in rec.headers or []}

    @property
    def reason(self) -> str:
        return self.headers.get("anomon.reason") or "(no reason)"

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def time_text(self) -> str:
        if self.timestamp is None or self.timestamp < 0:
            return "-"
        return datetime.fromtimestamp(self.timestamp / 1000, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"

    def line(self, width: int) -> str:
        h = self.headers
        extra = ""
        if "anomon.samples" in h:
            extra += f" samples={h['anomon.samples']}"
        if "anomon.truncated" in h:
            extra += " TRUNCATED"
        return (f"{self.time_text()}  {self.reason:<12} {h.get('anomon.source', '-'):<24} "
                f"{_text((h.get('anomon.error') or '').encode(), 160)}{extra} | key={_text(self.key, 40)} "
                f"value={_text(self.value, width)}")

    def to_json(self) -> dict[str, Any]:
        h = self.headers
        out: dict[str, Any] = {"dlq": self.where, "time": self.time_text(), "timestamp_ms": self.timestamp,
                               "reason": self.reason, "error": h.get("anomon.error"), "source": h.get("anomon.source")}
        if "anomon.samples" in h:
            out["samples"] = int(h["anomon.samples"]) if str(h["anomon.samples"]).isdigit() else h["anomon.samples"]
        if "anomon.truncated" in h:
            out["truncated"] = h["anomon.truncated"]
        for name, b in (("key", self.key), ("value", self.value)):
            try:
                out[name] = None if b is None else b.decode("utf-8")
            except UnicodeDecodeError:
                out[name + "_base64"] = base64.b64encode(b).decode()
        others = {k: v for k, v in h.items() if k not in HEADERS}
        if others:
            out["headers"] = others
        return out


def read_dead_letters(settings: Any, topic: str, *, since_ms: int | None = None, follow: bool = False,
                      timeout_s: float = 30.0) -> Iterator[DeadLetter]:
    """The dead letters of ``topic`` (from ``since_ms``, else the start) up to the end it has now, in
    order per partition; with ``follow``, then ``None`` once (the end of the backlog) and every new one
    until interrupted. No group, no commits."""
    from streams.kafka import KafkaConsumer, offsets_for_times, partition_ends, topic_partitions

    tps = topic_partitions(settings, topic)
    if not tps:
        raise UserError(f"dead-letter topic {topic!r} does not exist on {settings.bootstrap_servers} (nothing was "
                        "dead-lettered yet, or output.dlq_topic / --topic names another topic)")
    ends = partition_ends(settings, tps, timeout_s=timeout_s)
    starts = ({} if since_ms is None else
              offsets_for_times(settings, {tp: since_ms for tp in tps}, timeout_s=timeout_s))
    c = KafkaConsumer(**settings.to_kafka_python(), group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=200)
    try:
        c.assign(tps)
        pending = set()
        for tp in tps:
            if since_ms is None:
                c.seek_to_beginning(tp)
                pending.add(tp)
            elif starts.get(tp) is None:  # nothing written since then
                c.seek(tp, ends[tp])
            else:
                c.seek(tp, starts[tp])
                pending.add(tp)
        pending = {tp for tp in pending if c.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout_s
        backlog = True
        while pending or follow:
            if follow and backlog and not pending:
                backlog = False
                yield None
            got = c.poll(timeout_ms=300)
            if got:
                deadline = time.monotonic() + timeout_s
            for tp, recs in got.items():
                for r in recs:
                    if follow or r.offset < ends[tp]:
                        yield DeadLetter(r)
                if tp in pending and c.position(tp) >= ends[tp]:
                    pending.discard(tp)
            pending = {tp for tp in pending if c.position(tp) < ends[tp]}
            if pending and not got and time.monotonic() > deadline:
                raise UnavailableError(f"reading {topic} stalled: no records for {timeout_s:g} s before its end "
                                       f"({', '.join(f'{tp.partition}: {c.position(tp)}/{ends[tp]}' for tp in sorted(pending))})")
    finally:
        c.close()


def _select(args: argparse.Namespace) -> tuple[Any, Any, str, Iterator[DeadLetter]]:
    cfg, settings, bs = load_daemon_config(args, {"output.dlq_topic": args.topic})
    since = _since_ms(args.since)
    topic = cfg.output.dlq_topic
    reasons = set(args.reason or [])
    it = read_dead_letters(settings, topic, since_ms=since, follow=getattr(args, "follow", False))
    return cfg, settings, topic, (d for d in it if d is None or not reasons or d.reason in reasons)


def _counts(c: collections.Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


# --------------------------------------------------------------------------- tail
def tail(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UserError(f"--limit {args.limit}: must be 0 (all) or more")
    cfg, settings, topic, letters = _select(args)
    out = sys.stdout
    counts: collections.Counter = collections.Counter()

    def show(d: DeadLetter) -> None:
        out.write((json.dumps(d.to_json(), ensure_ascii=False) if args.json else d.line(args.width)) + "\n")

    def summary(shown: int) -> None:
        n = sum(counts.values())
        if args.json:
            out.write(json.dumps({"summary": {"topic": topic, "dead_letters": n, "shown": shown,
                                              "by_reason": dict(sorted(counts.items()))}}) + "\n")
        else:
            out.write(f"# {n} dead letter(s) in {topic}{' since ' + args.since if args.since else ''}"
                      f"{' with reason ' + '|'.join(args.reason) if args.reason else ''}; shown {shown}; "
                      f"by reason: {_counts(counts)}\n")
        out.flush()

    last: collections.deque = collections.deque(maxlen=args.limit or None)
    shown = 0
    try:
        for d in letters:  # the backlog (the last --limit of it is shown); with --follow, then new ones
            if d is None:  # --follow: the backlog is read
                break
            counts[d.reason] += 1
            last.append(d)
        for d in sorted(last, key=lambda d: (d.timestamp or 0, d.partition, d.offset)):
            show(d)
        shown = len(last)
        if args.follow:
            out.flush()
            for d in letters:
                counts[d.reason] += 1
                show(d)
                shown += 1
                out.flush()
    except KeyboardInterrupt:
        pass
    summary(shown)
    return 0


# --------------------------------------------------------------------------- replay
def replay(args: argparse.Namespace) -> int:
    from streams.kafka import DeliveryError, Sink

    cfg, settings, topic, letters = _select(args)
    plan: list[tuple[DeadLetter, str]] = []
    skipped: collections.Counter = collections.Counter()
    for d in letters:
        if "anomon.truncated" in d.headers:
            skipped["value cut in the dead-letter topic (anomon.truncated)"] += 1
            continue
        src = _parse_source(d.headers.get("anomon.source"))
        dest = args.to or (src[0] if src else None)
        if dest is None:
            skipped["no anomon.source header, and no --to"] += 1
            continue
        if dest == topic:
            skipped[f"destination is the dead-letter topic {topic} itself"] += 1
            continue
        plan.append((d, dest))
    by_dest: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for d, dest in plan:
        by_dest[dest][d.reason] += 1
    verb = "would send" if args.dry_run else "sent"
    failed: collections.Counter = collections.Counter()
    first_error = None
    from streams.kafka import topic_partitions

    absent = sorted(dest for dest in by_dest if not topic_partitions(settings, dest))
    if absent:
        raise UserError(f"replay destination topic(s) {', '.join(absent)} do not exist on {settings.bootstrap_servers}; "
                        "create them (the daemon creates its input topics at start) or pass --to TOPIC")
    if plan and not args.dry_run:
        futures = []
        with Sink(settings, linger_ms=20) as sink:
            for d, dest in plan:
                headers = [("anomon.replayed_from", d.where)]
                if "anomon.source" in d.headers:
                    headers.append(("anomon.source", d.headers["anomon.source"]))
                futures.append((d, dest, sink.send(dest, d.value, key=d.key, headers=headers)))
            try:
                sink.flush()
            except DeliveryError:
                pass  # counted below, per record
        for d, dest, f in futures:
            if f.failed():
                failed[d.reason] += 1
                by_dest[dest][d.reason] -= 1
                first_error = first_error or f.exception
    for dest, c in sorted(by_dest.items()):
        c = +c
        print(f"{verb} {sum(c.values())} dead letter(s) to {dest}: {_counts(c)}")
    if not plan:
        print(f"{verb} 0 dead letters (none selected in {topic}"
              f"{' with reason ' + '|'.join(args.reason) if args.reason else ''}"
              f"{' since ' + args.since if args.since else ''})")
    for why, n in sorted(skipped.items()):
        print(f"skipped {n}: {why}")
    if failed:
        raise UnavailableError(f"{sum(failed.values())} dead letter(s) could not be sent ({_counts(failed)}): "
                               f"{first_error}; nothing was removed from {topic}, run the replay again")
    return 0
