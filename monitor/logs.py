"""Structured logging: plain text for terminals, one JSON object per line for daemons."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    """Plain text for terminals; the ``extra=`` fields the JSON logs carry follow as ``key=value``.

    >>> f = TextFormatter("%(levelname)s %(message)s")
    >>> rec = logging.makeLogRecord({"msg": "partitions assigned", "levelname": "INFO",
    ...                              "partitions": ["t:0", "t:1"], "model": "ecg 1.0"})
    >>> f.format(rec)
    "INFO partitions assigned partitions=t:0,t:1 model='ecg 1.0'"
    """

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = []
        for k, v in vars(record).items():
            if k in _RESERVED or k.startswith("_") or k == "worker":
                continue
            if isinstance(v, (list, tuple, set, frozenset)):
                v = ",".join(map(str, v))
            v = str(v)
            extra.append(f"{k}={v!r}" if (not v or any(c in v for c in " \"'=")) else f"{k}={v}")
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # (a traceback stays after the fields)
        return f"{head} {' '.join(extra)}{sep}{tail}"


class _WorkerFilter(logging.Filter):
    """Gives every record the ``worker`` index of an ``anomon run --workers N`` worker process."""

    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class SlowTaskDigest(logging.Filter):
    """kafka-python's network thread warns each time one of its tasks ran over 0.1 s ("It is blocking
    the event loop"). In a CPU-bound daemon that is every few seconds: its tasks wait for the
    interpreter lock that the daemon's own thread holds (at stride 1, ~85 % of the time), which
    says nothing new. The first warning passes; the next ones in ``every_s`` are counted and told
    as one line (how many, the longest) with the next warning after that.

    >>> f = SlowTaskDigest(every_s=60.0)
    >>> def rec(s):
    ...     return logging.makeLogRecord({"msg": f"Task <T> ran for {s}s (>0.100s threshold). It is "
    ...                                          "blocking the event loop -- likely a tight sync loop"})
    >>> [f.filter(rec(x)) for x in ("0.117", "0.392", "0.105")]
    [True, False, False]
    >>> f._last -= 61; r = rec("0.120"); f.filter(r), r.getMessage()[:91]
    (True, 'kafka-python network thread: 3 tasks over its 0.1 s threshold in 61 s, the longest 0.392 s;')
    """

    _PATTERN = re.compile(r"ran for ([0-9.]+)s .*blocking the event loop")

    def __init__(self, every_s: float = 60.0):
        super().__init__()
        self.every_s = every_s
        self._last: float | None = None  # (monotonic) when one last went out
        self._count = 0
        self._longest = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        m = self._PATTERN.search(record.getMessage())
        if m is None:
            return True
        now = time.monotonic()
        self._count += 1
        self._longest = max(self._longest, float(m.group(1)))
        if self._last is None:
            self._last, self._count, self._longest = now, 0, 0.0
            return True
        if now - self._last < self.every_s:
            return False
        record.msg = (f"kafka-python network thread: {self._count} tasks over its 0.1 s threshold in "
                      f"{now - self._last:.0f} s, the longest {self._longest:.3f} s; this process is "
                      "CPU-bound (its own thread holds the interpreter), see anomon_* throughput and lag "
                      "metrics, or run --workers N")
        record.args = None
        self._last, self._count, self._longest = now, 0, 0.0
        return True


class ReconnectDigest(logging.Filter):
    """While the broker is unreachable, the Kafka client logs several warnings and errors per
    reconnect attempt (``Connection failed ... ECONNREFUSED``, ``Bootstrap ... not ready``,
    ``Connection lost``), and the daemon one ``poll failed`` per back-off. The first of an outage
    passes; the next ones within ``every_s`` are counted and, with the first one after that, told
    as one line per interval: how many, over how long, and the latest.

    >>> f = ReconnectDigest(every_s=30.0)
    >>> def rec(msg, name="kafka.net.manager"):
    ...     return logging.makeLogRecord({"name": name, "levelno": logging.ERROR, "msg": msg})
    >>> [f.filter(rec("Connection failed: KafkaConnectionError: 111 ECONNREFUSED")) for _ in range(4)]
    [True, False, False, False]
    >>> f.filter(rec("unrelated", name="anomon.daemon"))
    True
    >>> f._last -= 31; r = rec("Bootstrap bootstrap-0 not ready; waiting 0.5 secs"); f.filter(r)
    True
    >>> r.getMessage()
    'Kafka connection trouble: 3 more warnings like these in the last 31 s, still retrying; latest: Bootstrap bootstrap-0 not ready; waiting 0.5 secs'
    """

    _PATTERN = re.compile(r"ECONNREFUSED|Connection (failed|lost|refused|reset)|not ready|Unable to (bootstrap|connect)|"
                          r"KafkaConnectionError|NodeNotReady|NoBrokersAvailable|disconnected|poll failed|"
                          r"timed out|Broken pipe|Connection to node", re.I)

    def __init__(self, every_s: float = 30.0):
        super().__init__()
        self.every_s = every_s
        self._last: float | None = None  # (monotonic) when a line of this kind last went out
        self._count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not (record.name.startswith("kafka") or record.name == "anomon.daemon"):
            return True
        msg = record.getMessage()
        if not self._PATTERN.search(msg):
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every_s:
            self._count += 1
            return False
        if self._last is not None and self._count:
            record.msg = (f"Kafka connection trouble: {self._count} more warnings like these in the last "
                          f"{now - self._last:.0f} s, still retrying; latest: {msg[:300]}")
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._last, self._count = now, 0  # (the first of an outage goes out as it is)
        return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    import os

    handler = logging.StreamHandler(sys.stderr)
    worker = os.environ.get("ANOMON_WORKER_INDEX")  # (monitor.workers.WORKER_ENV)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        where = " [worker %(worker)s]" if worker is not None else ""
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)-7s %(name)s{where}: %(message)s"))
    if worker is not None:
        handler.addFilter(_WorkerFilter(worker))
    handler.addFilter(ReconnectDigest())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    # ANOMON_KAFKA_DEBUG=coordinator,consumer: kafka-python's own DEBUG lines of those loggers (group joins,
    # rebalances), which are kept at WARNING otherwise
    for name in filter(None, (x.strip() for x in os.environ.get("ANOMON_KAFKA_DEBUG", "").split(","))):
        logging.getLogger(f"kafka.{name}").setLevel(logging.DEBUG)
    selector = logging.getLogger("kafka.net.selector")
    selector.filters[:] = [f for f in selector.filters if not isinstance(f, SlowTaskDigest)]
    selector.addFilter(SlowTaskDigest())
