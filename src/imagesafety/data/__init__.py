"""Datasets: the Sample record, loaders by format (registered in `imagesafety.registry`), named datasets,
`load_dataset(spec)` and `select_samples`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from imagesafety import registry
from imagesafety.data.batch import ReadsInBatches, SampleBatch, batches_of
from imagesafety.data.folder import FolderDataset
from imagesafety.data.huggingface import HuggingFaceDataset
from imagesafety.data.manifest import ManifestDataset
from imagesafety.data.parquet import ParquetDataset
from imagesafety.data.sample import (
    SAFE,
    UNSAFE,
    Dataset,
    ReadPolicy,
    Sample,
    dataset_name,
    image_ref_of,
    relative_root,
)
from imagesafety.taxonomy import slugify

__all__ = [
    "SAFE",
    "UNSAFE",
    "Dataset",
    "Sample",
    "ReadPolicy",
    "FolderDataset",
    "ManifestDataset",
    "ParquetDataset",
    "HuggingFaceDataset",
    "load_dataset",
    "select_samples",
    "NAMED_DATASETS",
    "dataset_name",
    "DuplicateIdError",
]


@dataclass(frozen=True)
class NamedDataset:
    """A well-known dataset reachable by a short name."""

    name: str
    spec: str
    description: str
    requires: str | None = None


NAMED_DATASETS: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        NamedDataset(
            "unsafebench",
            "hf:yiting/UnsafeBench",
            "UnsafeBench: 10,146 real and generated images, 11 categories (gated)",
            "hf",
        ),
        NamedDataset("smid", "hf:yiting/SMID", "UnsafeBench external set SMID (base64 images, label 0/1)", "hf"),
        NamedDataset(
            "nsfw-dataset",
            "hf:yiting/NSFWDataset",
            "UnsafeBench external set NSFWDataset (base64 images, label 0/1)",
            "hf",
        ),
        NamedDataset(
            "vlsu", "vlsu:", "Apple's VLSU: 8K image-text pairs, image-only grades, 15 categories (CC-BY-NC-ND data)"
        ),
        NamedDataset(
            "unsafeconcepts",
            "unsafeconcepts:",
            "UnsafeConcepts: 1.5K unsafe images, 75 concepts (gated, research only)",
            "hf",
        ),
        NamedDataset(
            "safeeditbench",
            "safeeditbench:",
            "SafeEditBench: unsafe images and safe edits as pairs, 5 policies (gated)",
            "hf",
        ),
        NamedDataset(
            "vlguard", "vlguard:", "VLGuard: safe and unsafe images, 4 harmful categories, train/test (gated)", "hf"
        ),
    )
}
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs")


class DuplicateIdError(ValueError):
    """Two rows of a dataset share an id."""


def _format_of(path: Path) -> str:
    """The format a local path is read as."""
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".csv"):
            return "manifest"
        if suffix == ".parquet":
            return "parquet"
        raise ValueError(f"{path}: unknown dataset file type {suffix!r}; use .jsonl, .csv or .parquet")
    if any((path / n).is_dir() for n in ("safe", "unsafe")) or any(
        (p / n).is_dir() for p in path.iterdir() if p.is_dir() for n in ("safe", "unsafe")
    ):
        return "folder"
    if any((path / m).is_file() for m in ("manifest.jsonl", "manifest.csv")):
        return "manifest"
    if any(path.rglob("*.parquet")):
        return "parquet"
    raise ValueError(f"{path}: folder has no safe/ or unsafe/ subfolder, manifest.jsonl/csv, or Parquet files")


def load_dataset(
    spec: str | Path,
    splits: list[str] | None = None,
    streaming: bool = False,
    *,
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
) -> Dataset:
    """Open a dataset from a path, `FORMAT:PATH`, `hf:ID`, or a registered name (see `imagesafety datasets`).

    Relative and absolute image paths of local datasets must stay inside the dataset's folder unless
    `allow_outside_root`; image URLs may resolve to private addresses only for `url_hosts`."""
    text = str(spec)
    if text in NAMED_DATASETS:
        text = NAMED_DATASETS[text].spec
    prefix, sep, rest = text.partition(":")
    formats = registry.entries("dataset")
    path = Path(text).expanduser()
    hosts = tuple(h.lower() for h in url_hosts or ())
    if sep and prefix in formats and not path.exists():
        fmt, location = prefix, rest
    elif "://" in text and text.split("://")[0] in REMOTE_SCHEMES:
        fmt, location = "parquet", text
    elif path.exists():
        fmt, location = _format_of(path), str(path)
        if fmt == "manifest" and path.is_dir():
            location = str(next(path / m for m in ("manifest.jsonl", "manifest.csv") if (path / m).is_file()))
    elif "/" in text and not text.startswith((".", "/")) and text.count("/") == 1:
        fmt, location = "hf", text
    else:
        raise ValueError(
            f"dataset {text!r} not found: give a folder, a .jsonl/.csv/.parquet file, hf:OWNER/NAME, "
            f"or one of {sorted(NAMED_DATASETS)} (see `imagesafety datasets`)"
        )
    local = Path(location)
    root = (
        None if allow_outside_root or not local.exists() else relative_root(local if local.is_dir() else local.parent)
    )
    entry = formats[fmt]
    accepted = entry.options()  # the options a format takes (local files: no splits)
    if streaming and accepted is not None and "streaming" not in accepted:
        raise ValueError(
            f"{text}: a {fmt} dataset cannot be streamed (--streaming applies to Hugging Face datasets, folders, "
            "manifests and Parquet)"
        )
    offered = {"splits": splits, "streaming": streaming, "policy": ReadPolicy(root=root, url_hosts=hosts)}
    return entry.build(location, **{k: v for k, v in offered.items() if accepted is None or k in accepted})


def select_samples(
    samples: Iterable[Sample] | ReadsInBatches,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    splits: list[str] | None = None,
    limit: int | None = None,
) -> Selection:
    """Samples matching the category/source/split filters, at most `limit` of them; two rows with one id are an
    error. Iterate the selection for Samples, or read its `batches()` as columns."""
    return Selection(samples, categories, sources, splits, limit)


class Selection:
    """The selected samples of a source (see `select_samples`), read lazily: each iteration reads the source again."""

    def __init__(
        self,
        source: Iterable[Sample] | ReadsInBatches,
        categories: list[str] | None,
        sources: list[str] | None,
        splits: list[str] | None,
        limit: int | None,
    ):
        self.source = source
        self.categories = {slugify(c) for c in categories} if categories else None
        self.sources = {s.lower() for s in sources} if sources else None
        self.splits = set(splits) if splits else None
        self.limit = limit

    def __iter__(self) -> Iterator[Sample]:
        for batch in self.batches():
            yield from batch.samples()

    def batches(self) -> Iterator[SampleBatch]:
        """The selected rows, a source batch at a time (filtered rows left out)."""
        seen: set[str] = set()
        count = 0
        filtered = self.categories is not None or self.sources is not None or self.splits is not None
        for batch in batches_of(self.source):
            if not filtered and (self.limit is None or count + len(batch) <= self.limit) and self._new_ids(batch, seen):
                count += len(batch)
                yield batch  # the whole batch: no check per row
                continue
            keep: list[int] = []
            for i in self._checked(batch, seen):
                if self.limit is not None and count >= self.limit:
                    if keep:
                        yield batch.take(keep)
                    return
                if self._wanted(batch, i):
                    count += 1
                    keep.append(i)
            if keep:
                yield batch if len(keep) == len(batch) else batch.take(keep)

    @staticmethod
    def _new_ids(batch: SampleBatch, seen: set[str]) -> bool:
        """Whether the batch's ids are distinct and new (then added to `seen`)."""
        ids = set(batch.ids)
        if len(ids) == len(batch) and seen.isdisjoint(ids):
            seen |= ids
            return True
        return False

    def _checked(self, batch: SampleBatch, seen: set[str]) -> Iterator[int]:
        """The batch's rows, each id checked against every id before it (a whole batch at once when its ids are new
        and distinct)."""
        if self._new_ids(batch, seen):
            yield from range(len(batch))
            return
        for i, sample_id in enumerate(batch.ids):
            if sample_id in seen:
                raise DuplicateIdError(
                    f"two rows have the id {sample_id!r}: ids must be unique (the second is "
                    f"{image_ref_of(batch.images[i])})"
                )
            seen.add(sample_id)
            yield i

    def _wanted(self, batch: SampleBatch, i: int) -> bool:
        if self.categories is not None and (batch.categories[i] or "") not in self.categories:
            return False
        if self.sources is not None and (batch.sources[i] or "").lower() not in self.sources:
            return False
        return self.splits is None or batch.splits[i] in self.splits


def dataset_summary(samples: Iterable[Sample]) -> dict[str, list[str]]:
    """The categories, sources and splits present (for messages that say what a filter could have matched)."""
    found: dict[str, set[str]] = {"categories": set(), "sources": set(), "splits": set()}
    for sample in samples:
        for key, value in (("categories", sample.category), ("sources", sample.source), ("splits", sample.split)):
            if value:
                found[key].add(value)
    return {k: sorted(v) for k, v in found.items()}
