"""Consecutive samples as columns (`SampleBatch`): what a loader that reads in bulk (Parquet) hands the engine, so a run
whose rows come from the cache never builds a Sample per row; `sample(i)` builds one for a row that needs its image."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from imagesafety.data.sample import ReadPolicy, Sample, image_ref_of

#: samples gathered into one batch when a source yields them one by one
BATCH_ROWS = 1024
SAMPLE_FIELDS = len(fields(Sample))


@dataclass
class SampleBatch:
    """Rows of samples, a list per field of `Sample` (in its order); `rows` keeps the Sample objects a batch was
    made of, if any (handed back as they are)."""

    ids: list[str]
    images: list[str | Path | bytes]
    labels: list[int | None]
    categories: list[str | None]
    sources: list[str | None]
    splits: list[str | None]
    pair_ids: list[str | None]
    roles: list[str | None]
    metadata: list[dict[str, Any]]
    policies: list[ReadPolicy]
    problems: list[str | None]
    positions: list[int | None]
    rows: list[Sample] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def columns(self) -> list[list]:
        """The field lists, in `Sample`'s order."""
        return [
            self.ids,
            self.images,
            self.labels,
            self.categories,
            self.sources,
            self.splits,
            self.pair_ids,
            self.roles,
            self.metadata,
            self.policies,
            self.problems,
            self.positions,
        ]

    def sample(self, i: int) -> Sample:
        if self.rows is not None:
            return self.rows[i]
        return Sample(
            self.ids[i],
            self.images[i],
            self.labels[i],
            self.categories[i],
            self.sources[i],
            self.splits[i],
            self.pair_ids[i],
            self.roles[i],
            self.metadata[i],
            self.policies[i],
            self.problems[i],
            self.positions[i],
        )

    def samples(self) -> list[Sample]:
        return self.rows if self.rows is not None else list(map(Sample, *self.columns()))

    def image_refs(self) -> list[str]:
        """Each row's printable image reference (`Sample.image_ref`)."""
        return ["<bytes>" if type(image) is bytes else image_ref_of(image) for image in self.images]

    def take(self, rows: list[int]) -> SampleBatch:
        """The batch of the given rows, in that order."""
        taken = [[column[i] for i in rows] for column in self.columns()]
        return SampleBatch(*taken, rows=[self.rows[i] for i in rows] if self.rows is not None else None)

    @classmethod
    def of(cls, samples: list[Sample]) -> SampleBatch:
        """A batch of Sample objects (kept: `samples()` hands them back)."""
        columns = [[getattr(s, f.name) for s in samples] for f in fields(Sample)]
        return cls(*columns, rows=list(samples))

    @classmethod
    def joined(cls, batches: list[SampleBatch]) -> SampleBatch:
        """One batch of several, in order."""
        if len(batches) == 1:
            return batches[0]
        columns = [sum((b.columns()[k] for b in batches), []) for k in range(SAMPLE_FIELDS)]
        rows = None if any(b.rows is None for b in batches) else [s for b in batches for s in b.samples()]
        return cls(*columns, rows=rows)


@runtime_checkable
class ReadsInBatches(Protocol):
    """A source that reads samples in bulk, as columns."""

    def batches(self) -> Iterator[SampleBatch]: ...


def batches_of(source: Iterable[Sample] | ReadsInBatches) -> Iterator[SampleBatch]:
    """The source's batches: its own, or its samples gathered `BATCH_ROWS` at a time."""
    if isinstance(source, ReadsInBatches):
        yield from source.batches()
        return
    it = iter(source)
    while chunk := list(islice(it, BATCH_ROWS)):
        yield SampleBatch.of(chunk)


def rebatched(batches: Iterable[SampleBatch], size: int) -> Iterator[SampleBatch]:
    """The same rows in batches of exactly `size` (the last may be shorter)."""
    waiting: list[SampleBatch] = []
    count = 0
    for batch in batches:
        start = 0
        while start < len(batch):
            part = batch if start == 0 and len(batch) <= size - count else _slice(batch, start, start + size - count)
            waiting.append(part)
            count += len(part)
            start += len(part)
            if count == size:
                yield SampleBatch.joined(waiting)
                waiting, count = [], 0
    if waiting:
        yield SampleBatch.joined(waiting)


def _slice(batch: SampleBatch, start: int, stop: int) -> SampleBatch:
    return SampleBatch(
        *(column[start:stop] for column in batch.columns()),
        rows=batch.rows[start:stop] if batch.rows is not None else None,
    )
