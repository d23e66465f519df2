"""The rich console summary of an evaluation: every name and message printed as plain text, never as markup."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imagesafety.records.metrics_document import Block, Estimate, MetricsDocument, UncoveredBlock
from imagesafety.taxonomy import category_label

SHOWN = ("f1", "precision", "recall", "auroc", "fpr")
WITH_INTERVAL = {"f1"}
ERRORS_SHOWN = 10


def _fmt(metric: Estimate, interval: bool) -> Text:
    if metric.value is None:
        return Text("–")
    lo, hi = metric.ci95
    text = Text(f"{metric.value:.3f}")
    if interval and lo is not None and hi is not None:
        text.append(f" {lo:.2f}–{hi:.2f}", style="dim")
    return text


def metrics_console_table(metrics: MetricsDocument) -> Table:
    table = Table(
        title=Text(f"{metrics.classifier.name} on {metrics.dataset} · threshold {metrics.threshold.value:.3g}")
    )
    table.add_column("group", style="bold", min_width=12)
    table.add_column("n", justify="right")
    table.add_column("err", justify="right")
    for m in SHOWN:
        table.add_column(
            ("F1 (95% CI)" if m in WITH_INTERVAL else m.upper() if len(m) <= 5 else m[:4] + "."),
            justify="right",
            no_wrap=True,
        )

    def add(name: str, block: Block, end_section: bool = False) -> None:
        if isinstance(block, UncoveredBlock):
            table.add_row(
                Text(f"{name} (not covered)", style="dim"),
                str(block.support),
                str(block.errors),
                *(Text("-", style="dim") for _ in SHOWN),
                end_section=end_section,
            )
            return
        table.add_row(
            Text(name),
            str(block.support),
            str(block.errors),
            *(_fmt(block.metric(m), m in WITH_INTERVAL) for m in SHOWN),
            end_section=end_section,
        )

    add("overall", metrics.overall, end_section=True)
    sources = list(metrics.by_source.items())
    for i, (source, block) in enumerate(sources):
        add(source, block, end_section=i == len(sources) - 1)
    for category, block in metrics.by_category.items():
        add(category_label(category), block)
    return table


def print_summary(
    metrics: MetricsDocument, files: dict | None = None, console: Console | None = None, errors: list[str] | None = None
) -> None:
    """The table, the run's counts, the first error rows by file name, warnings and the files written."""
    console = console or Console()
    console.print(metrics_console_table(metrics))
    run = metrics.run
    line = Text(f"{run.images} images: {run.predicted} predicted, {run.cached} from cache, ")
    line.append(f"{run.errors} errors", style="red" if run.errors else "green")
    line.append(f" · {run.images_per_second:.1f} img/s")
    console.print(line)
    for message in (errors or [])[:ERRORS_SHOWN]:
        console.print(Text(f"  error: {message}", style="red"))
    if run.errors > ERRORS_SHOWN:
        console.print(
            Text(f"  ... and {run.errors - ERRORS_SHOWN} more (predictions.parquet, report.html)", style="red")
        )
    cov = metrics.coverage
    if cov.uncovered:
        console.print(
            Text(f"not covered by {metrics.classifier.name}: {', '.join(cov.uncovered)} ({cov.rule})", style="dim")
        )
    for warning in metrics.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    answers = metrics.answers
    if answers:
        u = answers.usage
        console.print(
            Text(
                f"answers: {answers.unsure_answers} unsure · tokens {u.prompt_tokens} in / "
                f"{u.completion_tokens} out" + (f" · cost {u.cost:.4f}" if u.cost else "")
            )
        )
    for kind, path in (files or {}).items():
        console.print(Text(f"  {kind}: {path}"))


def print_leaderboard(board, files: dict | None = None, console: Console | None = None) -> None:
    """F1 per classifier and category on both sources pooled (the published value beside when compared), and the
    files."""
    console = console or Console()
    columns = [*board.categories, "overall"]
    table = Table(title=Text("F1, both sources" + (" · measured (published)" if board.published else "")))
    table.add_column("classifier", style="bold")
    for c in columns:
        table.add_column(Text("overall" if c == "overall" else category_label(c)), justify="right")
    both = board.cells[board.cells["source"] == "both"].set_index(["classifier", "category"])
    for run in board.runs:
        cells = []
        for c in columns:
            cell = both.loc[(run.name, c)]
            if not cell["covered"]:
                cells.append(Text("-", style="dim"))
                continue
            text = Text("n/a" if pd.isna(cell["f1"]) else f"{cell['f1']:.3f}")
            if board.published and not pd.isna(cell["published_f1"]):
                text.append(f" ({cell['published_f1']:.3f})", style="dim")
            cells.append(text)
        table.add_row(Text(run.name), *cells)
    console.print(table)
    for note in board.notes:
        console.print(Text(note, style="dim"))
    for kind, path in (files or {}).items():
        console.print(Text(f"  {kind}: {path}"))
