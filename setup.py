"""The project's metadata is in pyproject.toml; this adds two optional C loops: the Kafka record
decoder's (streams/_fetch_speedups.c) and the windower's (streams/_window_speedups.c). A machine
without a C compiler installs anomon without them, and anomon then runs those loops in Python
(streams.kafka_fetch, streams.windowing), with the same results."""
from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(ext_modules=[Extension(f"streams.{name}", [f"streams/{name}.c"], optional=True, extra_compile_args=_FLAGS)
                   for name in ("_fetch_speedups", "_window_speedups")])
