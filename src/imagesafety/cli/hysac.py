"""`imagesafety hysac ...`: train, calibrate, index, search (with safe redirection) and evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from imagesafety.cli.common import console, data_options, engine_options, err_console

app = typer.Typer(
    help="Hyperbolic safety-aware CLIP (HySAC): train, classify, retrieve with safe redirection.", no_args_is_help=True
)


TrainSplit = Annotated[
    Optional[str], typer.Option(help="split(s) to train on (default: train; data without splits: every row)")
]
ValSplit = Annotated[
    Optional[str], typer.Option(help="split to validate on (default: validation, else a seeded fraction of train)")
]


@app.command("train")
def train_command(
    data: Annotated[
        Path,
        typer.Option(
            help="quadruples: .jsonl/.csv/.parquet with safe_text (or safe), unsafe_text (or nsfw), safe_image, "
            "unsafe_image"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("hysac-model"),
    mode: Annotated[
        str, typer.Option(help="light: heads on frozen embeddings (CPU); lora: LoRA on both CLIP towers (GPU)")
    ] = "light",
    encoder: Annotated[str, typer.Option(help="light mode: encoder of the cached embeddings")] = "ViT-L-14/openai",
    backbone: Annotated[
        str, typer.Option(help="lora mode: transformers CLIP id or folder")
    ] = "openai/clip-vit-large-patch14",
    train_split: TrainSplit = None,
    val_split: ValSplit = None,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.95, help="validation share of train when there is no validation split")
    ] = 0.1,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    lr: Annotated[
        Optional[float], typer.Option(min=0.0, help="default 1e-3 (light) or 1e-4 (lora, as in the paper)")
    ] = None,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.2,
    entail_weight: Annotated[
        float,
        typer.Option(min=0.0, help="weight of the entailment terms (authors: 1.0; this toolkit's first release: 0.2)"),
    ] = 1.0,
    clamp: Annotated[
        str,
        typer.Option(
            help="authors (clamp curvature, alphas, logit scale before each forward pass) or v1 (after each step)"
        ),
    ] = "authors",
    patience: Annotated[int, typer.Option(min=1)] = 5,
    device: str = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume/--restart", help="continue from OUT/checkpoint.pt if present")
    ] = True,
) -> None:
    """Train HySAC on (safe text, safe image, unsafe text, unsafe image) quadruples."""
    from imagesafety.hyperbolic.losses import LossWeights
    from imagesafety.hysac.api import order_line, train_hysac
    from imagesafety.hysac.train import HysacTrainConfig
    from imagesafety.store import open_cache

    config = HysacTrainConfig(
        mode=mode,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr or (1e-3 if mode == "light" else 1e-4),
        weight_decay=weight_decay,
        patience=patience,
        train_split=train_split,
        val_split=val_split,
        val_fraction=val_fraction,
        clamp=clamp,
        weights=LossWeights.with_entailment(entail_weight),
    )

    def log(r):
        console.print(
            Text(
                f"epoch {r['epoch']}: train {r['train_loss']:.4f}"
                + (f" · val {r['val_loss']:.4f}" if "val_loss" in r else "")
                + f" · curvature {r['curvature']:.3f}"
            )
        )

    card = train_hysac(
        data,
        out,
        mode=mode,
        encoder=encoder,
        backbone=backbone,
        config=config,
        cache=open_cache("default"),
        device=device,
        resume=resume,
        log=log,
    ).card
    splits, order = card.training["splits"], card.order or {}
    console.print(Text(order_line(order), style=None if order.get("holds") else "yellow"))
    console.print(
        Text(
            f"trained on {splits['rows']['train']} quadruples ({splits['train_split']}), validated on "
            f"{splits['rows']['validation']} "
            f"({splits['validation_split']}); image threshold {card.threshold:.4f}; saved to {out}; "
            f"classify with --classifier hysac:{out}"
        )
    )


@app.command("calibrate")
@engine_options
def calibrate_command(
    model: Annotated[Path, typer.Option()],
    dataset: Annotated[str, typer.Option()],
    val_split: ValSplit = None,
    train_split: TrainSplit = None,
    val_fraction: Annotated[
        float, typer.Option(min=0.01, max=0.95, help="share of train used when there is no validation split")
    ] = 0.2,
    device: str = "cpu",
    run: Any = None,
) -> None:
    """Set the classification threshold (overall and per category) on a labelled image set's validation rows."""
    from imagesafety.hysac.api import calibrate_hysac

    card = calibrate_hysac(
        model,
        dataset,
        val_split=val_split,
        train_split=train_split,
        val_fraction=val_fraction,
        device=device,
        options=run,
    )
    console.print(
        Text(f"threshold {card.threshold:.4f} ({card.threshold_rule}); per category: {card.category_thresholds}")
    )


