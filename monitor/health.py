"""The daemon's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (serving).

Bound to ``127.0.0.1`` by default; any other address is an explicit setting and logs a warning.

Examples
--------
>>> import urllib.request
>>> srv = HealthServer(lambda: (b"m 1\\n", "text/plain"), alive=lambda: True, ready=lambda: (False, "no model"))
>>> port = srv.start(port=0)
>>> urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
b'ok\\n'
>>> try:
...     urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz")
... except urllib.error.HTTPError as e:
...     print(e.code, e.read())
503 b'not ready: no model\\n'
>>> srv.stop()
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_error(exc: OSError, host: str, port: int) -> Exception:
    """The one-line error for an HTTP port that cannot be bound (exit code 4 when in use).

    >>> import errno
    >>> print(_bind_error(OSError(errno.EADDRINUSE, "Address already in use"), "127.0.0.1", 9108))
    http.port: 127.0.0.1:9108 is already in use by another process (another anomon run?); pick a free port with --http-port N (http.port, ANOMON_HTTP__PORT; 0 = any free port) or stop the other process
    """
    import errno

    from monitor.errors import ResourceBusyError, UserError

    fix = "--http-port N (http.port, ANOMON_HTTP__PORT; 0 = any free port)"
    if exc.errno == errno.EADDRINUSE:
        return ResourceBusyError(f"http.port: {host}:{port} is already in use by another process (another anomon "
                                 f"run?); pick a free port with {fix} or stop the other process")
    if exc.errno == errno.EACCES:
        return UserError(f"http.port: binding {host}:{port} is not permitted (ports below 1024 need privileges); "
                         f"pick another with {fix}")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, __import__("socket").gaierror):
        return UserError(f"http.host: {host!r} is not an address of this machine; fix http.host "
                         "(ANOMON_HTTP__HOST; default 127.0.0.1)")
    return UserError(f"http.port: cannot listen on {host}:{port}: {exc.strerror or exc}")


class HealthServer:
    """A tiny threaded HTTP server for the three endpoints."""

    def __init__(self, exposition: Callable[[], tuple[bytes, str]], alive: Callable[[], bool],
                 ready: Callable[[], tuple[bool, str]]):
        self._exposition = exposition
        self._alive = alive
        self._ready = ready
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 9108) -> int:
        if not is_loopback(host):
            log.warning("HTTP endpoints bound to %s (not loopback): /metrics, /healthz and /readyz are reachable "
                        "from the network; keep it behind a firewall", host)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # quiet: one access line per scrape is noise
                log.debug("http %s", fmt % args)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        body, ctype = outer._exposition()
                        self._send(200, body, ctype)
                    elif path == "/healthz":
                        ok = outer._alive()
                        self._send(200 if ok else 503, b"ok\n" if ok else b"main loop stalled\n")
                    elif path == "/readyz":
                        ok, why = outer._ready()
                        self._send(200 if ok else 503, b"ready\n" if ok else f"not ready: {why}\n".encode())
                    else:
                        self._send(404, b"not found: try /metrics, /healthz, /readyz\n")
                except Exception as exc:  # noqa: BLE001 - never kill the server thread
                    log.exception("http handler failed")
                    self._send(500, f"error: {type(exc).__name__}\n".encode())

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise _bind_error(exc, host, port) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="anomon-http", daemon=True)
        self._thread.start()
        return self._server.server_address[1]

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
