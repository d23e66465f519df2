"""Where a run's per-image work happens: `local` (the in-process Runner, through the cache) or `ray` (Ray Data
actors over a cluster, partition by partition). Both return rows of the same schema and the run's stats."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imagesafety.data.decoding import default_workers
from imagesafety.data.sample import Sample
from imagesafety.run.runner import ImageTask, Runner, RunStats
from imagesafety.run.tasks import ModelSpec

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineOptions:
    """`engine` (local or ray) and, for Ray, the cluster address, GPUs per actor, images per partition and CPUs per
    actor (2 leaves a model runtime its own threads beside the actor's decoding thread; a near-free model, as hash
    matching or a head on cached embeddings, runs more actors with 1)."""

    engine: str = "local"
    address: str | None = None
    num_gpus: float = 0
    partition_size: int = 1000
    cpus_per_actor: float = 2

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}: use {' or '.join(ENGINES)}")
        if self.cpus_per_actor <= 0:
            raise ValueError(f"--cpus-per-actor must be above 0, got {self.cpus_per_actor}")


def run_task(
    task: ImageTask,
    samples: Iterable[Sample],
    *,
    engine: EngineOptions = EngineOptions(),
    remote: ModelSpec | None = None,
    parts_dir: str | Path | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    progress: bool = True,
    total: int | None = None,
    description: str | None = None,
) -> tuple[pd.DataFrame, RunStats]:
    """Rows for every sample, and what the run did.

    On Ray the task is rebuilt on every actor from `remote` (a classifier or an encoder by its spec string and
    options); partitions are written under `parts_dir` (a temporary folder if None)."""
    if engine.engine == "local":
        runner = Runner(task, batch_size=batch_size, workers=workers or default_workers(), show_progress=progress)
        rows = runner.run(samples, total=total, description=description)
        return rows, runner.stats
    if remote is None:
        raise ValueError("--engine ray builds the model on each worker: give it as a spec string (e.g. nudenet)")
    from imagesafety.run.ray_engine import run_on_ray

    started = time.perf_counter()
    parts = Path(parts_dir) if parts_dir is not None else Path(tempfile.mkdtemp(prefix="imagesafety-ray-"))
    rows = run_on_ray(
        remote,
        samples,
        parts,
        frames=task.frames,
        address=engine.address,
        batch_size=batch_size,
        num_gpus=engine.num_gpus,
        partition_size=engine.partition_size,
        cpus_per_actor=engine.cpus_per_actor,
        progress=progress,
    )
    errors = int(rows["error"].notna().sum()) if len(rows) else 0
    stats = RunStats(
        images=len(rows), predicted=len(rows) - errors, errors=errors, seconds=time.perf_counter() - started
    )
    return rows, stats
