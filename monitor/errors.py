"""Errors shown to the user as one clear line (no traceback)."""
from __future__ import annotations


class UserError(Exception):
    """An error caused by input, config or environment; the message says what to do."""

    exit_code = 2


class ConfigError(UserError):
    """A bad configuration value; the message names the field and where it came from."""
