"""The rich progress bar every long run shows (count of the unit that moves, its rate and the ETA), and the
announcement long jobs print before they start."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, from rich's smoothed speed estimate."""

    def __init__(self, unit: str = "img"):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)
        if not speed:
            return Text(f"- {unit}/s", style="progress.data.speed")
        text = f"{speed:,.1f} {unit}/s" if speed >= 0.1 else f"{1 / speed:,.0f} s/{unit}"
        return Text(text, style="progress.data.speed")


def stderr_console() -> Console:
    return Console(stderr=True)


def progress_bar(enabled: bool = True, unit: str = "img", console: Console | None = None) -> Progress:
    """A Progress with description, bar, done/total, rate, elapsed and ETA; silent when not enabled.
    Task descriptions are shown as plain text (no markup), so names like `probe:[x]` print as they are."""
    return Progress(
        TextColumn("{task.fields[label]}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or stderr_console(),
        disable=not enabled,
        transient=False,
    )


def add_task(progress: Progress, label: str, total: int | None = None, unit: str | None = None) -> int:
    """A bar named by what it does (`eval nudenet`, `fgsm eps=0.01`, `jpeg severity 3`)."""
    fields = {"label": label} | ({"unit": unit} if unit else {})
    return progress.add_task(escape(label), total=total, **fields)


def announce(message: str, enabled: bool = True, console: Console | None = None) -> None:
    """One line before a long job starts, saying how much work it is."""
    if enabled:
        (console or stderr_console()).print(Text(message, style="bold"))
