"""The robustness document (`robustness.json`) as a typed record: what `robustness` writes and its report reads.

Validated once where it is built and where it is read (`load_robustness`), written from the record; its JSON Schema
is `imagesafety schema robustness`. Files written before the format was versioned are format 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from imagesafety.records.base import Record, json_schema, parse_document, read_document
from imagesafety.records.metrics_document import ClassifierEntry

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class RobustnessFormatError(ValueError):
    """A robustness file that is not a robustness document of a supported format."""


class AttackProtocol(Record):
    """UnsafeBench's protocol as run: the K correctly classified images attacked, the budget in both units."""

    k: int
    seed: int
    attacked: int
    excluded_misclassified: int
    eps: float
    eps_space: Literal["pixel", "normalized"]
    eps_pixel_units: float
    eps_normalized_units: float
    input_std: float
    steps: int
    success: str


class CleanFigures(Record):
    accuracy: float | None
    f1: float | None


class AttackBlock(Record):
    """Robust accuracy (1 - attack success rate) of a group, with the mean sizes of its perturbations."""

    robust_accuracy: float
    attacked: int
    mean_linf: float
    mean_l2: float
    mean_mse: float


class AttackOutcome(Record):
    overall: AttackBlock
    by_category: dict[str, AttackBlock]
    by_source: dict[str, AttackBlock]


class NoneAttacked(Record):
    """An attack with no image to attack."""

    attacked: Literal[0]


class CorruptionFigures(Record):
    """One corruption at one severity: the figures, and their change from the clean run."""

    accuracy: float | None
    f1: float | None
    recall: float | None
    fpr: float | None
    accuracy_drop: float | None
    f1_drop: float | None


class RobustnessDocument(Record):
    """One robustness run's robustness.json."""

    format_version: int = Field(default=FORMAT_VERSION, description="the robustness format; files without it are 1")
    classifier: ClassifierEntry
    dataset: str
    protocol: AttackProtocol
    clean: CleanFigures
    attacks: dict[str, AttackOutcome | NoneAttacked]
    eps_curves: dict[str, dict[str, float | None]]
    corruptions: dict[str, dict[str, CorruptionFigures]]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


def robustness_schema() -> dict[str, Any]:
    """The JSON Schema of robustness.json, generated from the record."""
    return json_schema(RobustnessDocument)


def parse_robustness(data: Any, source: str = "robustness") -> RobustnessDocument:
    return parse_document(RobustnessDocument, data, source, "robustness", SUPPORTED_VERSIONS, RobustnessFormatError)


def load_robustness(path: str | Path) -> RobustnessDocument:
    return parse_robustness(read_document(path, "robustness", RobustnessFormatError), str(path))
