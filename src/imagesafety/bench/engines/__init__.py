"""Execution engines: `local` (the default, in-process Runner) and `ray` (Ray Data over a cluster)."""

ENGINES = ("local", "ray")
