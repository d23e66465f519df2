"""The `imagesafety` command line: a thin shell over the Python API (every command is one API call)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from imagesafety.cli.common import (
    CacheOpt,
    FpsOpt,
    FrameRuleOpt,
    MaxFramesOpt,
    OneLineErrors,
    console,
    data_options,
    engine_options,
    err_console,
    fail,
    frame_policy,
    parse_options,
    reading_options,
    split_list,
)
from imagesafety.cli.guard import app as guard_app
from imagesafety.cli.hashes import app as hashes_app
from imagesafety.cli.hysac import app as hysac_app
from imagesafety.cli.pairs import app as pairs_app
from imagesafety.cli.perspective import app as perspective_app

app = typer.Typer(
    help="Benchmark image safety classifiers per category and per source.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
)
cache_app = typer.Typer(help="Inspect or clear the prediction cache.", no_args_is_help=True)
for group, name in (
    (cache_app, "cache"),
    (hysac_app, "hysac"),
    (perspective_app, "perspective"),
    (pairs_app, "pairs"),
    (guard_app, "guard"),
    (hashes_app, "hashes"),
):
    app.add_typer(group, name=name)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show full tracebacks instead of one-line errors")] = False,
) -> None:
    """Benchmark image safety classifiers per category and per source."""
    if debug:
        os.environ["IMAGESAFETY_DEBUG"] = "1"


def endpoint_options(base_url, concurrency, protocol, unsure) -> dict:
    """The VLM/moderation flags that were given, as classifier options."""
    given = {"base_url": base_url, "concurrency": concurrency, "protocol": protocol, "unsure": unsure}
    return {k: v for k, v in given.items() if v is not None}


def interrupted(stop) -> None:
    err_console.print(
        Text(
            f"interrupted after {stop.stats.images} images; every finished result is in the cache: "
            "run the same command again to resume.",
            style="yellow",
        )
    )
    raise typer.Exit(130)


@app.command("eval")
@data_options
@engine_options
@reading_options
def eval_command(
    classifier: Annotated[
        list[str],
        typer.Option(
            "--classifier",
            "-c",
            help="classifier spec, e.g. nudenet (see `imagesafety models`); repeat it to compare several on a "
            "leaderboard",
        ),
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="folder, .jsonl/.csv/.parquet, hf:OWNER/NAME or a name (see `imagesafety datasets`)"
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="folder for metrics.json, predictions.parquet, report.html (several classifiers: one subfolder each, "
            "and the leaderboard)",
        ),
    ] = Path("runs/eval"),
    threshold: Annotated[Optional[float], typer.Option(help="decision threshold on the unsafe score")] = None,
    calibrate: Annotated[
        Optional[str], typer.Option(help="pick the F1-optimal threshold on this split; report on the others")
    ] = None,
    option: Annotated[
        list[str],
        typer.Option(
            "--option",
            help="classifier setting key=value (repeatable); with several classifiers SPEC.key=value sets one",
        ),
    ] = [],
    covers: Annotated[
        Optional[str],
        typer.Option(help="categories the classifier is scored on: 'all' or a list (default: what it declares)"),
    ] = None,
    compare_published: Annotated[
        str,
        typer.Option(
            help="published figures to show beside the measured ones: unsafebench, none, or auto (unsafebench on "
            "UnsafeBench)"
        ),
    ] = "auto",
    base_url: Annotated[
        Optional[str], typer.Option(help="VLM/moderation endpoint, e.g. http://localhost:8000/v1 (vLLM, Ollama)")
    ] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="concurrent requests to a VLM endpoint")] = None,
    protocol: Annotated[
        Optional[str], typer.Option(help="VLM prompt protocol: unsafebench, policy, llamaguard or a YAML file")
    ] = None,
    unsure: Annotated[
        Optional[str],
        typer.Option(help="VLM answers that are neither safe nor unsafe count as: unsafe, safe or exclude"),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the 95% intervals")] = 1000,
    seed: int = 0,
    max_error_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="fail the run when more than this share of images fail")
    ] = 0.5,
    html: Annotated[bool, typer.Option("--html/--no-html")] = True,
    selection: Any = None,
    run: Any = None,
    frames: Any = None,
) -> None:
    """Benchmark a classifier on a labelled image set: metrics per category and source, with reports."""
    from imagesafety.bench.coverage import parse_covers
    from imagesafety.bench.evaluate import evaluate, first_errors
    from imagesafety.bench.report.console import print_leaderboard, print_summary
    from imagesafety.run.runner import RunInterrupted

    options = dict(
        threshold=threshold,
        calibrate=calibrate,
        n_boot=bootstrap,
        seed=seed,
        html=html,
        max_error_rate=max_error_rate,
        covers="declared" if covers is None else parse_covers(covers),
        classifier_options=parse_options(option) | endpoint_options(base_url, concurrency, protocol, unsure),
        frames=frames,
        **selection.kwargs(),
        **run.kwargs(),
    )
    published = None if compare_published == "none" else compare_published
    try:
        if len(classifier) > 1:
            from imagesafety.bench.many import ManyRunsFailed, evaluate_many

            try:
                many = evaluate_many(classifier, dataset, out, compare_published=published, **options)
            except ManyRunsFailed as failed:
                print_many(failed.result)
                raise
            print_many(many)
            return
        result = evaluate(classifier[0], dataset, out, **options)
    except KeyboardInterrupt as stop:
        if isinstance(stop, RunInterrupted):
            interrupted(stop)
        raise
    print_summary(result.document, result.files, console, errors=first_errors(result.predictions))
    if published:
        from imagesafety.bench.many import compare_with_published

        compared = compare_with_published(result, out, published)
        if compared is not None:
            print_leaderboard(*compared, console)


def print_many(many) -> None:
    """Each run's one-line outcome, then the leaderboard."""
    from imagesafety.bench.report.console import print_leaderboard

    for spec, result in many.results.items():
        run = result.document.run
        f1 = "n/a" if result.f1 is None else f"{result.f1:.3f}"
        console.print(
            Text(f"{spec}: {run.images} images, {run.errors} errors, F1 {f1} -> {result.files.get('metrics', '')}")
        )
    for spec, why in many.failed.items():
        err_console.print(Text(f"{spec}: FAILED: {why}", style="red"))
    if many.leaderboard is not None:
        print_leaderboard(many.leaderboard, many.files, console)


