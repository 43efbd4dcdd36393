"""The project's metadata is in pyproject.toml; this adds the optional C loops of streams/_speedups.c:
the Kafka record decoder's and the windower's. A machine without a C compiler installs anomon
without them, and anomon then runs those loops in Python (streams.kafka.fetch, streams.windowing),
with the same results."""
from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(ext_modules=[Extension("streams._speedups", ["streams/_speedups.c"], optional=True, extra_compile_args=_FLAGS)])
