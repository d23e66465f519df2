"""The rich console summary of an evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from imagesafety.bench.report.html import category_label

SHOWN = ("f1", "precision", "recall", "auroc", "fpr")
WITH_INTERVAL = {"f1"}


def _fmt(metric: dict | None, interval: bool) -> str:
    if not metric or metric.get("value") is None:
        return "–"
    lo, hi = metric.get("ci95", [None, None])
    return f"{metric['value']:.3f}" + (f" [dim]{lo:.2f}–{hi:.2f}[/dim]" if interval and lo is not None else "")


def metrics_console_table(metrics: dict) -> Table:
    table = Table(title=f"{metrics['classifier']['name']} on {metrics['dataset']} · threshold {metrics['threshold']['value']:.3g}")
    table.add_column("group", style="bold", min_width=12)
    table.add_column("n", justify="right")
    table.add_column("err", justify="right")
    for m in SHOWN:
        table.add_column(("F1 (95% CI)" if m in WITH_INTERVAL else m.upper() if len(m) <= 5 else m[:4] + "."), justify="right", no_wrap=True)

    def add(name: str, block: dict, end_section: bool = False) -> None:
        table.add_row(name, str(block["support"]), str(block.get("errors", 0)), *(_fmt(block.get(m), m in WITH_INTERVAL) for m in SHOWN),
                      end_section=end_section)

    add("overall", metrics["overall"], end_section=True)
    sources = list(metrics["by_source"].items())
    for i, (source, block) in enumerate(sources):
        add(source, block, end_section=i == len(sources) - 1)
    for category, block in metrics["by_category"].items():
        add(category_label(category), block)
    return table


def print_summary(metrics: dict, files: dict | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(metrics_console_table(metrics))
    run = metrics["run"]
    console.print(
        f"{run['images']} images: {run['predicted']} predicted, {run['cached']} from cache, "
        f"[{'red' if run['errors'] else 'green'}]{run['errors']} errors[/] · {run['images_per_second']:.1f} img/s"
    )
    answers = metrics.get("answers")
    if answers:
        u = answers["usage"]
        console.print(f"answers: {answers['unsure_answers']} unsure · tokens {u['prompt_tokens']} in / {u['completion_tokens']} out"
                      + (f" · cost {u['cost']:.4f}" if u["cost"] else ""))
    for kind, path in (files or {}).items():
        console.print(f"  {kind}: {path}")