@app.command("leaderboard")
def leaderboard_command(
    runs: Annotated[list[Path], typer.Argument(help="run folders written by `imagesafety eval` (or a folder of them)")],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="folder for leaderboard.html/.csv/.md/.tex (default: the first argument when it holds several runs, "
            "else the current folder)",
        ),
    ] = None,
    compare_published: Annotated[
        str, typer.Option(help="unsafebench, none, or auto (unsafebench when the runs were on UnsafeBench)")
    ] = "auto",
) -> None:
    """Put finished runs side by side (no model runs): F1 per category and source, precision/recall/FPR, speed, cost."""
    from imagesafety.bench.leaderboard import leaderboard_from_folders
    from imagesafety.bench.report.console import print_leaderboard
    from imagesafety.bench.report.leaderboard_files import write_leaderboard

    board = leaderboard_from_folders(runs, None if compare_published == "none" else compare_published)
    target = out or (runs[0] if len(runs) == 1 and not (runs[0] / "metrics.json").is_file() else Path("."))
    print_leaderboard(board, write_leaderboard(board, target), console)


def parse_severities(severity: str) -> list[int]:
    """`1..5` or `1,3,5`."""
    try:
        if ".." in severity:
            lo, hi = severity.split("..")
            values = list(range(int(lo), int(hi) + 1))
        else:
            values = [int(s) for s in split_list(severity) or []]
    except ValueError:
        raise ValueError(f"--severity takes 1..5 or a list such as 1,3,5, got {severity!r}") from None
    if not values or any(v not in range(1, 6) for v in values):
        raise ValueError(f"--severity values must be 1 to 5, got {severity!r}")
    return values


