"""What several benchmarks share: timing a whole process."""

from __future__ import annotations

import subprocess
import time


def timed(args: list[str]) -> float:
    """Wall seconds of one process; a failed process stops the benchmark with its output's end."""
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started
