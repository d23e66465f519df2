"""The execution engine: runner, progress, engines (local, Ray) and the task types (predict, embed)."""