@app.command("index")
@data_options
@engine_options
def index_command(
    model: Annotated[Path, typer.Option()],
    gallery: Annotated[str, typer.Option(help="image dataset (labels, if any, mark unsafe results)")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("hysac-index"),
    kind: Annotated[str, typer.Option(help="exact (default), hnsw or ivf")] = "exact",
    device: str = "cpu",
    selection: Any = None,
    run: Any = None,
) -> None:
    """Embed a gallery with a HySAC model and build a Lorentz-distance FAISS index."""
    from imagesafety.hysac.retrieval import build_index

    summary = build_index(model, gallery, out, kind=kind, device=device, **selection.kwargs(), **run.kwargs())
    console.print(
        Text(f"indexed {summary.indexed} images ({summary.unreadable} unreadable) into {summary.path} ({summary.kind})")
    )


@app.command("search")
def search_command(
    query: Annotated[Optional[str], typer.Argument(help="text query")] = None,
    index: Annotated[Path, typer.Option()] = Path("hysac-index"),
    model: Annotated[Path, typer.Option()] = Path("hysac-model"),
    image: Annotated[Optional[Path], typer.Option(help="query by image instead of text")] = None,
    k: Annotated[int, typer.Option(min=1)] = 10,
    redirect_query: Annotated[
        bool, typer.Option("--redirect", help="walk the query toward the origin until its neighbours are safe")
    ] = False,
    rescale: Annotated[
        bool, typer.Option("--rescale", help="the released code's rescaling rule instead of the walk")
    ] = False,
    device: str = "cpu",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nearest gallery images for a text or image query, optionally redirected to safe content."""
    from imagesafety.hysac.retrieval import search

    found = search(
        query, image=image, index=index, model=model, k=k, redirect_query=redirect_query, rescale=rescale, device=device
    )
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "results": found.results,
                    "moved": found.moved,
                    "fraction": found.fraction,
                    "reached_safe": found.reached_safe,
                    "notes": found.notes,
                }
            )
        )
        return
    title = f"top {k}" + (
        f" after moving {found.moved:.3f} toward the origin (t = {found.fraction:.2f})" if redirect_query else ""
    )
    table = Table(title=Text(title))
    for column in ("rank", "image", "distance", "unsafe"):
        table.add_column(column)
    for r in found.results:
        table.add_row(
            str(r["rank"]),
            Text(r["id"]),
            f"{r['distance']:.4f}",
            "-" if r["unsafe"] is None else ("yes" if r["unsafe"] == 1 else "no"),
        )
    console.print(table)
    for note in found.notes:
        err_console.print(Text(f"note: {note}", style="yellow"))


@app.command("eval")
@engine_options
def eval_command(
    model: Annotated[Path, typer.Option()],
    data: Annotated[Path, typer.Option(help="quadruples to evaluate on")],
    split: Annotated[Optional[str], typer.Option(help="evaluate only this split (e.g. test)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/hysac-eval"),
    device: str = "cpu",
    run: Any = None,
) -> None:
    """Recall@1/10/20 in the paper's settings, safe share for unsafe queries (with and without redirection),
    classification."""
    from imagesafety.hysac.scoring import evaluate_hysac

    report, path, rows = evaluate_hysac(model, data, out, split=split, device=device, options=run)
    table = Table(title=Text(f"HySAC on {data.name} ({rows} quadruples)"))
    table.add_column("setting")
    table.add_column("metrics")
    for setting, values in report.items():
        table.add_row(
            setting, " · ".join(f"{k} {v:.1f}" if "threshold" not in k else f"{k} {v:.3f}" for k, v in values.items())
        )
    console.print(table)
    console.print(Text(f"written to {path}"))
