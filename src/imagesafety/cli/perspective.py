"""`imagesafety perspective ...`: build a PerspectiveVision training set and LoRA fine-tune a VLM on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from imagesafety.cli.common import console

app = typer.Typer(help="PerspectiveVision-style training data for category-aware VLM guards.", no_args_is_help=True)


@app.command("build-trainset")
def perspective_trainset_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("perspective-trainset"),
    taxonomy: str = "unsafebench",
    train_split: Annotated[
        Optional[str], typer.Option(help="split(s) to build from (default: train; data without splits: every row)")
    ] = None,
    val_split: Annotated[
        Optional[str], typer.Option(help="split written as llava_validation.json (default: validation, if present)")
    ] = None,
    seed: int = 0,
    balance: Annotated[bool, typer.Option("--balance/--no-balance")] = True,
) -> None:
    """Prompts with the image's category plus 1-10 random others, negative sampling, balancing: LLaVA JSON + HF
    dataset."""
    from imagesafety.perspective.trainset import build_trainset

    stats = build_trainset(
        dataset, out, taxonomy, seed=seed, balance=balance, train_split=train_split, val_split=val_split
    )
    console.print(
        Text(
            f"{stats.examples} examples ({stats.unsafe} unsafe, {stats.safe} safe; {stats.negative_samples} negative "
            "samples) "
            f"from {stats.images} images of {stats.splits['train_split']} ({stats.skipped} skipped)"
            + (f"; {stats.validation_examples} validation examples" if stats.validation_examples else "")
            + (f"; not used: {', '.join(stats.splits['not_used'])}" if stats.splits["not_used"] else "")
            + f" -> {out / 'llava_train.json'}"
        )
    )


@app.command("train")
def perspective_train_command(
    trainset: Annotated[Path, typer.Option(help="folder written by build-trainset")],
    base_model: Annotated[str, typer.Option(help="transformers VLM id or folder, e.g. llava-hf/llava-1.5-7b-hf")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("perspective-lora"),
    epochs: int = 1,
    max_steps: Optional[int] = None,
    lr: float = 2e-4,
    accumulation: int = 8,
    lora_r: int = 16,
    device: Optional[str] = None,
) -> None:
    """LoRA fine-tune (peft) of a local VLM on the trainset; evaluate with vlm:hf/BASE --option adapter=OUT."""
    from imagesafety.perspective.train import train_perspective

    card = train_perspective(
        trainset,
        base_model,
        out,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        accumulation=accumulation,
        lora_r=lora_r,
        device=device,
        log=lambda r: console.print(Text(f"step {r['step']}: loss {r['loss']:.4f}")),
    ).card
    from imagesafety.distributed import distributed_context

    if distributed_context()[0] == 0:  # under torchrun, one summary line
        console.print(
            Text(
                f"{card.steps} optimiser steps on {card.examples} examples ({card.world_size} "
                f"process{'es' if card.world_size > 1 else ''}); adapter saved to {out}"
            )
        )
