"""``anomon broker`` and ``anomon broker --check``, run as a user would (subprocess)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from streams.broker import _metadata_probe, free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.broker


def anomon(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_check_exits_zero_and_prints_facts():
    r = subprocess.run(anomon("--log-level", "WARNING", "broker", "--check"), capture_output=True, text=True,
                       timeout=120, cwd=REPO, env=_env())  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "[FAIL]" not in out and "all checks passed" in out
    for fact in (
        "created topic anomon-check with 4 partitions",
        "produced 200 keyed messages with headers",
        "consumed 200 of 200 messages through the group",
        "landed on exactly one partition",
        "committed offsets read back from the broker",
        "a restarted member resumed from the committed offsets",
        "broker stopped",
    ):
        assert fact in out, fact
    assert len(re.findall(r"^\[ok\]", out, flags=re.M)) >= 14


def test_foreground_until_ctrl_c():
    port = free_port()
    p = subprocess.Popen(anomon("broker", "--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO, env=_env())  # fmt: skip
    try:
        line = p.stdout.readline()
        m = re.search(r"bootstrap (\S+)\s+\(pid (\d+)", line)
        assert m, line + p.stderr.read() if p.poll() is not None else line
        assert m.group(1) == f"127.0.0.1:{port}"
        tansu = int(m.group(2))
        _metadata_probe(m.group(1), 5.0)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 0
        assert not psutil.pid_exists(tansu) or psutil.Process(tansu).status() == psutil.STATUS_ZOMBIE
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_port_taken_is_one_clear_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(anomon("broker", "--port", str(port)), capture_output=True, text=True, timeout=60,
                           cwd=REPO, env=_env())  # fmt: skip
    assert r.returncode == 2
    assert f"anomon: error: port 127.0.0.1:{port} is already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_binary_is_one_clear_line(tmp_path):
    r = subprocess.run(anomon("broker", "--check", "--binary", str(tmp_path / "tansu")), capture_output=True,
                       text=True, timeout=60, cwd=REPO, env=_env())  # fmt: skip
    assert r.returncode == 2 and "anomon: error: tansu binary not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_describes_broker():
    r = subprocess.run(anomon("broker", "--help"), capture_output=True, text=True, timeout=60, cwd=REPO, env=_env())
    assert r.returncode == 0 and "--check" in r.stdout and "--port" in r.stdout and "--binary" in r.stdout
