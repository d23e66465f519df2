"""What every command that runs the engine shares: which images (`DataSelection`), how to run (`RunOptions`), and the
one path from those to rows (`run_job`). The commands build the records from one set of command-line options each
(`cli/common.py`), so an option added here appears on all of them; `eval`, `robustness`, `embed`, `explain`, `pairs
generate`, `hysac index`, `hysac eval` and `hysac calibrate` run through `run_job`, locally or on Ray."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from imagesafety.classifiers.base import SafetyClassifier, preferred_batch_size
from imagesafety.data import Dataset, load_dataset, select_samples
from imagesafety.data.sample import Sample
from imagesafety.encoders.base import Encoder
from imagesafety.media import FramePolicy
from imagesafety.run.engine import EngineOptions, run_task
from imagesafety.run.runner import ImageTask, RunStats
from imagesafety.run.tasks import EmbeddingTask, ModelSpec, PredictionTask, build_task
from imagesafety.store import USE_DEFAULT_CACHE, PredictionCache, open_cache


@dataclass(frozen=True)
class DataSelection:
    """Which images: how a dataset is opened (streaming, files outside its folder, URL hosts) and which rows run."""

    split: str | None = None
    categories: list[str] | None = None
    sources: list[str] | None = None
    limit: int | None = None
    streaming: bool = False
    allow_outside_root: bool = False
    url_hosts: list[str] = field(default_factory=list)

    def open(
        self, dataset: str | Path | Dataset | Iterable[Sample], splits: list[str] | None = None
    ) -> Dataset | Iterable[Sample]:
        """The dataset, opened the one way every command opens it (`splits` defaults to the selected split)."""
        if not isinstance(dataset, (str, Path)):
            return dataset
        chosen = splits if splits is not None else ([self.split] if self.split else None)
        return load_dataset(
            dataset,
            splits=chosen,
            streaming=self.streaming,
            allow_outside_root=self.allow_outside_root,
            url_hosts=self.url_hosts,
        )

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of `evaluate`, `robustness` and `embed`."""
        return {
            "split": self.split,
            "categories": self.categories,
            "sources": self.sources,
            "limit": self.limit,
            "streaming": self.streaming,
            "allow_outside_root": self.allow_outside_root,
            "url_hosts": list(self.url_hosts),
        }


@dataclass(frozen=True)
class RunOptions:
    """How the engine runs: the cache (None: none), batch size (None: the model's preference), decoding threads,
    the progress bar, and the engine (local or Ray, with its cluster settings)."""

    cache: Any = USE_DEFAULT_CACHE
    batch_size: int | None = None
    workers: int | None = None
    progress: bool = True
    engine: EngineOptions = field(default_factory=EngineOptions)

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of `evaluate`, `robustness` and `embed`."""
        return {
            "cache": self.cache,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "progress": self.progress,
            "engine": self.engine,
        }


def known_total(dataset: Any, limit: int | None, filtered: bool) -> int | None:
    """How many samples a run will see, when that is cheap to know (for the progress bar's ETA)."""
    if filtered:
        return None
    try:
        size = len(dataset)
    except TypeError:
        return None
    return min(size, limit) if limit is not None else size


@dataclass
class JobResult:
    """A job's rows (one per selected image, the task's schema), what the run did, the dataset as opened, the task
    (its frame policy and cache key) and the cache it used (None: none)."""

    rows: pd.DataFrame
    stats: RunStats
    dataset: Dataset | Iterable[Sample]
    task: ImageTask
    store: PredictionCache | None


def run_job(
    model: ModelSpec | SafetyClassifier | Encoder | ImageTask,
    dataset: str | Path | Dataset | Iterable[Sample],
    data: DataSelection = DataSelection(),
    options: RunOptions = RunOptions(),
    *,
    remote: ModelSpec | None = None,
    splits: list[str] | None = None,
    frames: FramePolicy | None = None,
    exit_threshold: float | None = None,
    parts_dir: str | Path | None = None,
    description: str | None = None,
) -> JobResult:
    """Run one task over the selected images of a dataset, locally or on Ray, through the cache: predictions for a
    classifier, embeddings for an encoder, or any task (evidence, pairs). A `ModelSpec` is built here and, on Ray, on
    every worker; an object runs on Ray only with `remote`, the spec its workers build. `splits` overrides the
    selection's split (calibration reads two); `exit_threshold` is where an early exit may stop a video."""
    store = open_cache(options.cache)
    if isinstance(model, ModelSpec):
        remote = model
    if remote is not None and exit_threshold is not None:  # the workers' early exit stops where the driver's would
        remote = replace(remote, settings={**remote.settings, "exit_threshold": exit_threshold})
    if isinstance(model, ModelSpec):
        task: ImageTask = build_task(remote or model, store, frames)
    elif isinstance(model, SafetyClassifier):
        task = PredictionTask(model, store, frames, exit_threshold=exit_threshold)
    elif isinstance(model, Encoder):
        task = EmbeddingTask(model, store, frames)
    else:
        task = model
    opened = data.open(dataset, splits)
    wanted = splits if splits is not None else ([data.split] if data.split else None)
    selected = select_samples(opened, data.categories, data.sources, wanted, data.limit)
    rows, stats = run_task(
        task,
        selected,
        engine=options.engine,
        remote=remote,
        parts_dir=parts_dir,
        batch_size=options.batch_size or preferred_batch(task),
        workers=options.workers,
        progress=options.progress,
        total=known_total(opened, data.limit, bool(data.categories or data.sources or wanted)),
        description=description or f"{task_verb(task)} {task.name}",
    )
    return JobResult(rows, stats, opened, task, store)


def preferred_batch(task: ImageTask) -> int:
    """Images per model call when the run does not say: the classifier's preference, 32 for an encoder, else 1 (a
    task whose per-image work is itself batched, as an explanation's masked copies are)."""
    if isinstance(task, PredictionTask):
        return preferred_batch_size(task.classifier)
    return 32 if isinstance(task, EmbeddingTask) else 1


def task_verb(task: ImageTask) -> str:
    return "eval" if isinstance(task, PredictionTask) else "embed" if isinstance(task, EmbeddingTask) else "run"
