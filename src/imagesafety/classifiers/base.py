"""The SafetyClassifier contract, the Prediction record every classifier returns, and the base classes ours share.

Contracts are `typing.Protocol`s checked with isinstance, never attributes read with a default: a classifier
either implements `Differentiable` (white-box attacks can run, eps conversions read its `pixel_spec`) or it
does not, and the run says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from imagesafety.media.policy import ViewsReport
from imagesafety.pixels import PixelSpec
from imagesafety.taxonomy import Taxonomy

if TYPE_CHECKING:
    from imagesafety.store import PredictionCache


@dataclass(frozen=True)
class Usage:
    """What an answer-giving model's answers cost: tokens in and out, and the endpoint's price for them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost + other.cost,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)), float(data.get("cost", 0)))

    @classmethod
    def total(cls, usages: list[Usage | None]) -> Usage | None:
        """The sum of the usages given (None when there are none)."""
        found = [u for u in usages if u is not None]
        return sum(found[1:], found[0]) if found else None


@dataclass
class Prediction:
    """One classifier's verdict on one image: unsafe probability, decision, per-category scores, raw output."""

    unsafe_score: float
    decision: int  # 1 = unsafe at the classifier's own threshold
    category_scores: dict[str, float] = field(default_factory=dict)
    raw: Any = None  # JSON-serialisable raw output (detections, response text, ...)
    views: ViewsReport | None = (
        None  # set when the image had several views (frames, backgrounds): how they were combined
    )
    usage: Usage | None = None  # answer-giving models (VLMs): tokens and cost of the answers behind this prediction

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready values; category scores, the raw output, `views` and `usage` only when set (`from_dict` reads
        every form written before). Written out field by field: `dataclasses.asdict` deep-copies and cost more than a
        cheap model's call; the smaller form halves a cached re-run's JSON parsing."""
        data: dict[str, Any] = {"unsafe_score": self.unsafe_score, "decision": self.decision}
        if self.category_scores:
            data["category_scores"] = dict(self.category_scores)
        if self.raw is not None:
            data["raw"] = copy.deepcopy(self.raw) if isinstance(self.raw, (dict, list)) else self.raw
        if self.views is not None:
            data["views"] = self.views.to_dict()
        if self.usage is not None:
            data["usage"] = asdict(self.usage)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        views = data.get("views")
        return cls(
            float(data["unsafe_score"]),
            int(data["decision"]),
            cls.category_scores_in(data),
            data.get("raw"),
            ViewsReport.from_dict(views) if views else None,
            cls.usage_in(data),
        )

    @staticmethod
    def category_scores_in(data: dict[str, Any]) -> dict[str, float]:
        """The per-category scores of a prediction's JSON form, as floats."""
        categories = data.get("category_scores")
        return {k: float(v) for k, v in categories.items()} if categories else {}

    @staticmethod
    def usage_in(data: dict[str, Any]) -> Usage | None:
        """The usage of a prediction's JSON form (cached before usage was a field, it sat in the raw answer)."""
        usage, raw = data.get("usage"), data.get("raw")
        if usage is None and isinstance(raw, dict) and isinstance(raw.get("usage"), dict):
            usage = raw["usage"]
        return Usage.from_dict(usage) if usage else None


