"""``anomon status``: the consumer group's partitions (owner, committed offset, high-water mark, lag), the
model bundle, and whether the daemon's ``/readyz`` answers.

Read from the daemon's config (as ``anomon run``: ``--config``, environment, flags) without joining its
group. Exit code 0 when ``/readyz`` answers 200, 3 when it does not (down, not ready, or the HTTP server
is off so readiness cannot be asked).

>>> _owners({"members": [{"member_id": "anomon-1", "client_id": "", "client_host": "", "member_assignment": ""}]},
...         [("t", 0), ("t", 1)])
{('t', 0): {'member_id': 'anomon-1', 'client_id': '', 'host': '', 'inferred': True}, ('t', 1): {'member_id': 'anomon-1', 'client_id': '', 'host': '', 'inferred': True}}
>>> _owners({"members": []}, [("t", 0)])
{}

A broker that reports assignments (Kafka; kafka-python decodes them, then turns them into dicts):

>>> from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
>>> raw = ConsumerProtocolAssignment(version=0, assigned_partitions=[("t", [1])], user_data=b"").encode()
>>> a = ConsumerProtocolAssignment.decode(raw).to_dict()
>>> m = {"member_id": "anomon-2", "client_id": "anomon", "client_host": "/10.0.0.7", "member_assignment": a}
>>> _owners({"members": [m, {**m, "member_id": "anomon-3", "member_assignment": ""}]}, [("t", 0), ("t", 1)])
{('t', 1): {'member_id': 'anomon-2', 'client_id': 'anomon', 'host': '10.0.0.7', 'inferred': False}}
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from monitor.commands.daemon_config import add_config_args, load_daemon_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="the group's partitions (owner, committed, high-water, lag), the model, and /readyz",
        description="For each partition of the input topics: the group member that owns it, the group's "
        "committed offset, the high-water mark and the lag; the model bundle (name, version) of model.dir; and "
        "whether the daemon's /readyz answers 200 at http.host:http.port (1 s). Exit code 0 when ready, 3 when "
        "not. Never joins the group.")
    add_config_args(p)
    p.add_argument("--group", metavar="ID", help="consumer group (default: input.group_id of the config)")
    p.add_argument("--topic", action="append", metavar="TOPIC", help="input topic (repeatable; default: input.topics)")
    p.add_argument("--model-dir", metavar="DIR", help="model bundle directory (default: model.dir)")
    p.add_argument("--http-port", type=int, metavar="PORT", help="port of the daemon's /readyz (default: http.port)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def _assigned(member: dict) -> list[tuple[str, int]] | None:
    """The partitions a member's decoded assignment names (None when the broker sent none: Tansu)."""
    a = member.get("member_assignment")
    if not a:
        return None
    if hasattr(a, "partitions") and callable(a.partitions):
        return [(tp.topic, tp.partition) for tp in a.partitions()]
    if isinstance(a, dict):
        items = a.get("assigned_partitions") or a.get("assignment") or []
        out = []
        for it in items:
            if isinstance(it, dict):
                out.extend((it["topic"], int(p)) for p in it.get("partitions", []))
            else:
                topic, parts = it[0], it[1]
                out.extend((topic, int(p)) for p in parts)
        return out
    return None