@app.command("robustness")
@data_options
@engine_options
@reading_options
def robustness_command(
    classifier: Annotated[str, typer.Option("--classifier", "-c")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/robustness"),
    attacks: Annotated[
        str,
        typer.Option(
            help="comma-separated: gn, fgsm, pgd, deepfool (white-box, torch classifiers); square (black-box)"
        ),
    ] = "pgd",
    eps: Annotated[float, typer.Option(help="perturbation budget (L-inf; the std for gn)")] = 0.01,
    eps_space: Annotated[
        str,
        typer.Option(
            help="units of --eps: pixel ([0, 1] pixels) or normalized (the model's normalised input, as UnsafeBench)"
        ),
    ] = "pixel",
    k: Annotated[int, typer.Option(min=1, help="images the classifier gets right to attack")] = 500,
    seed: int = 2023,
    steps: Annotated[int, typer.Option(min=1, help="iterations of pgd, deepfool and square")] = 100,
    eps_curve: Annotated[
        bool, typer.Option("--eps-curve/--no-eps-curve", help="also attack at eps x 0.25, 0.5, 2, 4")
    ] = True,
    corruptions: Annotated[
        Optional[str],
        typer.Option(
            help="comma-separated: jpeg, gaussian_noise, gaussian_blur, resize, brightness, contrast, crop, screenshot"
        ),
    ] = None,
    severity: Annotated[str, typer.Option(help="severities, e.g. 1..5 or 1,3,5")] = "1..5",
    save_adversarial: Annotated[
        Optional[Path], typer.Option(help="write adversarial images + manifest.jsonl here (loadable by eval)")
    ] = None,
    option: Annotated[list[str], typer.Option("--option", help="classifier setting key=value (repeatable)")] = [],
    selection: Any = None,
    run: Any = None,
    frames: Any = None,
) -> None:
    """Robust accuracy under adversarial attacks (UnsafeBench protocol) and accuracy under corruptions."""
    from imagesafety.bench.robustness.report import print_robustness_summary
    from imagesafety.bench.robustness.run import robustness

    result = robustness(
        classifier,
        dataset,
        out,
        attacks=split_list(attacks) or [],
        eps=eps,
        eps_space=eps_space,
        k=k,
        seed=seed,
        steps=steps,
        eps_curve=eps_curve,
        corruptions=split_list(corruptions),
        severities=parse_severities(severity),
        save_adversarial=save_adversarial,
        classifier_options=parse_options(option),
        frames=frames,
        **selection.kwargs(),
        **run.kwargs(),
    )
    print_robustness_summary(result.document, result.files, console)


@app.command("embed")
@data_options
@engine_options
def embed_command(
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            "-e",
            help="clip:ViT-L-14/openai (open_clip), hf:MODEL_OR_PATH (transformers CLIP/SigLIP), nsfwjs:MODEL",
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="as for eval")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".parquet (default) or .npz")] = Path("embeddings.parquet"),
    text: Annotated[bool, typer.Option("--text", help="also embed the dataset's 'text' captions")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when available)")] = None,
    max_frames: MaxFramesOpt = 64,
    fps: FpsOpt = 1.0,
    selection: Any = None,
    run: Any = None,
) -> None:
    """Embed a dataset's images (and captions) for guard training; cached and resumable. An animation's or video's
    embedding is the mean of its frames' embeddings."""
    from imagesafety.run.embed import embed
    from imagesafety.run.runner import RunInterrupted

    try:
        result = embed(
            encoder,
            dataset,
            out,
            text=text,
            device=device,
            frames=frame_policy(max_frames, "max", fps, False),
            **selection.kwargs(),
            **run.kwargs(),
        )
    except KeyboardInterrupt as stop:
        if isinstance(stop, RunInterrupted):
            interrupted(stop)
        raise
    meta = result.metadata
    console.print(
        Text(
            f"{meta['images']} images ({meta['errors']} errors) -> {meta['embed_dim']}-d embeddings from "
            f"{meta['encoder']}: {result.path}"
        )
    )