@runtime_checkable
class SafetyClassifier(Protocol):
    """Anything that scores batches of RGB PIL images for safety.

    `config` holds every setting that changes predictions, the content identity of the weights included;
    with `name` and `version` it keys the cache.
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
    """`predict` split in two: `prepare` does the per-image CPU work (resizing, encoding) on the evaluation's
    background workers; `predict_prepared` runs the batched model."""

    def prepare(self, image: Image.Image) -> Any: ...

    def predict_prepared(self, items: list[Any]) -> list[Prediction]: ...


@runtime_checkable
class Differentiable(Protocol):
    """Torch classifiers: `input_pixels` gives the [0, 1] tensor (B, 3, H, W) the model sees (after `pixel_spec`'s
    geometry), `unsafe_logits` maps such pixels to unsafe logits with the normalisation inside, and the decision
    is logit >= `logit_threshold`. Attacks perturb `input_pixels` within an eps ball in [0, 1] units; eps in
    normalised units is converted with `pixel_spec.min_std`."""

    pixel_spec: PixelSpec

    def input_pixels(self, images: list[Image.Image]) -> Any: ...

    def unsafe_logits(self, pixels: Any) -> Any: ...

    @property
    def logit_threshold(self) -> float: ...


@runtime_checkable
class CachesAnswers(Protocol):
    """Classifiers that cache intermediate answers (one VLM response per prompt): the run hands them its cache
    (None with --no-cache) instead of their opening one themselves."""

    def attach_cache(self, cache: PredictionCache | None) -> None: ...


@runtime_checkable
class DeclaresCoverage(Protocol):
    """The categories (taxonomy keys, e.g. UnsafeBench's) a classifier was built to score; None: all of them.
    Metrics leave uncovered categories out instead of reporting an F1 that means nothing."""

    covers: frozenset[str] | None


@runtime_checkable
class TrainedOn(Protocol):
    """Classifiers trained by us record the sha256 of their training images, so an evaluation can warn on overlap."""

    def training_images(self) -> frozenset[str]: ...


@runtime_checkable
class TrainedOnHashes(Protocol):
    """Classifiers that record PDQ hashes of their training images: an evaluation warns on near-duplicates too."""

    def training_hashes(self) -> Any: ...  # (N, 32) uint8 packed PDQ hashes, or None


@runtime_checkable
class ReadsSamples(Protocol):
    """Classifiers that need the sample itself, not only its pixels (replayed responses matched by file name or id):
    `prepare_sample` runs instead of `prepare`; `predict_prepared` then gets what it returned. Their answers depend on
    the row, not the image's content, so they are never cached by image digest."""

    def prepare_sample(self, sample: Any, image: Image.Image) -> Any: ...

    def predict_prepared(self, items: list[Any]) -> list[Prediction]: ...


@runtime_checkable
class ComputesConcurrently(Protocol):
    """Classifiers whose batches may run at the same time (remote endpoints, whose transport bounds the requests): the
    engine keeps `concurrent_batches` batches in flight instead of waiting for each batch's slowest request."""

    concurrent_batches: int


@runtime_checkable
class ReportsSummary(Protocol):
    """Classifiers with something to say about a whole run, from its rows (replay: responses that matched no row)."""

    def run_summary(self, rows: Any) -> dict[str, Any]: ...


@runtime_checkable
class PaddedInput(Protocol):
    """Classifiers whose prepared input is padded around the image (NudeNet's letterbox): the rows and columns of
    the prepared input (C, H, W) that hold the image itself, so black-box attacks perturb only those."""

    def image_region(self, prepared: Any) -> tuple[int, int]: ...


@runtime_checkable
class LocatesEvidence(Protocol):
    """Detectors: the regions of an image their prediction rests on, as [x0, y0, x1, y1, weight] in the image's pixels
    (explanations add them beside the maps)."""

    def evidence_boxes(self, prediction: Prediction) -> list[list[float]]: ...


class Classifier:
    """Base of our classifiers: `predict` = `predict_prepared` over `prepare`; all categories covered by default."""

    name: str
    version: str
    taxonomy: Taxonomy
    threshold: float
    config: dict[str, Any]
    covers: frozenset[str] | None = None
    preferred_batch_size: int = 16

    def prepare(self, image: Image.Image) -> Any:
        return image

    def predict_prepared(self, items: list[Any]) -> list[Prediction]:
        raise NotImplementedError

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
        return self.predict_prepared([self.prepare(img) for img in images])


class TorchClassifier(Classifier):
    """A differentiable classifier: images -> `pixel_spec` -> [0, 1] pixels -> `unsafe_logits`; the unsafe score is
    sigmoid(logit) unless the subclass says otherwise, so its threshold sits at logit(threshold)."""

    pixel_spec: PixelSpec
    device: str = "cpu"

    def prepare(self, image: Image.Image) -> Any:
        return self.pixel_spec.prepare(image)

    def pixels(self, items: list[Any]):
        """[0, 1] tensor (B, 3, H, W) from prepared arrays."""
        return self.pixel_spec.tensor(items, self.device)

    def input_pixels(self, images: list[Image.Image]):
        return self.pixels([self.prepare(img) for img in images])

    def unsafe_logits(self, pixels):
        raise NotImplementedError

    @property
    def logit_threshold(self) -> float:
        return logit(self.threshold)


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a classifier's settings."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(classifier: SafetyClassifier, reading: dict[str, Any] | None = None) -> tuple[str, str, str]:
    """(classifier id, version, config hash): with the image sha256, the key of a cached prediction; `reading` adds
    how images are read (the frame policy), which changes the prediction of an animation."""
    config = classifier.config if reading is None else {**classifier.config, "_reading": reading}
    return (classifier.name, str(classifier.version), config_hash(config))


def coverage(classifier: SafetyClassifier) -> frozenset[str] | None:
    """The categories a classifier covers (None: all)."""
    return classifier.covers if isinstance(classifier, DeclaresCoverage) else None


@runtime_checkable
class DeclaresWeights(Protocol):
    """A classifier with weights: their content identity (a digest, or one per file), declared as an attribute and
    repeated in `config` so the cache key follows it."""

    weights: str | dict[str, str]


@runtime_checkable
class PrefersBatchSize(Protocol):
    """A classifier that says how many images it wants per call (endpoints: their concurrency)."""

    preferred_batch_size: int


def preferred_batch_size(classifier: SafetyClassifier) -> int:
    """How many images the classifier wants per call (16 when it does not say)."""
    return int(classifier.preferred_batch_size) if isinstance(classifier, PrefersBatchSize) else 16


def logit(probability: float) -> float:
    """log(p / (1 - p)): where a sigmoid score crosses `probability` (clamped away from 0 and 1)."""
    p = min(max(float(probability), 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def decide(score: float, threshold: float) -> int:
    """The binary decision for an unsafe score: unsafe when the score reaches the threshold."""
    return int(score >= threshold)