def _owners(group: dict, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """Partition -> owner, from the members' assignments; a group of one member whose assignment the broker
    does not report (Tansu) owns every partition (``inferred``)."""
    members = group.get("members") or []
    out: dict[tuple[str, int], dict] = {}
    for m in members:
        who = {"member_id": m.get("member_id", ""), "client_id": m.get("client_id", ""),
               "host": (m.get("client_host") or "").lstrip("/")}
        got = _assigned(m)
        if got is None:
            continue
        for tp in got:
            out[tp] = {**who, "inferred": False}
    if not out and len(members) == 1:
        m = members[0]
        who = {"member_id": m.get("member_id", ""), "client_id": m.get("client_id", ""),
               "host": (m.get("client_host") or "").lstrip("/"), "inferred": True}
        out = {tp: dict(who) for tp in partitions}
    return out


def _model(model_dir: str) -> dict[str, Any]:
    """The bundle's name, version and window, from its manifest (the model is not loaded)."""
    from monitor.modelstore import BUNDLE_FILE, BUNDLE_FORMAT

    if not model_dir:
        return {"dir": "", "error": "model.dir is not set"}
    mf = Path(model_dir).expanduser() / BUNDLE_FILE
    try:
        meta = json.loads(mf.read_text())
    except OSError as exc:
        return {"dir": model_dir, "error": f"{mf}: {exc.strerror or exc}"}
    except ValueError as exc:
        return {"dir": model_dir, "error": f"{mf}: not JSON ({exc})"}
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        return {"dir": model_dir, "error": f"{mf}: format {meta.get('format') if isinstance(meta, dict) else None!r} "
                f"is not supported (this anomon reads {BUNDLE_FORMAT})"}
    w = meta.get("window") or {}
    return {"dir": model_dir, "name": meta.get("name") or meta.get("detector"), "version": str(meta.get("version", "0")),
            "detector": meta.get("detector"), "window": {k: w.get(k) for k in ("length", "stride", "channels")}}


def _ready(host: str, port: int, enabled: bool, timeout_s: float = 1.0) -> dict[str, Any]:
    if not enabled:
        return {"state": "unknown", "why": "http.enabled is false: the daemon serves no /readyz"}
    if not port:
        return {"state": "unknown", "why": "http.port is 0 (a free port chosen at start): pass --http-port"}
    probe = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://{probe if ':' not in probe else '[' + probe + ']'}:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return {"state": "ready", "url": url, "http_status": r.status}
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace").strip()[:200]
        return {"state": "not ready", "url": url, "http_status": exc.code, "why": body}
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return {"state": "down", "url": url, "why": str(why)}


def collect(cfg: Any, settings: Any, bootstrap: str) -> dict[str, Any]:
    """The status as a JSON-able dict (what ``anomon status --json`` prints)."""
    from streams.kafka import committed_offsets, describe_group, partition_ends, topic_partitions

    group_id = cfg.input.group_id
    tps, missing = [], []
    for t in cfg.input.topics:
        got = topic_partitions(settings, t)
        tps.extend(got)
        if not got:
            missing.append(t)
    ends = partition_ends(settings, tps) if tps else {}
    committed = committed_offsets(settings, group_id)
    group = describe_group(settings, group_id)
    owners = _owners(group, [(tp.topic, tp.partition) for tp in tps])
    parts = []
    for tp in sorted(tps):
        c = committed.get(tp)
        hw = ends.get(tp)
        parts.append({"topic": tp.topic, "partition": tp.partition, "owner": owners.get((tp.topic, tp.partition)),
                      "committed": c, "high_water": hw,
                      "lag": None if hw is None else max(0, hw - (c or 0))})
    return {
        "bootstrap": bootstrap, "group": group_id, "group_state": group.get("group_state"),
        "members": len(group.get("members") or []), "partitions": parts, "missing_topics": missing,
        "total_lag": sum(p["lag"] or 0 for p in parts),
        "model": _model(cfg.model.dir),
        "readyz": _ready(cfg.http.host, cfg.http.port, cfg.http.enabled),
    }


def _owner_text(o: dict | None) -> str:
    if not o:
        return "-"
    who = o.get("client_id") or o.get("member_id") or "?"
    if o.get("host"):
        who += f"@{o['host']}"
    return who + (" (only member)" if o.get("inferred") else "")


def render(s: dict[str, Any]) -> str:
    """The text form of :func:`collect`'s dict."""
    lines = [f"group {s['group']} on {s['bootstrap']}: {s['group_state'] or 'unknown'}, {s['members']} member(s)"]
    for t in s["missing_topics"]:
        lines.append(f"  topic {t}: does not exist")
    if s["partitions"]:
        rows = [("TOPIC", "PART", "OWNER", "COMMITTED", "HIGH-WATER", "LAG")]
        for p in s["partitions"]:
            rows.append((p["topic"], str(p["partition"]), _owner_text(p["owner"]),
                         "-" if p["committed"] is None else str(p["committed"]),
                         "-" if p["high_water"] is None else str(p["high_water"]),
                         "-" if p["lag"] is None else str(p["lag"])))
        wid = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(wid[i]) if i < 3 else c.rjust(wid[i]) for i, c in enumerate(r)))
        lines.append(f"  total lag {s['total_lag']} record(s)")
        w = s["model"].get("window") or {}
        if s["total_lag"] and w.get("length") and w.get("stride"):
            lines.append(f"  (the daemon commits at the oldest reading its next windows need: up to "
                         f"{max(0, w['length'] - w['stride'])} readings per series stay behind the committed "
                         "offset when every window is scored)")
    m = s["model"]
    if "error" in m:
        lines.append(f"model: {m['error']}")
    else:
        w = m["window"]
        lines.append(f"model: {m['name']} version {m['version']} ({m['detector']}, window {w['length']}, stride "
                     f"{w['stride']}, {w['channels']} channel(s)) from {m['dir']}")
    r = s["readyz"]
    where = f" at {r['url']}" if "url" in r else ""
    lines.append(f"readyz: {r['state']}{where}" + (f" ({r['why']})" if r.get("why") else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg, settings, bs = load_daemon_config(args, {"input.group_id": args.group, "input.topics": args.topic,
                                                  "model.dir": args.model_dir, "http.port": args.http_port,
                                                  "http.enabled": True if args.http_port else None})
    s = collect(cfg, settings, bs)
    sys.stdout.write((json.dumps(s) if args.json else render(s)) + "\n")
    return 0 if s["readyz"]["state"] == "ready" else 3
