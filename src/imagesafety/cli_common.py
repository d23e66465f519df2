"""What every command module shares: the consoles, the error exit, and option parsing."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

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
