"""Benchmarking: `evaluate` (effectiveness), metrics with bootstrap intervals, coverage, reports, leaderboards and
robustness (attacks, corruptions). The execution engine lives in `imagesafety.run`."""
