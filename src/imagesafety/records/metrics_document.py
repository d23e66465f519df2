"""The metrics document (`metrics.json`) as a typed record: what `evaluate` writes and every reader loads.

Written from the record, validated once on read (a misspelled or unknown key is refused, naming the file and the
field), and described by a JSON Schema generated from it (`imagesafety schema metrics`,
`imagesafety/records/metrics.schema.json`). Files written before the format was versioned are format 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from imagesafety.records.base import Record, json_schema, parse_document, read_document

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "fpr", "fnr", "auroc", "auprc")


class MetricsFormatError(ValueError):
    """A metrics file that is not a metrics document of a supported format."""


class Estimate(Record):
    """A metric's point value and its percentile bootstrap 95% interval (None where undefined)."""

    value: float | None
    ci95: tuple[float | None, float | None]


class MetricBlock(Record):
    """Every metric of one group of rows (unsafe = positive), with the rows it left out."""

    support: int
    positives: int
    negatives: int
    accuracy: Estimate
    precision: Estimate
    recall: Estimate
    f1: Estimate
    fpr: Estimate
    fnr: Estimate
    auroc: Estimate
    auprc: Estimate
    errors: int
    unlabelled: int

    def metric(self, name: str) -> Estimate:
        if name not in METRIC_NAMES:
            raise KeyError(f"unknown metric {name!r}; metrics: {', '.join(METRIC_NAMES)}")
        return getattr(self, name)


class UncoveredBlock(Record):
    """A category the classifier was not built for: counted, never scored."""

    covered: Literal[False]
    support: int
    errors: int


Block = MetricBlock | UncoveredBlock


class ClassifierEntry(Record):
    """Which classifier ran: its name, version, every setting that changes predictions, and its cache key."""

    name: str
    version: str
    config: dict[str, Any]
    cache_key: list[str]
    spec: str | None = None
    options: dict[str, Any] | None = None


class Filters(Record):
    split: str | None
    categories: list[str] | None
    sources: list[str] | None
    limit: int | None


class ThresholdChoice(Record):
    """The decision threshold (unsafe when score >= value) and where it came from."""

    value: float
    source: str


class RunStatistics(Record):
    """What the run did: images from the cache, through the model, failed; its time."""

    images: int
    cached: int
    predicted: int
    errors: int
    seconds: float
    model_seconds: float
    interrupted: bool
    started: float
    images_per_second: float


class Bootstrap(Record):
    resamples: int
    seed: int
    interval: str


class FramesSummary(Record):
    """How files of several views (animations, videos, transparency) were read and combined."""

    policy: dict[str, Any]
    aggregate: str
    animations: int
    videos: int
    transparent: int
    sampled: int
    frames_skipped_by_early_exit: int


class Coverage(Record):
    """The categories the classifier covers ("all", or a list) and those of the dataset it does not."""

    covers: Literal["all"] | list[str]
    uncovered: list[str]
    rule: str


class AnswerBlock(Record):
    unsure_answers: int
    images: int
    failures: int


class Usage(Record):
    """Token use and cost of an answer-giving model (a VLM) over a run."""

    prompt_tokens: int | float = 0
    completion_tokens: int | float = 0
    cost: int | float = 0


class AnswerSummary(Record):
    per_category: dict[str, AnswerBlock]
    usage: Usage
    unsure_answers: int


class PairBlock(Record):
    pairs: int
    pair_accuracy: float
    flip_sensitivity: float
    mean_score_gap: float


class PairMetrics(Record):
    """Pair accuracy and flip sensitivity over the counterfactual pairs among the rows."""

    overall: PairBlock
    by_category: dict[str, PairBlock]


class MetricsDocument(Record):
    """One evaluation's metrics.json."""

    format_version: int = Field(default=FORMAT_VERSION, description="the metrics format; files without it are 1")
    imagesafety_version: str
    classifier: ClassifierEntry
    dataset: str
    filters: Filters
    threshold: ThresholdChoice
    run: RunStatistics
    bootstrap: Bootstrap
    frames: FramesSummary | None = None
    overall: MetricBlock
    by_category: dict[str, Block]
    by_source: dict[str, Block]
    by_category_source: dict[str, dict[str, Block]]
    coverage: Coverage
    classifier_summary: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    answers: AnswerSummary | None = None
    pairs: PairMetrics | None = None

    def to_json(self) -> dict[str, Any]:
        """The document as metrics.json holds it (optional parts only when present)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def scored_categories(self) -> list[str]:
        return [c for c, b in self.by_category.items() if isinstance(b, MetricBlock)]


def metrics_schema() -> dict[str, Any]:
    """The JSON Schema of metrics.json, generated from the record."""
    schema = json_schema(MetricsDocument)
    schema["$id"] = f"https://imagesafety.dev/schemas/metrics-{FORMAT_VERSION}.json"
    return schema


def parse_metrics(data: Any, source: str = "metrics") -> MetricsDocument:
    """A metrics document from parsed JSON; MetricsFormatError names `source`, the field and the problem in one line."""
    return parse_document(MetricsDocument, data, source, "metrics", SUPPORTED_VERSIONS, MetricsFormatError)


def load_metrics(path: str | Path) -> MetricsDocument:
    """Read and validate a metrics.json."""
    return parse_metrics(read_document(path, "metrics", MetricsFormatError), str(path))
