"""Datasets: the Sample record, loaders by format, named datasets, and `load_dataset(spec)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from imagesafety.data.folder import FolderDataset
from imagesafety.data.huggingface import HuggingFaceDataset
from imagesafety.data.manifest import ManifestDataset
from imagesafety.data.parquet import ParquetDataset
from imagesafety.data.sample import SAFE, UNSAFE, Dataset, Sample
from imagesafety.taxonomy import slugify

__all__ = [
    "SAFE", "UNSAFE", "Dataset", "Sample", "FolderDataset", "ManifestDataset", "ParquetDataset",
    "HuggingFaceDataset", "load_dataset", "select_samples", "DATASET_FORMATS", "NAMED_DATASETS",
]


@dataclass(frozen=True)
class DatasetFormat:
    """A way of reading a dataset from a spec; `requires` names the extra it needs, if any."""

    name: str
    description: str
    open: Callable[..., Dataset]
    requires: str | None = None


@dataclass(frozen=True)
class NamedDataset:
    """A well-known dataset reachable by a short name."""

    name: str
    spec: str
    description: str
    requires: str | None = None


DATASET_FORMATS: dict[str, DatasetFormat] = {
    f.name: f
    for f in (
        DatasetFormat("folder", "ROOT/safe/..., ROOT/unsafe/... with optional category/source subfolders", lambda p, **kw: FolderDataset(p)),
        DatasetFormat("manifest", "a .jsonl or .csv file: path, label, category, source[, split, id]", lambda p, **kw: ManifestDataset(p)),
        DatasetFormat("parquet", "Parquet with an image column (bytes, {bytes,path} or base64); local, s3://, gs://", lambda p, **kw: ParquetDataset(p)),
        DatasetFormat(
            "hf",
            "a Hugging Face dataset id (or local folder of its data files): hf:ID[:CONFIG]",
            lambda p, splits=None, streaming=False, **kw: _open_hf(p, splits, streaming),
            requires="hf",
        ),
    )
}

NAMED_DATASETS: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        NamedDataset("unsafebench", "hf:yiting/UnsafeBench", "UnsafeBench: 10,146 real and generated images, 11 categories (gated)", "hf"),
        NamedDataset("smid", "hf:yiting/SMID", "UnsafeBench external set SMID (base64 images, label 0/1)", "hf"),
        NamedDataset("nsfw-dataset", "hf:yiting/NSFWDataset", "UnsafeBench external set NSFWDataset (base64 images, label 0/1)", "hf"),
    )
}


def _open_hf(path: str, splits: list[str] | None, streaming: bool) -> HuggingFaceDataset:
    ident, _, config = path.partition(":")
    return HuggingFaceDataset(ident, config or None, splits=splits, streaming=streaming)


def _plugin_formats() -> dict[str, DatasetFormat]:
    found = {}
    for ep in entry_points(group="imagesafety.datasets"):
        found[ep.name] = DatasetFormat(ep.name, f"plug-in from {ep.value}", ep.load())
    return found


def load_dataset(spec: str | Path, splits: list[str] | None = None, streaming: bool = False) -> Dataset:
    """Open a dataset from a path, `FORMAT:PATH`, `hf:ID`, or a registered name (see `imagesafety datasets`)."""
    text = str(spec)
    if text in NAMED_DATASETS:
        text = NAMED_DATASETS[text].spec
    formats = {**DATASET_FORMATS, **_plugin_formats()}
    prefix, sep, rest = text.partition(":")
    if sep and prefix in formats and not Path(text).exists():
        return formats[prefix].open(rest, splits=splits, streaming=streaming)
    if "://" in text and text.split("://")[0] in ("s3", "gs", "gcs", "hdfs", "abfs"):
        return ParquetDataset(text)
    path = Path(text)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".csv"):
            return ManifestDataset(path)
        if suffix == ".parquet":
            return ParquetDataset(path)
        raise ValueError(f"{path}: unknown dataset file type {suffix!r}; use .jsonl, .csv or .parquet")
    if path.is_dir():
        if any((path / n).is_dir() for n in ("safe", "unsafe")) or any(
            (p / n).is_dir() for p in path.iterdir() if p.is_dir() for n in ("safe", "unsafe")
        ):
            return FolderDataset(path)
        for manifest in ("manifest.jsonl", "manifest.csv"):
            if (path / manifest).is_file():
                return ManifestDataset(path / manifest)
        if any(path.rglob("*.parquet")):
            return ParquetDataset(path)
        raise ValueError(f"{path}: folder has no safe/ or unsafe/ subfolder, manifest.jsonl/csv, or Parquet files")
    if "/" in text and not text.startswith((".", "/")) and text.count("/") == 1:
        return _open_hf(text, splits, streaming)
    raise ValueError(
        f"dataset {text!r} not found: give a folder, a .jsonl/.csv/.parquet file, hf:OWNER/NAME, "
        f"or one of {sorted(NAMED_DATASETS)} (see `imagesafety datasets`)"
    )


def select_samples(
    samples: Iterable[Sample],
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    splits: list[str] | None = None,
    limit: int | None = None,
) -> Iterator[Sample]:
    """Samples matching the category/source/split filters, at most `limit` of them."""
    wanted_categories = {slugify(c) for c in categories} if categories else None
    wanted_sources = {s.lower() for s in sources} if sources else None
    wanted_splits = set(splits) if splits else None
    count = 0
    for sample in samples:
        if limit is not None and count >= limit:
            return
        if wanted_categories is not None and (sample.category or "") not in wanted_categories:
            continue
        if wanted_sources is not None and (sample.source or "").lower() not in wanted_sources:
            continue
        if wanted_splits is not None and sample.split not in wanted_splits:
            continue
        count += 1
        yield sample
