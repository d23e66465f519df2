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

    def __init__(
        self, root: str | Path, name: str | None = None, policy: ReadPolicy | None = None, streaming: bool = False
    ):
        self.root = Path(root)
        self.streaming = streaming
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
            for path in files_below(base):
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
        """Files, by a listing pass; a streamed dataset has no length (nothing is listed ahead of the run)."""
        if self.streaming:
            raise TypeError("a streamed dataset has no known length")
        return sum(1 for _ in self)


def files_below(base: Path) -> Iterator[Path]:
    """Every non-hidden entry below `base` that is not a folder (files, broken links), in sorted path order, listing one
    folder at a time (linked folders are not entered), so a folder of millions of images is never held as a list."""
    with os.scandir(base) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from files_below(Path(entry.path))
        elif not entry.name.startswith(".") and not entry.is_dir():
            yield Path(entry.path)


def from_spec(path: str, *, streaming: bool = False, policy: ReadPolicy | None = None) -> FolderDataset:
    return FolderDataset(path, policy=policy, streaming=streaming)
