"""Benchmarks behind ``anomon bench`` (one module per benchmark, each exposing ``add_parser(sub)``)."""
