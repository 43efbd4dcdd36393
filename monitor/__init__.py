"""The daemon, runner, CLI, config, metrics and batch jobs: the only package that composes ``models`` and ``streams``."""
