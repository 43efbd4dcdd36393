"""Issue 23, point 4: zero-config ``anomon run`` and ``anomon broker`` use a stable address (9092 when
free; ``ANOMON_EMBEDDED_BROKER_PORT`` sets another), and ``anomon run`` uses an embedded broker that
already runs there instead of starting a second one."""
from __future__ import annotations

import socket

import pytest

from monitor.config import load_config
from monitor.runner import ensure_broker
from streams.broker import free_port

pytestmark = pytest.mark.broker


def test_zero_config_takes_the_stable_port_and_the_next_daemon_finds_that_broker(monkeypatch):
    port = free_port()
    monkeypatch.setenv("ANOMON_EMBEDDED_BROKER_PORT", str(port))
    cfg = load_config(None, env={})
    bs, broker = ensure_broker(cfg)
    try:
        assert bs == f"127.0.0.1:{port}" and broker is not None
        again, second = ensure_broker(cfg)
        assert again == bs and second is None  # found, not started twice
    finally:
        broker.stop()


def test_a_stable_port_held_by_something_else_falls_back_to_a_free_one(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setenv("ANOMON_EMBEDDED_BROKER_PORT", str(port))
        bs, broker = ensure_broker(load_config(None, env={}))
        try:
            assert broker is not None and bs != f"127.0.0.1:{port}"
        finally:
            broker.stop()
