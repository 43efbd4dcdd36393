"""Rerunnable experiments behind the accuracy choices (not part of the CLI)."""
