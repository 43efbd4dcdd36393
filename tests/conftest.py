"""Shared fixtures. Fixture modules live in ``tests/fixtures/`` (one per area) and are loaded here."""
from __future__ import annotations

import importlib.util

_FIXTURE_MODULES = [
    "tests.fixtures.common",
    "tests.fixtures.broker",
    "tests.fixtures.prometheus",
    "tests.fixtures.daemon",
]
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]
