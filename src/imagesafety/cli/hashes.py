"""`imagesafety hashes ...`: perceptual hashes and banks of known images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from imagesafety.cli.common import console, fail

app = typer.Typer(help="Perceptual hashes (PDQ, pHash) and banks of known images.", no_args_is_help=True)

ImagesOpt = Annotated[str, typer.Option("--images", "-i", help="a folder of images or a dataset")]
AlgorithmOpt = Annotated[str, typer.Option("--algorithm", help="pdq (Meta's, 256 bits), phash (64 bits) or both")]


def said(report) -> None:
    line = f"{report.added} entries added ({len(report.bank)} in the bank)"
    if report.unhashable:
        first = next(iter(report.unhashable.items()))
        line += f"; {len(report.unhashable)} not added as unhashable or unreadable (e.g. {first[0]}: {first[1]})"
    console.print(Text(line))


@app.command("compute")
def compute_command(
    images: ImagesOpt,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("hashes.csv"),
    algorithm: AlgorithmOpt = "pdq",
) -> None:
    """One row per image: path, algorithm, hash (hex), quality."""
    from imagesafety.hashes import compute_hashes

    table = compute_hashes(images, out, algorithm)
    console.print(Text(f"{table['hash'].notna().sum()} hashes ({table['error'].notna().sum()} unreadable) -> {out}"))


@app.command("build")
def build_command(
    images: ImagesOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="bank folder")],
    algorithm: AlgorithmOpt = "pdq",
    threshold: Annotated[
        Optional[int], typer.Option(min=0, help="Hamming distance that matches (default: PDQ 31, pHash 8)")
    ] = None,
    label: Annotated[Optional[str], typer.Option(help="label of every entry (default: each image's category)")] = None,
    source: Annotated[Optional[str], typer.Option(help="free-form source of every entry (default: the file)")] = None,
    index: Annotated[str, typer.Option(help="flat (exact), hnsw or ivf")] = "flat",
) -> None:
    """A bank of the images' hashes, labels and sources (never the images)."""
    from imagesafety.hashes import build

    said(build(images, out, algorithm=algorithm, threshold=threshold, label=label, source=source, index=index))


@app.command("add")
def add_command(
    bank: Annotated[Path, typer.Option("--bank", "-b")],
    images: ImagesOpt,
    label: Annotated[Optional[str], typer.Option()] = None,
    source: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Add images to a bank."""
    from imagesafety.hashes import add

    said(add(bank, images, label, source))


@app.command("remove")
def remove_command(bank: Annotated[Path, typer.Option("--bank", "-b")], images: ImagesOpt) -> None:
    """Remove the entries of these images (matched by their bytes' sha256)."""
    from imagesafety.hashes import remove

    console.print(Text(f"{remove(bank, images)} entries removed"))


@app.command("match")
def match_command(
    bank: Annotated[Path, typer.Option("--bank", "-b")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("matches.parquet"),
    dihedral: Annotated[bool, typer.Option("--dihedral", help="also match rotations and flips (PDQ)")] = False,
) -> None:
    """Match every image of a dataset against a bank."""
    from imagesafety.hashes import match

    table = match(bank, dataset, out, dihedral=dihedral)
    if table.empty:
        fail(f"{dataset}: no images")
    console.print(
        Text(
            f"{int(table['matched'].sum())} of {len(table)} images match ({int(table['unhashable'].sum())} unhashable, "
            f"{int(table['error'].notna().sum())} unreadable) -> {out}"
        )
    )