@app.command("explain")
@data_options
@engine_options
def explain_command(
    classifier: Annotated[
        list[str], typer.Option("--classifier", "-c", help="classifier spec (repeatable: their evidence is compared)")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="as for eval")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="folder for evidence.parquet, heatmaps/ and explain.html")
    ] = Path("runs/explain"),
    method: Annotated[
        str,
        typer.Option(
            help="auto (integrated gradients for torch classifiers, occlusion otherwise), occlusion, rise, "
            "integrated-gradients, saliency"
        ),
    ] = "auto",
    category: Annotated[
        Optional[str], typer.Option(help="explain this category's score instead of the unsafe score")
    ] = None,
    fill: Annotated[
        str, typer.Option(help="how removed pixels are filled: blur, pixelate, mean, telea or ns (OpenCV inpainting)")
    ] = "blur",
    work_side: Annotated[
        int, typer.Option(min=16, help="images are explained with their long side at most this, maps mapped back")
    ] = 224,
    max_flip_area: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="largest share of the image the flip search may remove")
    ] = 0.5,
    option: Annotated[list[str], typer.Option("--option", help="classifier setting key=value (repeatable)")] = [],
    max_frames: MaxFramesOpt = 64,
    frame_rule: FrameRuleOpt = "max",
    fps: FpsOpt = 1.0,
    selection: Any = None,
    run: Any = None,
) -> None:
    """Where each image's unsafe evidence is: maps, top regions, the smallest region whose removal flips the verdict
    (an animation's most unsafe frame)."""
    from imagesafety.evidence.report import run_explain

    table, page = run_explain(
        classifier,
        dataset,
        out,
        method=method,
        category=category,
        data=selection,
        run=run,
        frames=frame_policy(max_frames, frame_rule, fps, False),
        classifier_options=parse_options(option),
        fill=fill,
        work_side=work_side,
        max_flip_area=max_flip_area,
    )
    ok = table[table["error"].isna()]
    for name, part in ok.groupby("classifier"):
        flipped = part["flip_fraction"].dropna()
        console.print(
            Text(
                f"{name}: {len(part)} images explained; median flip fraction {flipped.median():.3f}"
                if len(flipped)
                else f"{name}: {len(part)} images explained; none flipped"
            )
        )
    console.print(Text(f"  evidence: {out / 'evidence.parquet'}\n  report: {page}"))


