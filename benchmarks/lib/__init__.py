"""Shared helpers for the benchmark scripts: provenance of a results file, atomic JSON writes.

Scripts in ``benchmarks/`` run as ``python benchmarks/NAME.py``; they put the repository root on
``sys.path`` (one line at the top) and import ``benchmarks.lib``."""
