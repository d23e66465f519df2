"""What every command module shares: the consoles (which print text as it is, never as markup), the one error
path (an expected failure is one line and exit 2; a traceback only with --debug), and option parsing."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

try:  # older typer runs on click; newer releases carry their own copy, whose exceptions derive from TyperException
    import click

    CLICK_EXITS: tuple[type[BaseException], ...] = (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)
except ImportError:
    CLICK_EXITS = ()

#: a missing module -> the extra that installs it
EXTRA_OF_MODULE = {
    "torch": "clip",
    "torchvision": "pairs",
    "transformers": "clip",
    "safetensors": "clip",
    "open_clip": "openclip",
    "timm": "timm",
    "faiss": "hyperbolic",
    "peft": "hyperbolic",
    "fastapi": "serve",
    "uvicorn": "serve",
    "sqlalchemy": "serve",
    "httpx": "serve",
    "prometheus_client": "serve",
    "multipart": "serve",
    "ray": "ray",
    "datasets": "hf",
    "huggingface_hub": "hf",
    "openai": "vlm",
    "diffusers": "pairs",
    "lpips": "pairs",
    "skimage": "pairs",
    "art": "robustness",
    "scipy": "robustness",
    "psycopg": "postgres",
    "av": "video",
    "captum": "explain",
    "pdqhash": "hashes",
    "imagehash": "hashes",
}


def debug_enabled() -> bool:
    return os.environ.get("IMAGESAFETY_DEBUG", "").strip() not in ("", "0")


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit."""
    err_console.print(Text("error: ", style="red bold") + Text(str(message)), soft_wrap=True)
    raise typer.Exit(code)


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line an exception becomes, and the exit code (2: a mistake the user can fix; 1: anything else)."""
    from imagesafety.classifiers.base import FatalModelError
    from imagesafety.store import StoreError

    if isinstance(exc, ModuleNotFoundError) and exc.name:
        root = exc.name.split(".")[0]
        extra = EXTRA_OF_MODULE.get(root)
        hint = f"pip install 'imagesafety[{extra}]'" if extra else f"pip install {root}"
        return f"this needs the Python package {root!r}, which is not installed: {hint}", 2
    if isinstance(
        exc,
        (
            ValueError,
            FileNotFoundError,
            ImportError,
            FatalModelError,
            StoreError,
            PermissionError,
            IsADirectoryError,
            NotADirectoryError,
            FloatingPointError,
            KeyError,
        ),
    ):
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return str(text).strip() or type(exc).__name__, 2
    return (
        f"{type(exc).__name__}: {exc} (an internal error: run again with --debug for the traceback, and please report "
        "it)",
        1,
    )


class OneLineErrors(TyperGroup):
    """Every command of the app: an exception becomes one line on stderr (the traceback only with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, *CLICK_EXITS, KeyboardInterrupt):
            raise  # usage errors (a bad option value) are typer's to report: its message, exit 2
        except BrokenPipeError:  # the reader left (`imagesafety schema metrics | head`): stop quietly
            with contextlib.suppress(OSError, ValueError):  # as Python advises: nothing more goes to the closed pipe
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as exc:
            if debug_enabled():
                raise
            message, code = error_line(exc)
            err_console.print(Text("error: ", style="red bold") + Text(message), soft_wrap=True)
            raise typer.Exit(code) from None


