"""Shared fixtures. Fixture modules live in ``tests/fixtures/`` (one per area) and are loaded here."""
from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.broker",
    "tests.fixtures.prometheus",
    "tests.fixtures.daemon",
]
