"""`imagesafety guard ...`: train guard heads on embeddings and measure their label efficiency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from imagesafety.cli.common import console, split_list

app = typer.Typer(
    help="Train small guard heads on embeddings, and measure how many labels they need.", no_args_is_help=True
)

TrainSplit = Annotated[
    Optional[str], typer.Option(help="split(s) to train on (default: train; data without splits: every row)")
]
ValSplit = Annotated[
    Optional[str], typer.Option(help="split to validate on (default: validation, else a seeded fraction of train)")
]


@app.command("train")
def guard_train_command(
    embeddings: Annotated[Path, typer.Option("--embeddings", "-e", help="file written by `imagesafety embed`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for guard.safetensors + guard.json")] = Path("guard"),
    head: Annotated[str, typer.Option(help="linear or mlp")] = "linear",
    target: Annotated[
        str, typer.Option(help="binary (overall) or multilabel (overall + one head per category)")
    ] = "binary",
    pairs: Annotated[Optional[Path], typer.Option(help="embeddings of counterfactual pairs to add to training")] = None,
    pair_weight: Annotated[
        float, typer.Option(min=0.0, help="weight of the pair-consistency loss (0: pairs only as extra data)")
    ] = 0.0,
    solver: Annotated[
        str, typer.Option(help="auto (L-BFGS for a linear head without the pair loss, else AdamW), lbfgs or adamw")
    ] = "auto",
    calibrate: Annotated[str, typer.Option(help="threshold rule per output: f1, fpr:0.05, none")] = "f1",
    taxonomy: Annotated[
        Optional[str], typer.Option(help="unsafebench, llavaguard or a YAML file; checks the data's categories")
    ] = None,
    train_split: TrainSplit = None,
    val_split: ValSplit = None,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.95, help="validation share of train when the data has no validation split")
    ] = 0.2,
    epochs: Annotated[int, typer.Option(min=1)] = 300,
    hidden: Annotated[int, typer.Option(min=1)] = 256,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-2,
    seed: int = 0,
) -> None:
    """Train a guard head; `--classifier probe:OUT` then uses it in eval and serve."""
    from imagesafety.guard import GuardConfig, train_guard

    config = GuardConfig(
        head=head,
        target=target,
        pair_weight=pair_weight,
        solver=solver,
        calibrate=calibrate,
        val_fraction=val_fraction,
        train_split=train_split,
        val_split=val_split,
        epochs=epochs,
        hidden=hidden,
        lr=lr,
        seed=seed,
    )
    result = train_guard(embeddings, out, pairs=pairs, taxonomy=taxonomy, config=config)
    card = result.card
    table = Table(
        title=Text(f"guard {card.name} ({card.head}, {card.embed_dim}-d, {card.training['epochs_run']} epochs)")
    )
    for column in ("output", "threshold", "val F1", "val AUROC", "val FPR", "n"):
        table.add_column(column)
    val = card.metrics.get("validation", {})
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for name in card.outputs:
        m = val.get(name, {})
        table.add_row(
            name,
            f"{card.thresholds[name]:.3f}",
            fmt(m.get("f1")),
            fmt(m.get("auroc")),
            fmt(m.get("fpr")),
            str(m.get("support", 0)),
        )
    console.print(table)
    splits = card.training["splits"]
    console.print(
        Text(
            f"trained on {splits['rows']['train']} rows ({splits['train_split']}), validated on "
            f"{splits['rows']['validation']} "
            f"({splits['validation_split']})"
            + (f"; not used: {', '.join(splits['not_used'])}" if splits["not_used"] else "")
        )
    )
    console.print(
        Text(
            f"saved to {result.path}; evaluate with: imagesafety eval --classifier probe:{result.path} --dataset ... "
            "--split test"
        )
    )


@app.command("efficiency")
def guard_efficiency_command(
    embeddings: Annotated[Path, typer.Option("--embeddings", "-e")],
    pairs: Annotated[Optional[Path], typer.Option(help="embeddings of counterfactual pairs")] = None,
    sizes: Annotated[str, typer.Option(help="comma-separated numbers of labelled training images")] = "16,32,64,128",
    seeds: Annotated[int, typer.Option(min=1)] = 5,
    head: str = "linear",
    epochs: Annotated[int, typer.Option(min=1)] = 200,
    train_split: TrainSplit = None,
    eval_split: Annotated[
        str, typer.Option(help="split the guards are scored on (absent: a fixed 30% hold-out of train)")
    ] = "test",
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/efficiency"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """F1 against the number of labelled images, with and without pairs (table, CSV and HTML plot)."""
    from imagesafety.guard import GuardConfig
    from imagesafety.guard.efficiency import sample_efficiency, summarise, write_efficiency_report

    try:
        size_list = [int(s) for s in split_list(sizes) or []]
    except ValueError:
        raise ValueError(f"--sizes takes whole numbers such as 16,32,64, got {sizes!r}") from None
    runs = sample_efficiency(
        embeddings,
        pairs,
        size_list,
        seeds,
        config=GuardConfig(head=head, epochs=epochs, train_split=train_split),
        progress=not quiet,
        eval_split=eval_split,
    )
    files = write_efficiency_report(runs, out)
    table = Table(title="sample efficiency (F1 on held-out images, mean ± sd over seeds)")
    for column in ("labelled images", "pairs", "F1", "AUROC"):
        table.add_column(column, justify="right")
    for r in summarise(runs).itertuples():
        table.add_row(
            str(r.size),
            "yes" if r.with_pairs else "no",
            f"{r.f1_mean:.3f} ± {0 if r.f1_std != r.f1_std else r.f1_std:.3f}",
            f"{r.auroc_mean:.3f}",
        )
    console.print(table)
    console.print(Text(f"report: {files['html']}"))
