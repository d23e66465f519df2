"""What the `hashes` commands do: hash images, build and edit banks, and match a dataset against a bank."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from imagesafety.data.sample import ReadPolicy, Sample
from imagesafety.hashes.bank import BankError, HashBank, Match, load_bank
from imagesafety.hashes.compute import ALGORITHMS, MIN_QUALITY, ImageHash, compute, pdq_dihedral
from imagesafety.taxonomy import slugify


def algorithms_of(choice: str) -> tuple[str, ...]:
    if choice == "both":
        return ALGORITHMS
    if choice not in ALGORITHMS:
        raise ValueError(f"unknown hash algorithm {choice!r}; use pdq, phash or both")
    return (choice,)


def image_samples(images: str | Path) -> list[Sample]:
    """A dataset's samples, or every file of a plain folder (no safe/ unsafe/ layout needed; a file's first folder below
    the root names its category, e.g. `known/sexual/a.png`)."""
    from imagesafety.data import load_dataset

    path = Path(images)
    if (
        path.is_dir()
        and not any((path / d).is_dir() for d in ("safe", "unsafe"))
        and not any((p / d).is_dir() for p in path.iterdir() if p.is_dir() for d in ("safe", "unsafe"))
    ):
        policy = ReadPolicy(root=path.resolve())
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        return [
            Sample(
                str(p.relative_to(path)),
                str(p),
                category=slugify(p.relative_to(path).parts[0]) if len(p.relative_to(path).parts) > 1 else None,
                policy=policy,
            )
            for p in files
        ]
    return list(load_dataset(images))


def hashed(
    samples: list[Sample], algorithms: tuple[str, ...], dihedral: bool = False
) -> Iterator[tuple[Sample, str | None, dict[str, list[ImageHash]] | None, str | None]]:
    """(sample, sha256, hashes per algorithm (eight PDQ variants with `dihedral`), error) for every sample, decoded on
    the
    run's worker threads and hashed there too."""
    from imagesafety.data.decoding import decoded_samples

    def prepare(image: Image.Image) -> dict[str, list[ImageHash]]:
        return {a: (pdq_dihedral(image) if dihedral and a == "pdq" else [compute(image, a)]) for a in algorithms}

    for item in decoded_samples(samples, prepare=prepare):
        yield item.sample, item.sha256, item.image if item.error is None else None, item.error


def compute_hashes(images: str | Path, out: str | Path | None = None, algorithm: str = "pdq") -> pd.DataFrame:
    """One row per image and algorithm: path, algorithm, hash (hex), quality, reliable, error."""
    rows = []
    for sample, _, hashes, error in hashed(image_samples(images), algorithms_of(algorithm)):
        for a in algorithms_of(algorithm):
            h = hashes[a][0] if hashes else None
            rows.append(
                {
                    "path": sample.image_ref,
                    "id": sample.id,
                    "algorithm": a,
                    "hash": h.hex if h else None,
                    "quality": h.quality if h else None,
                    "reliable": h.reliable if h else None,
                    "error": error,
                }
            )
    table = pd.DataFrame(rows, columns=["path", "id", "algorithm", "hash", "quality", "reliable", "error"])
    if out is not None:
        table.to_csv(out, index=False)
    return table


@dataclass
class BankReport:
    """What building or editing a bank did."""

    bank: HashBank
    added: int = 0
    unhashable: dict[str, str] = field(default_factory=dict)  # id -> why (low quality, unreadable)


def add_images(bank: HashBank, images: str | Path, label: str | None = None, source: str | None = None) -> BankReport:
    """Hash `images` into `bank`: each entry's label is `label` or the sample's category (else its unsafe/safe label);
    images too flat or small for a reliable hash, and unreadable ones, are reported, not added."""
    report, rows = BankReport(bank), []
    for sample, sha, hashes, error in hashed(image_samples(images), bank.algorithms):
        if error is not None:
            report.unhashable[sample.id] = error
            continue
        weak = [a for a in bank.algorithms if hashes[a][0].quality < MIN_QUALITY[a]]
        if weak:
            report.unhashable[sample.id] = (
                f"{weak[0]} quality {hashes[weak[0]][0].quality} < {MIN_QUALITY[weak[0]]}: too flat or small to match "
                "on"
            )
            continue
        entry_label = label or sample.category or {1: "unsafe", 0: None, None: None}[sample.label]
        if entry_label is None:
            raise BankError(
                f"{sample.image_ref}: a bank entry needs a label: put the image in a folder named after its category, "
                "or give --label"
            )
        rows.append((sha, entry_label, source or sample.image_ref, {a: hashes[a][0] for a in bank.algorithms}))
    bank.add(rows)
    report.added = len(rows)
    return report


def build(
    images: str | Path,
    out: str | Path,
    *,
    algorithm: str = "pdq",
    threshold: int | None = None,
    label: str | None = None,
    source: str | None = None,
    index: str = "flat",
) -> BankReport:
    """A new bank at `out` from `images` (a folder or dataset)."""
    algorithms = algorithms_of(algorithm)
    bank = HashBank.empty(algorithms, {a: threshold for a in algorithms} if threshold is not None else None, index)
    report = add_images(bank, images, label, source)
    if not report.added:
        raise ValueError(
            f"{images}: no image could be hashed reliably ({len(report.unhashable)} unhashable); nothing to bank"
        )
    bank.save(out)
    return report


def add(bank_path: str | Path, images: str | Path, label: str | None = None, source: str | None = None) -> BankReport:
    bank = load_bank(bank_path)
    report = add_images(bank, images, label, source)
    bank.save(bank_path)
    return report


def remove(bank_path: str | Path, images: str | Path) -> int:
    """Remove the entries of these images (by content: the sha256 of their bytes)."""
    from imagesafety.data.decoding import Prepared, read_sample

    bank = load_bank(bank_path)
    shas = {read_sample(Prepared(s)).sha256 for s in image_samples(images)} - {None}
    removed = bank.remove(shas)
    bank.save(bank_path)
    return removed


def match(
    bank: HashBank | str | Path, dataset: str | Path, out: str | Path | None = None, *, dihedral: bool = False
) -> pd.DataFrame:
    """One row per image: id, path, matched, entry id, label, source, distance, algorithm, quality, unhashable,
    error."""
    bank = bank if isinstance(bank, HashBank) else load_bank(bank)
    rows = []
    for sample, sha, hashes, error in hashed(image_samples(dataset), bank.algorithms, dihedral):
        found: Match | None = bank.match(hashes) if hashes else None
        quality = min(hashes[a][0].quality for a in bank.algorithms) if hashes else None
        unhashable = bool(hashes) and all(h.quality < MIN_QUALITY[a] for a in bank.algorithms for h in hashes[a])
        rows.append(
            {
                "id": sample.id,
                "path": sample.image_ref,
                "sha256": sha,
                "matched": found is not None,
                "entry": found.id if found else None,
                "label": found.label if found else None,
                "source": found.source if found else None,
                "distance": found.distance if found else None,
                "algorithm": found.algorithm if found else None,
                "quality": quality,
                "unhashable": unhashable,
                "error": error,
            }
        )
    table = pd.DataFrame(rows)
    if out is not None:
        table.to_parquet(out, index=False)
    return table
