"""The daemon's config for the operator commands (``anomon dlq``, ``anomon status``).

They read the same settings as ``anomon run`` (``--config FILE``, ``ANOMON_<SECTION>__<KEY>``, then
their flags), so the dead-letter topic, the group and the broker are the daemon's. With no
``kafka.bootstrap_servers`` configured the daemon uses the embedded broker at its stable address
(``127.0.0.1:9092``, or ``ANOMON_EMBEDDED_BROKER_PORT``); these commands look there.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_config_args(p)
>>> sorted(vars(p.parse_args([])))
['bootstrap_servers', 'config', 'connect_timeout']
"""
from __future__ import annotations

import argparse
from typing import Any

from monitor.errors import ConfigError


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--bootstrap-servers`` and ``--connect-timeout``, as ``anomon run`` reads them."""
    p.add_argument("--config", metavar="FILE", help="the daemon's config file (.toml, .yaml), as for `anomon run`")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default: kafka.bootstrap_servers of the config, else the embedded "
                   "broker's stable address)")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                   help="wait this long for the broker to answer, then exit with code 3 (default 5)")


def load_daemon_config(args: argparse.Namespace, overrides: dict[str, Any]) -> tuple[Any, Any, str]:
    """``(config, KafkaSettings, bootstrap)`` from the config file, the environment and the flags; waits up
    to ``--connect-timeout`` for the broker (:class:`~monitor.errors.UnavailableError`, exit 3, if none)."""
    from monitor.config import load_config
    from monitor.preflight import wait_for_broker

    cfg = load_config(args.config, overrides={"kafka.bootstrap_servers": args.bootstrap_servers, **overrides})
    bs = cfg.kafka.bootstrap_servers
    if not bs:
        from streams.broker import DEFAULT_HOST, stable_port

        port = stable_port()
        if port is None:
            raise ConfigError("kafka.bootstrap_servers: not configured, and ANOMON_EMBEDDED_BROKER_PORT=0 gives the "
                              "embedded broker a free port: pass --bootstrap-servers HOST:PORT (the address "
                              "`anomon run` printed)")
        bs = f"{DEFAULT_HOST}:{port}"
    wait_for_broker(bs, args.connect_timeout,
                    setting="--bootstrap-servers (kafka.bootstrap_servers, ANOMON_KAFKA__BOOTSTRAP_SERVERS)")
    return cfg, cfg.kafka_settings(bs), bs
