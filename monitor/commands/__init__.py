"""One module per ``anomon`` subcommand (see :mod:`monitor.cli`)."""
