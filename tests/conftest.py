"""Shared fixtures. Fixture modules live in ``tests/fixtures/`` (one per area) and are loaded here."""
from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.broker",
    "tests.fixtures.prometheus",
    "tests.fixtures.daemon",
    "tests.fixtures.batch",
]

import os  # noqa: E402

# every embedded broker of the suite takes a free port (never the stable 9092 that a user's `anomon broker` may hold)
os.environ.setdefault("ANOMON_EMBEDDED_BROKER_PORT", "0")
