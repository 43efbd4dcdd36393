"""Issue 23, point 1: every command a user can get wrong ends in one line and a documented exit code."""
from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time

from tests.fixtures.daemon import REPO


def _anomon(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=timeout)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("anomon: error:")]
    assert len(errs) == 1, p.stderr
    return errs[0]


def test_http_port_in_use_is_one_line_and_exit_code_4(broker, daemon_bundle):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        p = _anomon("run", "--model-dir", str(daemon_bundle), "--bootstrap-servers", broker.bootstrap,
                    "--http-port", str(port))
    finally:
        busy.close()
    line = _one_line_error(p)
    assert p.returncode == 4
    assert f"http.port: 127.0.0.1:{port} is already in use" in line and "--http-port" in line


def test_broker_down_at_start_is_one_line_and_exit_code_3(daemon_bundle):
    port = _free_port()
    t = time.monotonic()
    run = _anomon("run", "--model-dir", str(daemon_bundle), "--bootstrap-servers", f"127.0.0.1:{port}",
                  "--http-port", "0", env={"ANOMON_KAFKA__STARTUP_TIMEOUT_S": "1"})
    assert run.returncode == 3, run.stderr
    line = _one_line_error(run)
    assert f"no Kafka broker answers at 127.0.0.1:{port} (connection refused) after 1 s" in line
    assert "kafka.bootstrap_servers" in line
    assert not [ln for ln in run.stderr.splitlines() if " kafka.net" in ln or " kafka.conn" in ln]  # no client noise
    rep = _anomon("replay", "kpi", "--topic", "x", "--bootstrap-servers", f"127.0.0.1:{port}", "--connect-timeout", "1")
    assert rep.returncode == 3, rep.stderr
    assert "no Kafka broker answers" in _one_line_error(rep)
    assert time.monotonic() - t < 60


def test_reconnect_warnings_of_a_real_client_are_summarised_per_interval():
    """A kafka-python consumer retrying a closed port for ~3 s: its warnings become a few lines with counts."""
    from kafka import KafkaConsumer

    from monitor.logs import ReconnectDigest

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(ReconnectDigest(every_s=1.0))
    root = logging.getLogger()
    old = root.handlers[:], root.level, logging.getLogger("kafka").level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    raw = []

    class Count(logging.Handler):
        def emit(self, record):
            raw.append(record)

    counter = Count(logging.WARNING)
    logging.getLogger("kafka").addHandler(counter)
    try:
        c = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{_free_port()}", reconnect_backoff_ms=20,
                          reconnect_backoff_max_ms=50, request_timeout_ms=3000, api_version=(2, 5))
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            try:
                c.poll(timeout_ms=200)
            except Exception:  # noqa: BLE001 - nothing subscribed / no broker: we want the log lines
                time.sleep(0.2)
        c.close()
    finally:
        logging.getLogger("kafka").removeHandler(counter)
        root.handlers[:], _, _ = old
        root.setLevel(old[1])
        logging.getLogger("kafka").setLevel(old[2])
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    assert len(raw) >= 10, f"the client logged only {len(raw)} warnings"
    assert len(lines) <= 6, lines  # about one per second
    summaries = [ln for ln in lines if ln.startswith("Kafka connection trouble: ")]
    assert summaries and all("more warnings like these in the last" in s for s in summaries), lines
    told = sum(int(s.split()[3]) for s in summaries)
    assert told + len(lines) - len(summaries) <= len(raw) + len(summaries)
