"""Folder datasets: `ROOT/safe/...` and `ROOT/unsafe/...`, with optional category and source subfolders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from imagesafety.data.sample import SAFE, UNSAFE, ReadPolicy, Sample, normalise_source, relative_root
from imagesafety.taxonomy import slugify

SPLIT_NAMES = {"train", "test", "val", "validation", "dev", "calibration"}
SOURCE_NAMES = {"real", "generated", "laion5b", "lexica"}


class FolderDataset:
    """Images under `safe/` and `unsafe/` (optionally below a split folder such as `train/`).

    Below `safe/` or `unsafe/`, a folder named real/generated sets the source and any other
    folder names the category: `unsafe/sexual/generated/001.png`.
    Files with other suffixes are included too, so broken or mislabelled files show up as error rows;
    so are file names that are not valid UTF-8 (named with their undecodable bytes replaced).
    """

    def __init__(self, root: str | Path, name: str | None = None, policy: ReadPolicy | None = None):
        self.root = Path(root)
        self.name = name or self.root.resolve().name
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a folder")
        self.policy = policy if policy is not None else ReadPolicy(root=relative_root(self.root))
        if not self.label_roots():
            raise ValueError(
                f"{self.root}: no 'safe/' or 'unsafe/' folder found (also looked one level down for split folders)"
            )

    def label_roots(self) -> list[tuple[str | None, int, Path]]:
        roots = []
        for split_dir in [
            None,
            *sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES),
        ]:
            base = self.root if split_dir is None else split_dir
            for name, label in (("safe", SAFE), ("unsafe", UNSAFE)):
                if (base / name).is_dir():
                    roots.append((None if split_dir is None else split_dir.name.lower(), label, base / name))
        return roots

    def __iter__(self) -> Iterator[Sample]:
        for split, label, base in self.label_roots():
            for path in sorted(
                p for p in base.rglob("*") if not p.name.startswith(".") and (p.is_file() or not p.is_dir())
            ):
                category = source = None
                for part in path.relative_to(base).parts[:-1]:
                    if part.lower() in SOURCE_NAMES:
                        source = normalise_source(part)
                    elif category is None:
                        category = slugify(part)
                rel = path.relative_to(self.root).as_posix()
                problem = None
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    rel = os.fsencode(rel).decode("utf-8", errors="replace")
                    problem = "the file name is not valid UTF-8; rename the file"
                yield Sample(
                    id=rel,
                    image=str(path) if problem is None else rel,
                    label=label,
                    category=category,
                    source=source,
                    split=split,
                    policy=self.policy,
                    problem=problem,
                )

    def __len__(self) -> int:
        return sum(1 for _ in self)


def from_spec(path: str, *, policy: ReadPolicy | None = None) -> FolderDataset:
    return FolderDataset(path, policy=policy)
