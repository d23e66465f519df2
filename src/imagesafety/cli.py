"""The `imagesafety` command line: a thin shell over the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmark image safety classifiers per category and per source.", no_args_is_help=True, add_completion=False)
cache_app = typer.Typer(help="Inspect or clear the prediction cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def split_list(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_options(pairs: list[str]) -> dict:
    """`key=value` strings to a dict; values parsed as YAML scalars (numbers, booleans) when they can be."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"--option takes key=value, got {pair!r}")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else ""
    return options


CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="prediction cache file (default: ~/.cache/imagesafety/cache.sqlite or $IMAGESAFETY_CACHE)")]


@app.command("eval")
def eval_command(
    classifier: Annotated[str, typer.Option("--classifier", "-c", help="classifier spec, e.g. nudenet (see `imagesafety models`)")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="folder, .jsonl/.csv/.parquet, hf:OWNER/NAME or a name (see `imagesafety datasets`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for metrics.json, predictions.parquet, report.html")] = Path("runs/eval"),
    threshold: Annotated[Optional[float], typer.Option(help="decision threshold on the unsafe score")] = None,
    calibrate: Annotated[Optional[str], typer.Option(help="pick the F1-optimal threshold on this split; report on the others")] = None,
    split: Annotated[Optional[str], typer.Option(help="evaluate only this split")] = None,
    categories: Annotated[Optional[str], typer.Option(help="comma-separated categories to keep")] = None,
    sources: Annotated[Optional[str], typer.Option(help="comma-separated sources to keep (real, generated)")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="stop after this many images")] = None,
    option: Annotated[list[str], typer.Option("--option", help="classifier setting key=value (repeatable)")] = [],
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    workers: Annotated[Optional[int], typer.Option(min=1, help="background decoding threads (default: cores - 1, at most 4)")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the 95% intervals")] = 1000,
    seed: int = 0,
    cache: CacheOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the prediction cache")] = False,
    html: Annotated[bool, typer.Option("--html/--no-html")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Benchmark a classifier on a labelled image set: metrics per category and source, with reports."""
    from imagesafety.bench.evaluate import USE_DEFAULT_CACHE, evaluate
    from imagesafety.bench.report.console import print_summary
    from imagesafety.bench.runner import RunInterrupted
    from imagesafety.classifiers.registry import MissingExtraError

    try:
        result = evaluate(
            classifier, dataset, out,
            threshold=threshold, calibrate=calibrate, split=split,
            categories=split_list(categories), sources=split_list(sources), limit=limit,
            cache=None if no_cache else (cache or USE_DEFAULT_CACHE),
            batch_size=batch_size, workers=workers, n_boot=bootstrap, seed=seed,
            progress=not quiet, html=html,
            classifier_options=parse_options(option),
        )
    except RunInterrupted as stop:
        err_console.print(
            f"[yellow]interrupted[/yellow] after {stop.stats.images} images; every finished prediction is in the cache: "
            "run the same command again to resume."
        )
        raise typer.Exit(130)
    except (MissingExtraError, ValueError, FileNotFoundError, KeyError) as exc:
        fail(str(exc).strip('"'))
    print_summary(result.metrics, result.files, console)


@app.command("models")
def models_command() -> None:
    """List the registered classifiers and what each needs installed."""
    from imagesafety.classifiers.registry import classifier_entries

    table = Table(title="classifiers")
    for column in ("name", "example spec", "description", "needs"):
        table.add_column(column)
    for entry in classifier_entries().values():
        missing = entry.missing_modules()
        needs = f"[red]pip install 'imagesafety[{entry.extra}]'[/red]" if missing and entry.extra else (
            f"[red]missing {', '.join(missing)}[/red]" if missing else "[green]installed[/green]")
        table.add_row(entry.name, entry.example, entry.description, needs)
    console.print(table)


@app.command("datasets")
def datasets_command() -> None:
    """List dataset formats and named datasets, and what each needs installed."""
    import importlib.util

    from imagesafety.data import DATASET_FORMATS, NAMED_DATASETS

    def needs(extra: Optional[str]) -> str:
        if extra == "hf" and importlib.util.find_spec("datasets") is None:
            return "[red]pip install 'imagesafety[hf]'[/red]"
        return "[green]installed[/green]"

    formats = Table(title="dataset formats (--dataset PATH or FORMAT:PATH)")
    for column in ("format", "what", "needs"):
        formats.add_column(column)
    for f in DATASET_FORMATS.values():
        formats.add_row(f.name, f.description, needs(f.requires))
    console.print(formats)
    named = Table(title="named datasets (--dataset NAME)")
    for column in ("name", "spec", "what", "needs"):
        named.add_column(column)
    for d in NAMED_DATASETS.values():
        named.add_row(d.name, d.spec, d.description, needs(d.requires))
    console.print(named)


@app.command("example-data")
def example_data_command(
    out: Annotated[Path, typer.Argument(help="folder to write the example set into")] = Path("example-data"),
    per_group: Annotated[int, typer.Option(min=1, help="images per label x category x source")] = 4,
    seed: int = 0,
) -> None:
    """Write a small generated image set for checking the pipeline (not a safety measurement)."""
    from imagesafety.data.example import write_example_dataset

    root = write_example_dataset(out, per_group=per_group, seed=seed)
    console.print(f"wrote example images to {root} (random shapes: a pipeline check, not a safety measurement)")


@cache_app.command("info")
def cache_info(cache: CacheOpt = None) -> None:
    """Show how many predictions are cached per classifier."""
    import datetime as dt

    from imagesafety.store import PredictionCache

    store = PredictionCache(cache)
    table = Table(title=f"prediction cache {store.path}")
    for column in ("classifier", "version", "config", "predictions", "last written"):
        table.add_column(column)
    for row in store.stats():
        table.add_row(row["classifier"], row["version"], row["config_hash"], str(row["predictions"]),
                      dt.datetime.fromtimestamp(row["last_written"]).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@cache_app.command("clear")
def cache_clear(
    cache: CacheOpt = None,
    classifier: Annotated[Optional[str], typer.Option(help="only this classifier id (default: everything)")] = None,
) -> None:
    """Delete cached predictions."""
    from imagesafety.store import PredictionCache

    store = PredictionCache(cache)
    console.print(f"deleted {store.clear(classifier)} cached predictions from {store.path}")


if __name__ == "__main__":
    app()