policy_app = typer.Typer(
    help="Deployable policies: classifiers, combination, calibration, thresholds per category, grades.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("fit")
def policy_fit_command(
    runs: Annotated[list[Path], typer.Option("--runs", help="finished eval folders (repeatable), one classifier each")],
    target: Annotated[str, typer.Option(help="fpr:X, precision:X, recall:X or f1")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the policy file to write")] = Path("policy.yaml"),
    split: Annotated[str, typer.Option(help="the split calibrations and thresholds are fitted on")] = "validation",
    method: Annotated[str, typer.Option(help="isotonic, platt or temperature")] = "isotonic",
) -> None:
    """Write a policy from finished runs (no model runs): calibrated parts, max-combined, a threshold per category."""
    from imagesafety.policy import fit_policy

    policy = fit_policy(runs, target, out, split=split, method=method)
    console.print(
        Text(
            f"{out}: {policy.combine} of {', '.join(p['spec'] for p in policy.classifiers)}; thresholds "
            + ", ".join(f"{k} {v:.4f}" for k, v in policy.thresholds.items())
        )
    )


@app.command("calibrate")
def calibrate_command(
    run: Annotated[Path, typer.Option("--run", help="a finished eval's folder (predictions.parquet, metrics.json)")],
    split: Annotated[str, typer.Option(help="the split to fit on (test only if you name it)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for calibration.json and calibration.html")],
    method: Annotated[str, typer.Option(help="isotonic, platt or temperature")] = "isotonic",
    operating_point: Annotated[
        Optional[str], typer.Option(help="a threshold per category for fpr:X, precision:X, recall:X or f1")
    ] = None,
    holdout: Annotated[
        Optional[str], typer.Option(help="split on which the operating point's achieved rate is reported")
    ] = None,
) -> None:
    """Fit calibrated scores per category on a named split; any classifier then takes --option calibration=OUT."""
    from imagesafety.calibration import calibrate

    cal = calibrate(run, split, method, out, operating_point=operating_point, holdout=holdout)
    for key, entry in cal.report.items():
        op = entry.get("operating_point")
        console.print(
            Text(
                f"{key}: ECE {entry['before']['ece']:.3f} -> {entry['after']['ece']:.3f} ({entry['n']} images)"
                + (f"; {op['target']} at threshold {op['threshold']:.4f}" if op else "")
            )
        )
    console.print(Text(f"  calibration: {out / 'calibration.json'}\n  report: {out / 'calibration.html'}"))


@app.command("redact")
def redact_command(
    classifier: Annotated[str, typer.Option("--classifier", "-c", help="classifier whose flags are redacted")],
    images: Annotated[Path, typer.Option("--images", "-i", help="folder of images (read recursively)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the copies (same relative paths)")],
    fill: Annotated[str, typer.Option(help="blur, pixelate, mean, telea or ns (OpenCV inpainting)")] = "blur",
    method: Annotated[str, typer.Option(help="evidence method (as for explain)")] = "auto",
) -> None:
    """Copies of the images with the evidence regions of each flagged image removed (unflagged ones copied
    unchanged)."""
    from imagesafety.evidence.redact import redact

    result = redact(classifier, images, out, fill=fill, method=method)
    console.print(
        Text(
            f"{len(result.written)} images written to {out}, {result.redacted} redacted"
            + (
                f"; {len(result.failed)} unreadable (e.g. {next(iter(result.failed.values()))})"
                if result.failed
                else ""
            )
        )
    )
    if not result.written:
        fail("no image could be read", code=1)


@app.command("serve")
def serve_command(
    classifier: Annotated[
        list[str],
        typer.Option(
            "--classifier", "-c", help="classifier spec to serve (repeatable); the first is the default model"
        ),
    ] = ["nudenet"],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[list[str], typer.Option("--api-key", help="accepted API key (repeatable)")] = [],
    keys_file: Annotated[Optional[Path], typer.Option(help="file of key_id:secret lines")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="serve without API keys (local use only)")] = False,
    threshold: Annotated[
        list[str], typer.Option("--threshold", help="category=threshold (repeatable; 'unsafe=' sets the default)")
    ] = [],
    rate_limit: Annotated[int, typer.Option(min=0, help="requests per minute per API key (0: unlimited)")] = 0,
    image_rate_limit: Annotated[int, typer.Option(min=0, help="images per minute per API key (0: unlimited)")] = 0,
    megapixel_rate_limit: Annotated[
        float, typer.Option(min=0, help="megapixels per minute per API key, summed over images (0: unlimited)")
    ] = 0,
    failed_auth_limit: Annotated[
        int, typer.Option(min=1, help="failed authentication attempts per minute per client address")
    ] = 30,
    max_aspect_ratio: Annotated[
        float, typer.Option(min=1, help="refuse images longer than this many times their width (or wider)")
    ] = 64.0,
    allow_url_host: Annotated[
        list[str],
        typer.Option(
            "--allow-url-host",
            help="host whose http(s) image URLs may be fetched (repeatable; '.example.com' for subdomains)",
        ),
    ] = [],
    audit_url: Annotated[
        Optional[str], typer.Option(help="SQLAlchemy URL of the audit log (default: SQLite in the user's data folder)")
    ] = None,
    store_images: Annotated[bool, typer.Option(help="also keep the images in the audit log")] = False,
    max_request_mb: Annotated[float, typer.Option(min=0.001)] = 20.0,
    max_images: Annotated[int, typer.Option(min=1)] = 16,
    max_request_megapixels: Annotated[
        float, typer.Option(min=0.001, help="pixel budget of one request, summed over its images")
    ] = 64.0,
    batch_window_ms: float = 5.0,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 16,
    timeout: Annotated[float, typer.Option(min=0.001)] = 30.0,
    option: Annotated[
        list[str], typer.Option("--option", help="classifier setting key=value, applied to every classifier")
    ] = [],
    max_frames: MaxFramesOpt = 64,
    frame_rule: FrameRuleOpt = "max",
    fps: FpsOpt = 1.0,
    early_exit: Annotated[
        bool, typer.Option("--early-exit/--no-early-exit", help="stop a video at the first frame over the threshold")
    ] = True,
    text_parts: Annotated[
        str,
        typer.Option(
            "--text-parts",
            help="text parts of a moderation input: refuse (400) or ignore (score only the images, and say so)",
        ),
    ] = "refuse",
    max_images_per_input: Annotated[
        int, typer.Option(min=1, help="images in one moderation input (1: exactly as OpenAI)")
    ] = 16,
    max_explain_calls: Annotated[
        int, typer.Option(min=1, help="model calls explanations (/v1/classify explain=) may cost per request")
    ] = 400,
    hash_bank: Annotated[
        Optional[Path],
        typer.Option(help="hash bank matched before any model: a match answers flagged at once and is never stored"),
    ] = None,
    policy: Annotated[
        Optional[Path], typer.Option(help="serve a policy file (its classifiers, combination, thresholds and grades)")
    ] = None,
) -> None:
    """Serve classifiers over HTTP: OpenAI-compatible /v1/moderations, /v1/classify, /metrics, docs at /docs."""
    from imagesafety.serve.app import serve
    from imagesafety.serve.config import ServeConfig, read_keys_file

    thresholds = {k: float(v) for k, v in parse_options(threshold, "--threshold").items()}
    if policy is not None:
        from imagesafety.policy import read_policy

        thresholds = {**read_policy(policy).thresholds, **thresholds}  # checked before anything is loaded
        classifier = [f"policy:{policy}"]
    keys = {f"key-{i + 1}": k for i, k in enumerate(api_key)}
    if keys_file:
        keys.update(read_keys_file(keys_file))
    config = ServeConfig(
        classifiers=classifier,
        api_keys=keys,
        auth=not no_auth,
        thresholds=thresholds,
        rate_limit_per_minute=rate_limit,
        images_per_minute=image_rate_limit,
        pixels_per_minute=int(megapixel_rate_limit * 1_000_000),
        failed_auth_per_minute=failed_auth_limit,
        max_aspect_ratio=max_aspect_ratio,
        allow_url_hosts=[h.lower() for h in allow_url_host],
        audit_url=audit_url,
        store_images=store_images,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        max_images_per_request=max_images,
        max_request_pixels=int(max_request_megapixels * 1_000_000),
        batch_window_ms=batch_window_ms,
        max_batch_size=max_batch_size,
        request_timeout_s=timeout,
        classifier_options={c: parse_options(option) for c in classifier},
        frames=frame_policy(max_frames, frame_rule, fps, early_exit),
        text_parts=text_parts,
        max_images_per_input=max_images_per_input,
        max_explain_calls=max_explain_calls,
        hash_bank=str(hash_bank) if hash_bank else None,
    )
    config.check()
    serve(
        config,
        host,
        port,
        say=lambda line: console.print(Text(line, style="yellow" if line.startswith("WARNING") else "")),
    )


KIND_TITLES = {
    "classifier": "classifiers",
    "encoder": "encoders (embed --encoder, guard heads)",
    "dataset": "dataset formats",
    "editor": "pair editors",
    "attack": "attacks",
    "corruption": "corruptions",
    "task": "engine tasks (what a run computes per image, locally or on Ray)",
}


@app.command("models")
def models_command(
    kind: Annotated[
        Optional[str],
        typer.Option(help="only this kind: classifier, encoder, dataset, editor, attack, corruption, task"),
    ] = None,
) -> None:
    """List what the registry holds (classifiers, encoders, editors, attacks, ...) and what each needs installed."""
    from imagesafety import registry

    kinds = [kind] if kind else list(registry.KINDS)
    for name in kinds:
        entries = registry.entries(name)
        table = Table(title=KIND_TITLES.get(name, name))
        for column in ("name", "example spec", "description", "needs"):
            table.add_column(column, overflow="fold")  # wrapped, never cut: an install hint must stay whole
        for entry in entries.values():
            hint = entry.install_hint()
            table.add_row(
                entry.name,
                entry.example,
                entry.description,
                Text(hint, style="red") if hint else Text("installed", style="green"),
            )
        console.print(table)


@app.command("schema")
def schema_command(
    name: Annotated[
        str,
        typer.Argument(help="the record: metrics, robustness, guard-card, hysac-card, lora-card or pair-candidate"),
    ] = "metrics",
) -> None:
    """Print the JSON Schema of a file imagesafety writes (generated from its typed record)."""
    import json

    from imagesafety.records import schema

    print(json.dumps(schema(name), indent=2))


datasets_app = typer.Typer(help="Dataset formats and named datasets; audit a dataset.", invoke_without_command=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("audit")
def datasets_audit_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="as for eval")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for audit.json and audit.html")] = Path("runs/audit"),
    threshold: Annotated[int, typer.Option(min=0, help="PDQ distance of a near-duplicate")] = 31,
) -> None:
    """Exact and near-duplicates within and across splits, conflicting labels, counts, unreadable files."""
    from imagesafety.hashes.audit import audit

    report = audit(dataset, out, threshold=threshold)
    s = report["summary"]
    console.print(
        Text(
            f"{report['images']} images: {s['exact_duplicates']} exact duplicate groups, "
            f"{s['near_duplicates_across_splits']} "
            f"near-duplicate groups across splits, {s['near_duplicates_within_splits']} within splits, "
            f"{s['label_conflicts']} "
            f"label conflicts, {s['unreadable']} unreadable -> {out / 'audit.json'}, {out / 'audit.html'}"
        )
    )


