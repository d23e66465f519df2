"""The leaderboard: classifier x category F1 per source (real, generated, both), read from finished runs' metrics.json,
optionally beside published figures. `build_leaderboard(run folders)` runs no model; `write_leaderboard` writes
leaderboard.html / .csv / .md / .tex (see `bench.report.leaderboard_files`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from imagesafety.bench.published import published_f1
from imagesafety.records.metrics_document import Block, MetricBlock, MetricsDocument, MetricsFormatError, load_metrics
from imagesafety.taxonomy import UNSAFEBENCH

SOURCES = ("real", "generated", "both")
OVERALL = "overall"


class LeaderboardError(ValueError):
    """A run folder without a usable metrics.json."""


@dataclass
class RunEntry:
    """One classifier's finished run, as the leaderboard needs it."""

    name: str
    folder: Path
    metrics: MetricsDocument

    @property
    def images_per_second(self) -> float | None:
        return self.metrics.run.images_per_second

    @property
    def cost(self) -> float | None:
        answers = self.metrics.answers
        return answers.usage.cost if answers is not None and answers.usage.prompt_tokens else None


@dataclass
class Leaderboard:
    """`cells`: one row per (classifier, source, category or 'overall') with F1, its interval, support, coverage and,
    when compared, the published F1 and the difference. `summary`: one row per (classifier, source) with precision,
    recall, FPR, images/s and cost."""

    runs: list[RunEntry]
    cells: pd.DataFrame
    summary: pd.DataFrame
    categories: list[str]
    published: str | None = None
    notes: list[str] = field(default_factory=list)
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # paired comparisons (bench.significance.pair_table)

    def f1_table(self, source: str) -> pd.DataFrame:
        """classifier x (categories + overall) F1 for one source; None where not covered or undefined."""
        part = self.cells[self.cells["source"] == source]
        table = part.pivot(index="classifier", columns="category", values="f1")
        return table.reindex(index=[r.name for r in self.runs], columns=[*self.categories, OVERALL])

    def covered_table(self, source: str) -> pd.DataFrame:
        part = self.cells[self.cells["source"] == source]
        table = part.pivot(index="classifier", columns="category", values="covered")
        return (
            table.reindex(index=[r.name for r in self.runs], columns=[*self.categories, OVERALL])
            .fillna(False)
            .astype(bool)
        )


def read_run(folder: str | Path) -> RunEntry:
    """A finished evaluation's folder (or its metrics.json)."""
    path = Path(folder)
    file = path if path.is_file() else path / "metrics.json"
    if not file.is_file():
        raise LeaderboardError(f"{path}: no metrics.json (give folders written by `imagesafety eval`)")
    try:
        metrics = load_metrics(file)
    except MetricsFormatError as exc:
        raise LeaderboardError(str(exc)) from None
    return RunEntry(metrics.classifier.name, file.parent, metrics)


RUN_ORDER = "runs.txt"


