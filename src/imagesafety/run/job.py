"""What every command that runs the engine shares: which images (`DataSelection`), how to run (`RunOptions`), and the
one path from those to rows (`run_job`). The commands build the records from one set of command-line options each
(`cli/common.py`), so an option added here appears on all of them; `eval`, `embed`, `hysac index`, `hysac eval` and
`hysac calibrate` run through `run_job`, locally or on Ray."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imagesafety import registry
from imagesafety.classifiers.base import SafetyClassifier, preferred_batch_size
from imagesafety.data import Dataset, load_dataset, select_samples
from imagesafety.data.sample import Sample
from imagesafety.encoders.base import Encoder
from imagesafety.media import FramePolicy
from imagesafety.run.engine import EngineOptions, ModelSpec, run_task
from imagesafety.run.runner import RunStats
from imagesafety.run.tasks import EmbeddingTask, PredictionTask
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

    def open(self, dataset: str | Path | Dataset, splits: list[str] | None = None) -> Dataset:
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


def build_model(spec: ModelSpec) -> SafetyClassifier | Encoder:
    """The classifier or encoder a spec names, built here (workers on Ray build their own from the same spec)."""
    if spec.kind == "predict":
        return registry.build("classifier", spec.spec, **spec.options)
    from imagesafety.encoders import load_encoder

    return load_encoder(spec.spec, **spec.options)


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
    task: PredictionTask | EmbeddingTask
    store: PredictionCache | None


def run_job(
    model: ModelSpec | SafetyClassifier | Encoder,
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
    """Run one model over the selected images of a dataset, locally or on Ray: predictions for a classifier,
    embeddings for an encoder, through the cache. A `ModelSpec` is built here and, on Ray, on every worker; a model
    object runs on Ray only with `remote`, the spec its workers build. `splits` overrides the selection's split
    (calibration reads two); `exit_threshold` is where an early exit may stop a video."""
    if isinstance(model, ModelSpec):
        remote, model = model, build_model(model)
    opened = data.open(dataset, splits)
    wanted = splits if splits is not None else ([data.split] if data.split else None)
    selected = select_samples(opened, data.categories, data.sources, wanted, data.limit)
    store = open_cache(options.cache)
    if isinstance(model, SafetyClassifier):
        task: PredictionTask | EmbeddingTask = PredictionTask(model, store, frames, exit_threshold=exit_threshold)
        batch_size, verb = options.batch_size or preferred_batch_size(model), "eval"
    else:
        task = EmbeddingTask(model, store, frames)
        batch_size, verb = options.batch_size or 32, "embed"
    rows, stats = run_task(
        task,
        selected,
        engine=options.engine,
        remote=remote,
        parts_dir=parts_dir,
        batch_size=batch_size,
        workers=options.workers,
        progress=options.progress,
        total=known_total(opened, data.limit, bool(data.categories or data.sources or wanted)),
        description=description or f"{verb} {task.name}",
    )
    return JobResult(rows, stats, opened, task, store)
