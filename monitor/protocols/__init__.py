"""Benchmark protocols from ../shared/PROTOCOLS.md, one module per family (tabular, ecg, mnist, graph)."""
