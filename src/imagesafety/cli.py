"""The `imagesafety` command line: a thin shell over the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from imagesafety.cli_common import console, err_console, fail, parse_options, split_list
from imagesafety.guard.cli import app as guard_app
from imagesafety.hyperbolic.cli import app as hysac_app
from imagesafety.pairs.cli import app as pairs_app
from imagesafety.perspective.cli import app as perspective_app

app = typer.Typer(help="Benchmark image safety classifiers per category and per source.", no_args_is_help=True, add_completion=False)
cache_app = typer.Typer(help="Inspect or clear the prediction cache.", no_args_is_help=True)
for group, name in ((cache_app, "cache"), (hysac_app, "hysac"), (perspective_app, "perspective"), (pairs_app, "pairs"), (guard_app, "guard")):
    app.add_typer(group, name=name)


def endpoint_options(base_url, concurrency, protocol, unsure) -> dict:
    """The VLM/moderation flags that were given, as classifier options."""
    given = {"base_url": base_url, "concurrency": concurrency, "protocol": protocol, "unsure": unsure}
    return {k: v for k, v in given.items() if v is not None}


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
    base_url: Annotated[Optional[str], typer.Option(help="VLM/moderation endpoint, e.g. http://localhost:8000/v1 (vLLM, Ollama)")] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="concurrent requests to a VLM endpoint")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="VLM prompt protocol: unsafebench, policy, llamaguard or a YAML file")] = None,
    unsure: Annotated[Optional[str], typer.Option(help="VLM answers that are neither safe nor unsafe count as: unsafe, safe or exclude")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="default 16 (VLMs: twice the concurrency)")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="background decoding threads (default: cores - 1, at most 4)")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the 95% intervals")] = 1000,
    seed: int = 0,
    cache: CacheOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the prediction cache")] = False,
    html: Annotated[bool, typer.Option("--html/--no-html")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    engine: Annotated[str, typer.Option(help="local (default) or ray (Ray Data actors; see docs/scaling.md)")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster: auto or ray://HOST:PORT (default: start a local one)")] = None,
    num_gpus: Annotated[float, typer.Option(help="GPUs per Ray actor")] = 0,
    partition_size: Annotated[int, typer.Option(help="images per Ray partition (the unit a re-run skips)")] = 1000,
    streaming: Annotated[bool, typer.Option("--streaming", help="stream a Hugging Face dataset instead of downloading it first")] = False,
) -> None:
    """Benchmark a classifier on a labelled image set: metrics per category and source, with reports."""
    from imagesafety.bench.evaluate import USE_DEFAULT_CACHE, evaluate
    from imagesafety.bench.report.console import print_summary
    from imagesafety.bench.runner import RunInterrupted
    from imagesafety.classifiers.base import FatalModelError
    from imagesafety.classifiers.registry import MissingExtraError

    try:
        result = evaluate(
            classifier, dataset, out,
            threshold=threshold, calibrate=calibrate, split=split,
            categories=split_list(categories), sources=split_list(sources), limit=limit,
            cache=None if no_cache else (cache or USE_DEFAULT_CACHE),
            batch_size=batch_size, workers=workers, n_boot=bootstrap, seed=seed,
            progress=not quiet, html=html,
            classifier_options=parse_options(option) | endpoint_options(base_url, concurrency, protocol, unsure),
            engine=engine, address=address, num_gpus=num_gpus, partition_size=partition_size, streaming=streaming,
        )
    except RunInterrupted as stop:
        err_console.print(
            f"[yellow]interrupted[/yellow] after {stop.stats.images} images; every finished prediction is in the cache: "
            "run the same command again to resume."
        )
        raise typer.Exit(130)
    except (MissingExtraError, ValueError, FileNotFoundError, KeyError, FatalModelError) as exc:
        fail(str(exc).strip('"'))
    print_summary(result.metrics, result.files, console)


@app.command("robustness")
def robustness_command(
    classifier: Annotated[str, typer.Option("--classifier", "-c")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/robustness"),
    attacks: Annotated[str, typer.Option(help="comma-separated: gn, fgsm, pgd, deepfool (white-box, torch classifiers); square (black-box)")] = "pgd",
    eps: Annotated[float, typer.Option(help="perturbation budget (L-inf; the std for gn)")] = 0.01,
    eps_space: Annotated[str, typer.Option(help="units of --eps: pixel ([0, 1] pixels) or normalized (the model's normalised input, as UnsafeBench)")] = "pixel",
    k: Annotated[int, typer.Option(help="images the classifier gets right to attack")] = 500,
    seed: int = 2023,
    steps: Annotated[int, typer.Option(help="iterations of pgd, deepfool and square")] = 100,
    eps_curve: Annotated[bool, typer.Option("--eps-curve/--no-eps-curve", help="also attack at eps x 0.25, 0.5, 2, 4")] = True,
    corruptions: Annotated[Optional[str], typer.Option(help="comma-separated: jpeg, gaussian_noise, gaussian_blur, resize, brightness, contrast, crop, screenshot")] = None,
    severity: Annotated[str, typer.Option(help="severities, e.g. 1..5 or 1,3,5")] = "1..5",
    split: Optional[str] = None,
    categories: Optional[str] = None,
    sources: Optional[str] = None,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    save_adversarial: Annotated[Optional[Path], typer.Option(help="write adversarial images + manifest.jsonl here (loadable by eval)")] = None,
    option: Annotated[list[str], typer.Option("--option", help="classifier setting key=value (repeatable)")] = [],
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    cache: CacheOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    engine: Annotated[str, typer.Option(help="engine of the clean and corrupted evaluations: local or ray (attacks run locally)")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address")] = None,
) -> None:
    """Robust accuracy under adversarial attacks (UnsafeBench protocol) and accuracy under corruptions."""
    from imagesafety.bench.evaluate import USE_DEFAULT_CACHE
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.classifiers.registry import MissingExtraError

    if ".." in severity:
        lo, hi = severity.split("..")
        severities = list(range(int(lo), int(hi) + 1))
    else:
        severities = [int(s) for s in split_list(severity) or []]
    try:
        result = robustness(classifier, dataset, out, attacks=split_list(attacks) or [], eps=eps, eps_space=eps_space, k=k, seed=seed,
                            steps=steps, eps_curve=eps_curve, corruptions=split_list(corruptions), severities=severities, split=split,
                            categories=split_list(categories), sources=split_list(sources), limit=limit, cache=cache or USE_DEFAULT_CACHE,
                            batch_size=batch_size, save_adversarial=save_adversarial, progress=not quiet,
                            classifier_options=parse_options(option), engine=engine, address=address)
    except (MissingExtraError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    m = result.metrics
    table = Table(title=f"robust accuracy of {m['classifier']['name']} (eps {m['protocol']['eps_pixel_units']:.4g} pixel units, "
                        f"{m['protocol']['attacked']} images; clean accuracy {m['clean']['accuracy']:.3f})")
    for column in ("attack", "RA", "mean L-inf", "mean L2"):
        table.add_column(column, justify="right")
    for name, block in m["attacks"].items():
        o = block.get("overall", {})
        table.add_row(name, f"{o.get('robust_accuracy', float('nan')):.3f}", f"{o.get('mean_linf', float('nan')):.4f}", f"{o.get('mean_l2', float('nan')):.3f}")
    console.print(table)
    for name, per in m["corruptions"].items():
        console.print(f"{name}: " + " · ".join(f"s{s} acc {v['accuracy']:.3f}" for s, v in per.items() if v["accuracy"] is not None))
    for kind, path in result.files.items():
        console.print(f"  {kind}: {path}")


@app.command("embed")
def embed_command(
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="clip:ViT-L-14/openai (open_clip), hf:MODEL_OR_PATH (transformers CLIP/SigLIP)")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="as for eval")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".parquet (default) or .npz")] = Path("embeddings.parquet"),
    text: Annotated[bool, typer.Option("--text", help="also embed the dataset's 'text' captions")] = False,
    split: Optional[str] = None,
    categories: Optional[str] = None,
    sources: Optional[str] = None,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when available)")] = None,
    cache: CacheOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    engine: Annotated[str, typer.Option(help="local (default) or ray")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start a local one)")] = None,
    partition_size: int = 1000,
) -> None:
    """Embed a dataset's images (and captions) for guard training; cached and resumable."""
    from imagesafety.bench.evaluate import USE_DEFAULT_CACHE
    from imagesafety.bench.runner import RunInterrupted
    from imagesafety.encoders.embed import embed

    try:
        result = embed(encoder, dataset, out, text=text, split=split, categories=split_list(categories), sources=split_list(sources),
                       limit=limit, cache=None if no_cache else (cache or USE_DEFAULT_CACHE), batch_size=batch_size, device=device,
                       progress=not quiet, engine=engine, address=address, partition_size=partition_size)
    except RunInterrupted as stop:
        err_console.print(f"[yellow]interrupted[/yellow] after {stop.stats.images} images; finished embeddings are cached: run again to resume.")
        raise typer.Exit(130)
    except (ImportError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    meta = result.metadata
    console.print(f"{meta['images']} images ({meta['errors']} errors) -> {meta['embed_dim']}-d embeddings from {meta['encoder']}: {result.path}")


@app.command("serve")
def serve_command(
    classifier: Annotated[list[str], typer.Option("--classifier", "-c", help="classifier spec to serve (repeatable); the first is the default model")] = ["nudenet"],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[list[str], typer.Option("--api-key", help="accepted API key (repeatable); none: no auth")] = [],
    keys_file: Annotated[Optional[Path], typer.Option(help="file of key_id:secret lines")] = None,
    threshold: Annotated[list[str], typer.Option("--threshold", help="category=threshold (repeatable; 'unsafe=' sets the default)")] = [],
    rate_limit: Annotated[int, typer.Option(help="requests per minute per API key (0: unlimited)")] = 0,
    allow_url_host: Annotated[list[str], typer.Option("--allow-url-host", help="host whose http(s) image URLs may be fetched (repeatable; '.example.com' for subdomains)")] = [],
    audit_url: Annotated[str, typer.Option(help="SQLAlchemy URL of the audit log, e.g. postgresql+psycopg://user@host/db")] = "sqlite:///imagesafety-audit.sqlite",
    store_images: Annotated[bool, typer.Option(help="also keep the images in the audit log")] = False,
    max_request_mb: float = 20.0,
    max_images: int = 16,
    batch_window_ms: float = 5.0,
    max_batch_size: int = 16,
    timeout: float = 30.0,
    option: Annotated[list[str], typer.Option("--option", help="classifier setting key=value, applied to every classifier")] = [],
) -> None:
    """Serve classifiers over HTTP: OpenAI-compatible /v1/moderations, /v1/classify, /metrics, docs at /docs."""
    from imagesafety.serve import ServeConfig
    from imagesafety.serve.app import serve

    keys = {f"key-{i + 1}": k for i, k in enumerate(api_key)}
    if keys_file:
        keys.update(ServeConfig.read_keys_file(keys_file))
    thresholds = {k: float(v) for k, v in parse_options(threshold).items()}
    options = parse_options(option)
    config = ServeConfig(
        classifiers=classifier, api_keys=keys, thresholds=thresholds, rate_limit_per_minute=rate_limit,
        allow_url_hosts=[h.lower() for h in allow_url_host], audit_url=audit_url, store_images=store_images,
        max_request_bytes=int(max_request_mb * 1024 * 1024), max_images_per_request=max_images, batch_window_ms=batch_window_ms,
        max_batch_size=max_batch_size, request_timeout_s=timeout, classifier_options={c: options for c in classifier},
    )
    serve(config, host, port)


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