def run_folders(paths: list[str | Path]) -> list[Path]:
    """Each path is a run folder, or a folder of run folders (an `eval --classifier A --classifier B` output, whose
    runs.txt keeps the order the classifiers were given in)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file() or p.is_file():
            found.append(p)
        elif (p / RUN_ORDER).is_file():
            found.extend(
                p / line
                for line in (p / RUN_ORDER).read_text(encoding="utf-8").splitlines()
                if (p / line / "metrics.json").is_file()
            )
        elif p.is_dir() and any((q / "metrics.json").is_file() for q in p.iterdir() if q.is_dir()):
            found.extend(sorted(q for q in p.iterdir() if (q / "metrics.json").is_file()))
        else:
            raise LeaderboardError(f"{p}: neither a run folder (with metrics.json) nor a folder of run folders")
    return found


def _ordered_categories(runs: list[RunEntry]) -> list[str]:
    present = {c for r in runs for c in r.metrics.by_category}
    known = [k for k in UNSAFEBENCH.keys if k in present]
    return known + sorted(present - set(known))


def _value(block: Block | None, metric: str) -> tuple[float | None, float | None, float | None]:
    if not isinstance(block, MetricBlock):
        return None, None, None
    m = block.metric(metric)
    return m.value, m.ci95[0], m.ci95[1]


def _block(metrics: MetricsDocument, source: str, category: str) -> Block | None:
    if category == OVERALL:
        return metrics.overall if source == "both" else metrics.by_source.get(source)
    if source == "both":
        return metrics.by_category.get(category)
    return metrics.by_category_source.get(category, {}).get(source)


def build_leaderboard(runs: list[str | Path | RunEntry], compare_published: str | None = None) -> Leaderboard:
    """The leaderboard of finished runs, with the published F1 of `compare_published` ("unsafebench") beside."""
    entries = [r if isinstance(r, RunEntry) else read_run(r) for r in runs]
    if not entries:
        raise LeaderboardError("no runs to put on a leaderboard")
    names = [e.name for e in entries]
    for e in entries:  # two runs of one classifier (other options): tell them apart by folder
        if names.count(e.name) > 1:
            e.name = f"{e.name} ({e.folder.name})"
    categories = _ordered_categories(entries)
    cells, summary = [], []
    for e in entries:
        published = published_f1(compare_published, e.metrics.classifier.name) if compare_published else None
        for source in SOURCES:
            for category in [*categories, OVERALL]:
                block = _block(e.metrics, source, category)
                f1, lo, hi = _value(block, "f1")
                covered = isinstance(block, MetricBlock)
                paper = (published or {}).get(source, {}).get(category)
                cells.append(
                    {
                        "classifier": e.name,
                        "source": source,
                        "category": category,
                        "f1": f1,
                        "f1_lo": lo,
                        "f1_hi": hi,
                        "support": 0 if block is None else block.support,
                        "covered": covered,
                        "published_f1": paper,
                        "difference": None if f1 is None or paper is None else f1 - paper,
                    }
                )
            block = _block(e.metrics, source, OVERALL)
            summary.append(
                {
                    "classifier": e.name,
                    "source": source,
                    "support": 0 if block is None else block.support,
                    **{m: _value(block, m)[0] for m in ("f1", "precision", "recall", "fpr", "auroc")},
                    "images_per_second": e.images_per_second,
                    "cost": e.cost,
                    "errors": 0 if block is None else block.errors,
                }
            )
    notes = [
        "Each classifier is scored only on the categories it was built for ('-' elsewhere); its overall and "
        "per-source figures count its covered categories only."
    ]
    if compare_published:
        notes.append(f"Published: {compare_published} (arXiv v1 tables); difference = measured - published.")
    board = Leaderboard(entries, pd.DataFrame(cells), pd.DataFrame(summary), categories, compare_published, notes)
    paired = [e for e in entries if (e.folder / "predictions.parquet").is_file()]
    if len(paired) >= 2:
        from imagesafety.bench.significance import pair_table

        def covers(e: RunEntry):
            declared = e.metrics.coverage.covers
            return None if declared == "all" else frozenset(declared)

        board.pairs = pair_table([(e.name, e.folder, covers(e)) for e in paired])
        notes.append(
            "Differences between two classifiers are paired on the same images: McNemar's exact test on their "
            "decisions, "
            "Holm-corrected across the table, and a paired bootstrap 95% interval of the F1 difference "
            "(leaderboard_pairs.csv)."
        )
    return board


def unsafebench_dataset(runs: list[RunEntry]) -> bool:
    """Whether the runs were on UnsafeBench (then the published figures are shown by default)."""
    return any("unsafebench" in r.metrics.dataset.lower() for r in runs)


def leaderboard_from_folders(paths: list[str | Path], compare_published: str | None = "auto") -> Leaderboard:
    """`imagesafety leaderboard RUN...`: the leaderboard of finished runs ("auto": published figures on UnsafeBench)."""
    entries = [read_run(p) for p in run_folders(paths)]
    if compare_published == "auto":
        compare_published = "unsafebench" if unsafebench_dataset(entries) else None
    return build_leaderboard(entries, compare_published)
