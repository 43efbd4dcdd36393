"""Errors shown to the user as one clear line (no traceback), and the exit codes of ``anomon``.

Exit codes (documented in docs/operations.md):

=====  ===================================================================================
0      success
1      an unexpected failure (a bug: the traceback is printed; please report it)
2      bad input: a command-line flag, a config value, a file, a model bundle (``UserError``)
3      a service anomon needs does not answer: the Kafka broker (``UnavailableError``)
4      a local resource is taken: the HTTP port is in use (``ResourceBusyError``)
130    interrupted (Ctrl-C before the daemon started)
=====  ===================================================================================

>>> UserError("x").exit_code, UnavailableError("x").exit_code, ResourceBusyError("x").exit_code
(2, 3, 4)
"""
from __future__ import annotations

#: exit code -> meaning, as ``anomon --help`` and docs/operations.md list them
EXIT_CODES = {
    0: "success",
    1: "unexpected failure (a bug; the traceback is printed)",
    2: "bad input: flag, config value, file or model bundle",
    3: "a service does not answer (the Kafka broker)",
    4: "a local resource is in use (the HTTP port)",
    130: "interrupted",
}


class UserError(Exception):
    """An error caused by input, config or environment; the message says what to do."""

    exit_code = 2


class ConfigError(UserError):
    """A bad configuration value; the message names the field and where it came from."""


class UnavailableError(UserError):
    """A service that anomon needs (the Kafka broker) does not answer."""

    exit_code = 3


class ResourceBusyError(UserError):
    """A local resource (a TCP port) is taken by another process."""

    exit_code = 4