@datasets_app.callback()
def datasets_command(ctx: typer.Context) -> None:
    """List dataset formats and named datasets, and what each needs installed."""
    if ctx.invoked_subcommand is not None:
        return
    from imagesafety import registry
    from imagesafety.data import NAMED_DATASETS

    formats = Table(title="dataset formats (--dataset PATH or FORMAT:PATH)")
    for column in ("format", "what", "needs"):
        formats.add_column(column, overflow="fold")
    for f in registry.entries("dataset").values():
        hint = f.install_hint()
        formats.add_row(f.name, f.description, Text(hint, style="red") if hint else Text("installed", style="green"))
    console.print(formats)
    named = Table(title="named datasets (--dataset NAME)")
    for column in ("name", "spec", "what", "needs"):
        named.add_column(column, overflow="fold")
    hf_hint = registry.get("dataset", "hf").install_hint()
    for d in NAMED_DATASETS.values():
        named.add_row(
            d.name, d.spec, d.description, Text(hf_hint, style="red") if hf_hint else Text("installed", style="green")
        )
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
    console.print(Text(f"wrote example images to {root} (random shapes: a pipeline check, not a safety measurement)"))


def parse_age(value: str) -> float:
    """`30d`, `12h`, `90m` or seconds, as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = value.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"--older-than takes an age such as 30d, 12h or 90m, got {value!r}") from None


@cache_app.command("info")
def cache_info(cache: CacheOpt = None) -> None:
    """One row per cached model key: its model identity, settings, size, when it was last used and by which output
    folder."""
    import datetime as dt

    from imagesafety.store import PredictionCache

    store = PredictionCache(cache)
    table = Table(title=Text(f"cache {store.path}"))
    for column in ("model", "identity", "settings", "entries", "last used", "by"):
        table.add_column(column, overflow="fold")
    rows = store.stats()
    for row in rows:
        table.add_row(
            row["classifier"],
            (row["identity"] or "-")[:19],
            distinguishing_settings(row, rows),
            str(row["entries"]),
            dt.datetime.fromtimestamp(row["last_used"]).strftime("%Y-%m-%d %H:%M"),
            row["last_out"] or "-",
        )
    console.print(table)


def distinguishing_settings(row: dict, rows: list[dict]) -> str:
    """The settings that tell this key apart from the other keys of the same model (e.g. corruption=jpeg severity=3)."""
    config = row["config"] or {}
    others = [r["config"] or {} for r in rows if r is not row and r["classifier"] == row["classifier"]]
    keys = sorted({k for o in others for k in set(o) | set(config) if o.get(k) != config.get(k)} - {"weights"})
    return " ".join(f"{k}={config.get(k)}" for k in keys if k in config)[:80] or row["config_hash"]


@cache_app.command("clear")
def cache_clear(
    cache: CacheOpt = None,
    classifier: Annotated[
        Optional[str], typer.Option(help="only this classifier or encoder id (default: everything)")
    ] = None,
    older_than: Annotated[
        Optional[str], typer.Option(help="only entries of models not used for this long, e.g. 30d, 12h")
    ] = None,
) -> None:
    """Delete cached predictions and embeddings."""
    from imagesafety.store import PredictionCache

    store = PredictionCache(cache)
    deleted = store.clear(classifier, parse_age(older_than) if older_than else None)
    console.print(Text(f"deleted {deleted} cached predictions and embeddings from {store.path}"))
