"""Benchmarks run by ``make bench``; each writes ``results/<name>.{md,json}``."""
