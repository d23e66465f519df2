"""Model cards as typed records: the JSON beside a saved model of ours (guard heads, HySAC models, LoRA adapters).

Each card names its format (`imagesafety-guard/2`, ...); a card is validated once where it is read, older formats
go through their migration, and a card that fails names the file and the field in one line."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from pydantic import ValidationError

from imagesafety.records.base import Record, json_schema, one_line


class CardError(ValueError):
    """A model folder that is missing a file, has another format, or whose card or weights are not as recorded."""


class ModelCard(Record):
    """What every card records: its format and, when the model has a weights file, the file and its sha256."""

    FORMATS: ClassVar[tuple[str, ...]] = ()  # the current format first, then older ones it migrates from

    format: str
    weights_file: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """An older format's card as the current format (the current format unchanged)."""
        return data

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class GuardCard(ModelCard):
    """A guard head over an encoder's embeddings (`imagesafety guard train`)."""

    FORMATS = ("imagesafety-guard/2", "imagesafety-guard/1")

    format: Literal["imagesafety-guard/2"]
    name: str
    encoder: str
    encoder_identity: str | None = None
    head: Literal["linear", "mlp"]
    hidden: int = 256
    embed_dim: int
    outputs: list[str]
    thresholds: dict[str, float]
    threshold_rule: Any = None
    taxonomy: dict[str, Any] | None = None
    training: dict[str, Any] = {}
    metrics: dict[str, Any] = {}

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("format") != "imagesafety-guard/1":
            return data
        # guard/1 hashed the tensors, not the file, and named no weights file: its sha256 is the model's version,
        # never a file digest to check (`probe` reads the weights from guard.safetensors)
        return {**data, "format": "imagesafety-guard/2"}


class HysacCard(ModelCard):
    """A HySAC model trained or calibrated here (`imagesafety hysac train` / `calibrate`)."""

    FORMATS = ("imagesafety-hysac/1",)

    format: Literal["imagesafety-hysac/1"]
    mode: Literal["light", "lora"]
    embed_dim: int
    curv_init: float = 1.0
    curvature: float | None = None
    threshold: float | None = None
    threshold_rule: str | None = None
    bounds: dict[str, dict[str, float]] = {}
    order: dict[str, Any] | None = None
    training: dict[str, Any] = {}
    encoder: str | None = None
    encoder_identity: str | None = None
    in_dim: int | None = None
    backbone: str | None = None
    backbone_identity: str | None = None
    lora: Any = None
    calibration: dict[str, Any] | None = None
    category_thresholds: dict[str, Any] | None = None


class LoraCard(ModelCard):
    """A LoRA adapter of a vision-language model (`imagesafety perspective train`)."""

    FORMATS = ("imagesafety-lora/1",)

    format: Literal["imagesafety-lora/1"]
    base_model: str
    base_model_identity: str | None = None
    trainset: str
    trainset_sha256: str | None = None
    examples: int
    steps: int
    epochs: int
    lora: dict[str, Any]
    lr: float
    accumulation: int
    world_size: int
    examples_per_step: int


C = TypeVar("C", bound=ModelCard)


def card_kind(fmt: str) -> type[ModelCard]:
    """The record of a card format (current or older)."""
    for kind in (GuardCard, HysacCard, LoraCard):
        if fmt in kind.FORMATS:
            return kind
    raise CardError(f"unknown card format {fmt!r}")


def parse_card(data: Any, kind: type[C], source: str) -> C:
    """A card of `kind` from parsed JSON, migrated from an older format; CardError names `source`, and the field."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: not a model card (a JSON object is expected)")
    fmt = data.get("format")
    if fmt not in kind.FORMATS:
        raise CardError(f"{source}: unknown format {fmt!r} (supported: {', '.join(kind.FORMATS)})")
    try:
        return kind.model_validate(kind.migrate(data))
    except ValidationError as exc:
        raise CardError(f"{source}: {one_line(exc)}") from None


def card_schema(kind: type[ModelCard]) -> dict[str, Any]:
    """The JSON Schema of a card's current format."""
    return json_schema(kind)


def guard_card_schema() -> dict[str, Any]:
    return card_schema(GuardCard)


def hysac_card_schema() -> dict[str, Any]:
    return card_schema(HysacCard)


def lora_card_schema() -> dict[str, Any]:
    return card_schema(LoraCard)
