"""Two records every command that runs the engine shares: which images (`DataSelection`) and how to run
(`RunOptions`). `eval`, `robustness` and `embed` build them from one set of command-line options each
(`cli/common.py`), so an option added here appears on all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagesafety.data import Dataset, load_dataset
from imagesafety.run.engine import EngineOptions
from imagesafety.store import USE_DEFAULT_CACHE


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
