"""The SafetyClassifier contract and the Prediction record every classifier returns."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from imagesafety.taxonomy import Taxonomy


@dataclass
class Prediction:
    """One classifier's verdict on one image: unsafe probability, decision, per-category scores, raw output."""

    unsafe_score: float
    decision: int  # 1 = unsafe at the classifier's own threshold
    category_scores: dict[str, float] = field(default_factory=dict)
    raw: Any = None  # JSON-serialisable raw output (detections, response text, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        return cls(
            unsafe_score=float(data["unsafe_score"]),
            decision=int(data["decision"]),
            category_scores={k: float(v) for k, v in (data.get("category_scores") or {}).items()},
            raw=data.get("raw"),
        )


@runtime_checkable
class SafetyClassifier(Protocol):
    """Anything that scores batches of RGB PIL images for safety.

    `config` holds every setting that changes predictions; with `name` and `version` it keys the cache.
    """

    name: str
    version: str
    taxonomy: Taxonomy
    threshold: float
    config: dict[str, Any]

    def predict(self, images: list[Image.Image]) -> list[Prediction]: ...


class ModelFailure(str):
    """The model failed on one input: recorded as that row's error, never cached. A classifier may return one
    in place of a Prediction (a VLM request that failed after its retries) instead of raising."""


class FatalModelError(RuntimeError):
    """The model cannot work at all (an endpoint that refuses images, bad credentials): stop the run now."""


@runtime_checkable
class PreparesInput(Protocol):
    """Optional split of `predict`: `prepare` does the per-image CPU work (resizing, normalising) and
    runs in the evaluation's background workers; `predict_prepared` runs the batched model."""

    def prepare(self, image: Image.Image) -> Any: ...

    def predict_prepared(self, items: list[Any]) -> list[Prediction]: ...


@runtime_checkable
class Differentiable(Protocol):
    """Torch classifiers: `input_pixels` gives the [0, 1] tensor (B, 3, H, W) the model sees (after its resizing),
    and `unsafe_logits` maps such pixels to unsafe logits, normalisation inside; the decision is
    logit >= `logit_threshold`. Attacks perturb `input_pixels` within an eps ball in [0, 1] units."""

    def input_pixels(self, images: list[Image.Image]) -> Any: ...

    def unsafe_logits(self, pixels: Any) -> Any: ...

    @property
    def logit_threshold(self) -> float: ...


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a classifier's settings."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(classifier: SafetyClassifier) -> tuple[str, str, str]:
    """(classifier id, version, config hash): with the image sha256, the key of a cached prediction."""
    return (classifier.name, str(classifier.version), config_hash(classifier.config))


def logit(probability: float) -> float:
    """log(p / (1 - p)): where a sigmoid score crosses `probability`."""
    return math.log(probability / (1 - probability))


class EncoderInput:
    """For classifiers over a torch CLIP encoder (`self.encoder`): the encoder's pixels are the attackable input,
    and a sigmoid score at `self.threshold` means a logit at logit(threshold)."""

    def input_pixels(self, images: list[Image.Image]) -> Any:
        return self.encoder.pixels(images)

    @property
    def logit_threshold(self) -> float:
        return logit(self.threshold)


def decide(score: float, threshold: float) -> int:
    """The binary decision for an unsafe score: unsafe when the score reaches the threshold."""
    return int(score >= threshold)
