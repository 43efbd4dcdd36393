"""The project's metadata is in pyproject.toml; this adds the optional C loop of the Kafka record
decoder (streams/_fetch_speedups.c). A machine without a C compiler installs anomon without it, and
anomon then decodes records in Python (streams.kafka_fetch), with the same results."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("streams._fetch_speedups", ["streams/_fetch_speedups.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
