"""Manifest datasets: a JSONL or CSV file with one row per image (path, label, category, source, ...)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagesafety.data.rows import row_to_sample
from imagesafety.data.sample import ReadPolicy, Sample, relative_root


class ManifestDataset:
    """Rows of a `.jsonl` or `.csv` manifest (UTF-8, with or without a byte-order mark); relative image paths are
    resolved against the manifest's folder and must stay inside it."""

    def __init__(
        self, path: str | Path, name: str | None = None, policy: ReadPolicy | None = None, streaming: bool = False
    ):
        self.path = Path(path)
        self.streaming = streaming
        self.name = name or self.path.stem
        if not self.path.is_file():
            raise ValueError(f"{self.path}: manifest file not found")
        if self.path.suffix.lower() not in (".jsonl", ".csv", ".ndjson"):
            raise ValueError(f"{self.path}: a manifest must be .jsonl or .csv")
        self.base_dir = self.path.parent.resolve()
        self.policy = policy if policy is not None else ReadPolicy(root=relative_root(self.base_dir))

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as fh:
                if self.path.suffix.lower() == ".csv":
                    for line, row in enumerate(csv.DictReader(fh), start=2):
                        yield line, {k.strip(): (v if v != "" else None) for k, v in row.items() if k}
                    return
                for line, text in enumerate(fh, start=1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{self.path}:{line}: not valid JSON ({exc.msg})") from exc
                    if not isinstance(row, dict):
                        raise ValueError(f"{self.path}:{line}: each line must be a JSON object")
                    yield line, row
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def __iter__(self) -> Iterator[Sample]:
        for line, row in self.rows():
            sample = row_to_sample(row, line, str(self.path), base_dir=self.base_dir, policy=self.policy)
            if "id" not in row and "index" not in row:
                sample.id = f"{self.path.name}:{line}"
            yield sample

    def __len__(self) -> int:
        """Rows, by a counting pass; a streamed dataset has no length (nothing is read ahead of the run)."""
        if self.streaming:
            raise TypeError("a streamed dataset has no known length")
        return sum(1 for _ in self.rows())


def from_spec(path: str, *, streaming: bool = False, policy: ReadPolicy | None = None) -> ManifestDataset:
    return ManifestDataset(path, policy=policy, streaming=streaming)
