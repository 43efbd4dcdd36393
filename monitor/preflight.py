"""Checks made before a command starts its real work, so that a wrong address ends in one line.

:func:`wait_for_broker` waits (a bounded time) until one of the bootstrap servers accepts a TCP
connection; when none does, it raises :class:`~monitor.errors.UnavailableError` (exit code 3)
naming the address and what to do, instead of half a minute of Kafka client warnings and a
``KafkaTimeoutError`` traceback.

>>> import socket
>>> s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
>>> try:
...     wait_for_broker(f"127.0.0.1:{port}", timeout_s=0.3, setting="--bootstrap-servers")
... except UnavailableError as e:
...     print(str(e).split(";")[0].replace(str(port), "PORT"))
no Kafka broker answers at 127.0.0.1:PORT (connection refused) after 0.3 s
"""
from __future__ import annotations

import errno
import socket
import time

from monitor.errors import UnavailableError


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        host = host.strip("[]") or "localhost"
        try:
            out.append((host, int(port)))
        except ValueError:
            out.append((item, 9092))
    return out


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return {errno.ECONNREFUSED: "connection refused", errno.EHOSTUNREACH: "host unreachable",
            errno.ENETUNREACH: "network unreachable"}.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def broker_answers(bootstrap: str, timeout_s: float = 1.0) -> tuple[bool, str]:
    """``(True, "")`` when one of ``bootstrap``'s servers accepts a TCP connection, else ``(False, why)``."""
    why = "no address given"
    for host, port in _addresses(bootstrap):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True, ""
        except OSError as exc:
            why = _why(exc)
    return False, why


def wait_for_broker(bootstrap: str, timeout_s: float = 15.0, *,
                    setting: str = "kafka.bootstrap_servers (--bootstrap-servers, ANOMON_KAFKA__BOOTSTRAP_SERVERS)"
                    ) -> None:
    """Wait up to ``timeout_s`` for a bootstrap server to accept a connection; raise
    :class:`UnavailableError` when none did."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        ok, why = broker_answers(bootstrap, timeout_s=min(1.0, max(0.1, timeout_s)))
        if ok:
            return
        if time.monotonic() >= deadline:
            raise UnavailableError(
                f"no Kafka broker answers at {bootstrap} ({why}) after {timeout_s:g} s; start it (`anomon broker` "
                f"runs the embedded one) or fix {setting}")
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
