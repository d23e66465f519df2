"""`imagesafety pairs ...`: generate counterfactual safety pairs and review them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from imagesafety.cli.common import console, data_options, engine_options, err_console, fail, parse_options

app = typer.Typer(
    help="Counterfactual safety pairs: edit, verify and store pairs whose label flips.", no_args_is_help=True
)


@app.command("generate")
@data_options
@engine_options
def pairs_generate_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("pairs"),
    policy: Annotated[str, typer.Option(help="taxonomy whose categories the edits target")] = "llavaguard",
    editor: Annotated[
        str, typer.Option(help="mask-composite, diffusers:MODEL, diffusers-inpaint:MODEL or openai-edit:MODEL")
    ] = "mask-composite",
    editor_option: Annotated[
        list[str], typer.Option("--editor-option", help="editor setting key=value (repeatable)")
    ] = [],
    judge: Annotated[str, typer.Option(help="classifier confirming the flip (any spec)")] = "nudenet",
    planner: Annotated[
        Optional[str], typer.Option(help="llm:MODEL to have a VLM write each instruction (default: templates)")
    ] = None,
    planner_base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint of the planner")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="attempts per plan")] = 3,
    lpips: Annotated[
        bool, typer.Option("--lpips/--no-lpips", help="also require a small LPIPS distance (needs lpips + torchvision)")
    ] = True,
    encoder: Annotated[
        Optional[str],
        typer.Option(
            help="also require a high embedding cosine under this encoder (e.g. hf:openai/clip-vit-base-patch32)"
        ),
    ] = None,
    region: Annotated[
        Optional[str],
        typer.Option(
            help="evidence:SPEC: edit each image's smallest flipping region under SPEC (instead of a typed box)"
        ),
    ] = None,
    region_margin: Annotated[
        float, typer.Option(min=0.0, max=0.49, help="grow the evidence region by this share of each side")
    ] = 0.02,
    selection: Any = None,
    run: Any = None,
) -> None:
    """Plan, edit and verify pairs; kept pairs go to OUT/pairs.parquet, every attempt to OUT/candidates.jsonl."""
    import importlib.util

    from imagesafety.classifiers import load_classifier
    from imagesafety.pairs.generate import generate_pairs
    from imagesafety.pairs.task import PairSettings
    from imagesafety.store import open_cache

    if lpips and importlib.util.find_spec("lpips") is None:
        err_console.print(Text("lpips not installed: the LPIPS check is skipped (pip install lpips)", style="yellow"))
        lpips = False
    settings = PairSettings(
        editor=editor,
        editor_options={
            k: (",".join(map(str, v)) if isinstance(v, list) else v)
            for k, v in parse_options(editor_option, "--editor-option").items()
        },
        policy=policy,
        seeds=seeds,
        region=region,
        region_margin=region_margin,
        planner=planner,
        planner_base_url=planner_base_url,
        lpips=lpips,
        encoder=encoder,
    )
    chosen_editor, llm, metric, chosen_encoder = settings.build()  # cheap checks first
    stats = generate_pairs(
        dataset,
        out,
        chosen_editor,
        load_classifier(judge),
        policy=policy,
        seeds=seeds,
        **selection.kwargs(),
        planner=llm,
        lpips=metric,
        encoder=chosen_encoder,
        progress=run.progress,
        cache=open_cache(run.cache),
        run=run,
        remote=(judge, settings),
    )
    console.print(
        Text(
            f"{stats.kept} pairs kept of {stats.plans} plans ({stats.rejected} rejected attempts, {stats.skipped} "
            "unreadable images"
            + (
                f", {stats.uncovered_plans} plans for categories the judge cannot judge skipped"
                if stats.uncovered_plans
                else ""
            )
            + f") -> {out / 'pairs.parquet'}"
        )
    )
    console.print(Text(stats.summary()))
    if stats.kept == 0:
        fail(
            "no pair was kept: see the rejection reasons above and in candidates.jsonl (loosen the edit, or check the "
            "judge)",
            code=1,
        )
    console.print(Text(f"evaluate with: imagesafety eval --dataset {out} --classifier ..."))


@app.command("view")
def pairs_view_command(
    directory: Annotated[Path, typer.Argument(help="folder written by pairs generate")],
    serve: Annotated[
        bool, typer.Option("--serve", help="serve it so accept/reject decisions are recorded into the store")
    ] = False,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """Write gallery.html (filters by category, verdict, score); with --serve, reviews go back into pairs.parquet."""
    from imagesafety.pairs.gallery import review_app, write_gallery

    if not (directory / "candidates.jsonl").is_file():
        fail(f"{directory}: no candidates.jsonl (run `imagesafety pairs generate` first)")
    path = write_gallery(directory)
    console.print(f"gallery: {path}")
    if serve:
        import uvicorn

        console.print(f"reviewing at http://{host}:{port}/")
        uvicorn.run(review_app(directory), host=host, port=port, log_level="warning")