def split_list(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_options(pairs: list[str], flag: str = "--option") -> dict:
    """`key=value` (or `SPEC.key=value`) strings to a dict; dashes in the key become underscores (not in SPEC);
    values parsed as YAML scalars (numbers, booleans) when they can be."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes key=value, got {pair!r}")
        owner, dot, name = key.strip().rpartition(".")
        key = f"{owner}{dot}{name.replace('-', '_')}"
        try:
            options[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key] = value
    return options


# How files of several frames are read: the same four options on every command that reads images.
MaxFramesOpt = Annotated[
    int,
    typer.Option(
        "--max-frames",
        min=1,
        help="frames classified per animation or video; over it the first, last and evenly spaced ones",
    ),
]
FrameRuleOpt = Annotated[
    str,
    typer.Option(
        "--frame-rule", help="how frames make the image's verdict: max (any frame) or K-of-n (at least K frames)"
    ),
]
FpsOpt = Annotated[float, typer.Option("--fps", min=0.001, help="video frames sampled per second")]


def frame_policy(max_frames: int, frame_rule: str, fps: float, early_exit: bool):
    """The FramePolicy the frame options describe."""
    from imagesafety.media import FramePolicy

    return FramePolicy(max_frames=max_frames, rule=frame_rule, fps=fps, early_exit=early_exit)


CacheOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--cache", help="prediction cache file (default: ~/.cache/imagesafety/cache.sqlite or $IMAGESAFETY_CACHE)"
    ),
]


# The option groups every command that runs the engine shares (eval, robustness, embed): each group is declared once
# here, added to a command by its decorator, and handed to the command as one record (`run.job`).
def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


DATA_SELECTION_OPTIONS = (
    _option("split", Annotated[Optional[str], typer.Option(help="evaluate only this split")], None),
    _option("categories", Annotated[Optional[str], typer.Option(help="comma-separated categories to keep")], None),
    _option(
        "sources",
        Annotated[Optional[str], typer.Option(help="comma-separated sources to keep (real, generated)")],
        None,
    ),
    _option("limit", Annotated[Optional[int], typer.Option(min=1, help="stop after this many images")], None),
    _option(
        "streaming",
        Annotated[bool, typer.Option("--streaming", help="stream a Hugging Face dataset instead of downloading it")],
        False,
    ),
    _option(
        "allow_outside_root",
        Annotated[
            bool, typer.Option("--allow-outside-root", help="let a dataset's rows name files outside its folder")
        ],
        False,
    ),
    _option(
        "allow_url_host",
        Annotated[
            list[str], typer.Option("--allow-url-host", help="host whose image URLs may resolve to private addresses")
        ],
        [],
    ),
)

RUN_OPTIONS = (
    _option("cache", CacheOpt, None),
    _option(
        "no_cache",
        Annotated[bool, typer.Option("--no-cache", help="neither read nor write the prediction cache")],
        False,
    ),
    _option(
        "batch_size",
        Annotated[Optional[int], typer.Option(min=1, help="images per model call (default: the model's preference)")],
        None,
    ),
    _option(
        "workers",
        Annotated[
            Optional[int], typer.Option(min=1, help="background decoding threads (default: cores - 1, at most 4)")
        ],
        None,
    ),
    _option("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")], False),
    _option(
        "engine",
        Annotated[str, typer.Option(help="local (default) or ray (Ray Data actors; docs/scaling.md)")],
        "local",
    ),
    _option(
        "address",
        Annotated[
            Optional[str], typer.Option(help="Ray cluster: auto or ray://HOST:PORT (default: start a local one)")
        ],
        None,
    ),
    _option("num_gpus", Annotated[float, typer.Option(help="GPUs per Ray actor")], 0),
    _option(
        "partition_size",
        Annotated[int, typer.Option(min=1, help="images per Ray partition (the unit a re-run skips)")],
        1000,
    ),
    _option(
        "cpus_per_actor",
        Annotated[
            float,
            typer.Option(help="CPUs per Ray actor (2: room for the model's own threads; 1 for a near-free model)"),
        ],
        2,
    ),
)


def data_selection(**values: Any):
    """The DataSelection the data options describe."""
    from imagesafety.run.job import DataSelection

    return DataSelection(
        split=values["split"],
        categories=split_list(values["categories"]),
        sources=split_list(values["sources"]),
        limit=values["limit"],
        streaming=values["streaming"],
        allow_outside_root=values["allow_outside_root"],
        url_hosts=list(values["allow_url_host"]),
    )


def run_options(**values: Any):
    """The RunOptions the run options describe."""
    from imagesafety.run.engine import EngineOptions
    from imagesafety.run.job import RunOptions
    from imagesafety.store import USE_DEFAULT_CACHE

    cache = None if values["no_cache"] else (values["cache"] or USE_DEFAULT_CACHE)
    engine = EngineOptions(
        values["engine"], values["address"], values["num_gpus"], values["partition_size"], values["cpus_per_actor"]
    )
    return RunOptions(cache, values["batch_size"], values["workers"], not values["quiet"], engine)


def with_options(into: str, group: tuple[inspect.Parameter, ...], build: Callable[..., Any]):
    """Add a group's options to a command and hand it the record `build` makes of them, as the argument `into`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)  # typer needs the annotations, not their text
        own = [p for p in signature.parameters.values() if p.name != into]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {p.name: kwargs.pop(p.name, p.default) for p in group}
            return command(*args, **kwargs, **{into: build(**values)})

        wrapper.__signature__ = signature.replace(parameters=[*own, *group])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in (*own, *group)} | {
            "return": signature.return_annotation
        }
        return wrapper

    return decorate


FRAME_OPTIONS = (
    _option("max_frames", MaxFramesOpt, 64),
    _option("frame_rule", FrameRuleOpt, "max"),
    _option("fps", FpsOpt, 1.0),
    _option(
        "early_exit",
        Annotated[
            bool,
            typer.Option(
                "--early-exit",
                help="stop a video at the first frame over the threshold (the saved frames are reported)",
            ),
        ],
        False,
    ),
)

data_options = with_options("selection", DATA_SELECTION_OPTIONS, data_selection)
reading_options = with_options("frames", FRAME_OPTIONS, frame_policy)
engine_options = with_options("run", RUN_OPTIONS, run_options)
