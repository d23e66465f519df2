"""The task types a run computes per image (predictions, embeddings) and the one row schema of their results.

Every engine produces exactly these columns: the sample's columns (`SAMPLE_COLUMNS`), then the task's own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from imagesafety import registry
from imagesafety.classifiers.base import (
    CachesAnswers,
    ComputesConcurrently,
    Prediction,
    PreparesInput,
    ReadsSamples,
    SafetyClassifier,
    cache_key,
    config_hash,
)
from imagesafety.data.decoding import Prepared
from imagesafety.encoders.base import Encoder
from imagesafety.media import FramePolicy
from imagesafety.media.policy import ViewsReport
from imagesafety.run.runner import BatchRows, ImageTask
from imagesafety.run.views import Views, combine_embeddings, combine_predictions
from imagesafety.store import PredictionCache

SAMPLE_COLUMNS = ("id", "label", "category", "source", "split", "pair_id", "role", "image", "sha256")
PREDICTION_COLUMNS = (
    *SAMPLE_COLUMNS,
    "score",
    "classifier_decision",
    "category_scores",
    "raw",
    "error",
    "views",
    "usage",
)
EMBEDDING_COLUMNS = (*SAMPLE_COLUMNS, "text", "embedding", "error")
#: columns whose values are objects (dicts, vectors): engines that move rows as Arrow or JSON convert these
JSON_COLUMNS = ("category_scores",)
VECTOR_COLUMNS = ("embedding",)


@dataclass(frozen=True)
class ModelSpec:
    """What an engine's workers build for themselves instead of receiving objects: the task (`kind`, an entry of the
    registry's `task` kind: predict, embed, explain, pairs), its model by spec string and options, and the task's own
    settings (keyword arguments of the task's factory, checked against its signature)."""

    kind: str
    spec: str
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def sample_columns(rows: BatchRows) -> dict[str, list]:
    """The columns every result table starts with, for a batch of rows."""
    samples = rows.samples
    return {
        "id": samples.ids,
        "label": samples.labels,
        "category": samples.categories,
        "source": samples.sources,
        "split": samples.splits,
        "pair_id": samples.pair_ids,
        "role": samples.roles,
        "image": samples.image_refs(),
        "sha256": rows.shas,
    }


def row_results(rows: BatchRows) -> list[Any]:
    """Each row's result, None where the row failed."""
    if rows.errors.count(None) == len(rows.errors):
        return rows.results
    return [result if error is None else None for result, error in zip(rows.results, rows.errors)]


def prediction_columns(forms: list[dict[str, Any] | None]) -> dict[str, list]:
    """The prediction columns of a batch from its predictions' JSON forms (None: the row has none), read as
    `Prediction.from_dict` reads them (entries cached by earlier versions give the same rows)."""
    return {
        "score": [f["unsafe_score"] if f is not None else None for f in forms],  # float64 and Int64 in `frame`
        "classifier_decision": [f["decision"] if f is not None else None for f in forms],
        "category_scores": [  # without scores (most models), no call per row
            Prediction.category_scores_in(f) if f is not None and f.get("category_scores") else {} for f in forms
        ],
        "raw": [json.dumps(f["raw"]) if f is not None and f.get("raw") is not None else None for f in forms],
        "views": [
            json.dumps(ViewsReport.from_dict(f["views"]).to_dict()) if f is not None and f.get("views") else None
            for f in forms
        ],
        "usage": [  # where a usage can be: its own field, or an old entry's raw answer
            _usage_json(f) if f is not None and (f.get("usage") or isinstance(f.get("raw"), dict)) else None
            for f in forms
        ],
    }


def _usage_json(form: dict[str, Any]) -> str | None:
    usage = Prediction.usage_in(form)
    return json.dumps(asdict(usage)) if usage is not None else None


def typed_frame(columns: dict[str, list], names: tuple[str, ...]) -> pd.DataFrame:
    """Gathered columns as a frame with the schema's columns and dtypes (nullable integers for labels and
    decisions; texts as pandas infers them)."""
    typed = {name: _texts_array(values) for name, values in columns.items()}
    typed["label"] = pd.array(columns["label"], dtype="Int64")  # built typed: converting cost twice
    if "score" in columns:
        typed["score"] = pd.array(columns["score"], dtype="float64")
        typed["classifier_decision"] = pd.array(columns["classifier_decision"], dtype="Int64")
    return pd.DataFrame(typed, columns=list(names))


#: the dtype pandas infers for texts (Arrow-backed `str` from pandas 3; object before)
TEXT_DTYPE = pd.Series(["text"]).dtype
ARROW_TEXTS = isinstance(TEXT_DTYPE, pd.StringDtype) and TEXT_DTYPE.storage == "pyarrow"


def _texts_array(values: list) -> Any:
    """A column of texts (None where missing) as the array pandas would infer, made by Arrow in one call (pandas'
    own inference checked every value first, twice as slow); any other column, or one of only None, as it is."""
    if not ARROW_TEXTS:
        return values
    try:
        texts = pa.array(values, type=pa.large_string())
    except (pa.ArrowException, TypeError):
        return values
    if texts.null_count == len(texts):
        return values
    return pd.arrays.ArrowStringArray(texts, dtype=TEXT_DTYPE)


class PredictionTask:
    """Safety predictions of one classifier, cached under (classifier, version, config and frame policy hash, sha256);
    an image of several views (frames, backgrounds) is one prediction by the policy's rule.
    A classifier that caches its own answers is handed this cache (None: no caching at all).

    An image's result is its prediction's JSON form (`Prediction.to_dict`), the form the cache keeps: a cached
    re-run makes its rows from the cache's values without a Prediction per row (that cost more than reading a small
    image)."""

    def __init__(
        self,
        classifier: SafetyClassifier,
        cache: PredictionCache | None = None,
        frames: FramePolicy | None = None,
        exit_threshold: float | None = None,
    ):
        self.classifier = classifier
        self.exit_threshold = exit_threshold  # where an early exit may stop (None: the classifier's own decision)
        self.name = classifier.name
        self.frames = frames or FramePolicy()
        self.key = cache_key(classifier, {"frames": self.frames.key()})
        self.preparer = classifier if isinstance(classifier, PreparesInput) else None
        self.sampler = classifier if isinstance(classifier, ReadsSamples) else None  # checked once: per image it cost
        self.cache = None if self.sampler is not None else cache  # answers per row, not per image content
        self.concurrent = classifier.concurrent_batches if isinstance(classifier, ComputesConcurrently) else 1
        if isinstance(classifier, CachesAnswers):
            classifier.attach_cache(self.cache)

    def lookup(self, shas: list[str]) -> dict[str, dict[str, Any]]:
        if self.cache is None or not shas:
            return {}
        return self.cache.get_many(self.key, shas)

    def store(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if self.cache is not None:
            self.cache.put_many(self.key, items)

    def lookup_batches(self, digests: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Whole batches kept together by an earlier run (`KeepsBatches`)."""
        if self.cache is None or not digests:
            return {}
        return self.cache.get_batches(self.key, digests)

    def store_batches(self, items: list[tuple[str, list[dict[str, Any]]]]) -> None:
        if self.cache is not None:
            self.cache.put_batches(self.key, items)

    def prepare(self, item: Prepared, image: Image.Image) -> Any:
        if self.sampler is not None:
            return self.sampler.prepare_sample(item.sample, image)
        return self.preparer.prepare(image) if self.preparer is not None else image

    def compute(self, items: list[Any]) -> list[Prediction]:
        if self.preparer is not None:
            return self.preparer.predict_prepared(items)
        return self.classifier.predict(items)

    def combine(self, views: Views, results: list[Prediction]) -> dict[str, Any]:
        return combine_predictions(views, results, self.frames).to_dict()

    def flags(self, result: Prediction) -> bool:
        """Whether one view is flagged as the run will decide (where an early exit may stop)."""
        if self.exit_threshold is not None:
            return result.unsafe_score >= self.exit_threshold
        return bool(result.decision)

    def columns(self, rows: BatchRows) -> dict[str, list]:
        return {**sample_columns(rows), **prediction_columns(row_results(rows)), "error": rows.errors}

    def frame(self, columns: dict[str, list]) -> pd.DataFrame:
        return typed_frame(columns, PREDICTION_COLUMNS)


class EmbeddingTask:
    """Image embeddings of one encoder, cached under (encoder id, image sha256); the id carries the weights'
    identity."""

    concurrent = 1

    def __init__(self, encoder: Encoder, cache: PredictionCache | None = None, frames: FramePolicy | None = None):
        self.encoder = encoder
        self.cache = cache
        self.name = encoder.name
        self.frames = frames or FramePolicy()
        self.key = encoder_cache_key(encoder, self.frames)

    def lookup(self, shas: list[str]) -> dict[str, np.ndarray]:
        return self.cache.get_embeddings(self.key, shas) if self.cache is not None and shas else {}

    def store(self, items: list[tuple[str, np.ndarray]]) -> None:
        if self.cache is not None:
            self.cache.put_embeddings(self.key, items)

    def prepare(self, item: Prepared, image: Image.Image) -> Any:
        return self.encoder.prepare(image)

    def compute(self, items: list[Any]) -> list[np.ndarray]:
        return list(np.asarray(self.encoder.encode_prepared(items), dtype=np.float32))

    def combine(self, views: Views, results: list[np.ndarray]) -> np.ndarray:
        return combine_embeddings(views, results)

    def flags(self, result: np.ndarray) -> bool:
        return False

    def columns(self, rows: BatchRows) -> dict[str, list]:
        texts = [metadata.get("text") for metadata in rows.samples.metadata]
        return {
            **sample_columns(rows),
            "text": [text if isinstance(text, str) else None for text in texts],
            "embedding": row_results(rows),
            "error": rows.errors,
        }

    def frame(self, columns: dict[str, list]) -> pd.DataFrame:
        return typed_frame(columns, EMBEDDING_COLUMNS)


def encoder_cache_key(encoder: Encoder, frames: FramePolicy | None = None) -> str:
    """`NAME@IDENTITY`: embeddings are cached per encoder weights, not per name (and, for a frame policy other than
    the default, per policy: an animation's embedding is the mean of the frames it read)."""
    key = f"{encoder.name}@{encoder.identity}"
    if frames is not None and frames != FramePolicy():
        key += "#frames=" + config_hash(frames.key())
    return key


def build_task(spec: ModelSpec, cache: PredictionCache | None = None, frames: FramePolicy | None = None) -> ImageTask:
    """The task a spec describes, with its model built here (each Ray worker calls this for itself): the registry's
    `task` entry named by `spec.kind`, called with the spec, the cache, the frame policy and the spec's settings."""
    return registry.build("task", spec.kind, model=spec, cache=cache, frames=frames or FramePolicy(), **spec.settings)


def prediction_task(
    _: str | None,
    *,
    model: ModelSpec,
    cache: PredictionCache | None,
    frames: FramePolicy,
    exit_threshold: float | None = None,
) -> PredictionTask:
    """`predict`: the classifier `model.spec` names, through the cache."""
    classifier = registry.build("classifier", model.spec, **model.options)
    return PredictionTask(classifier, cache, frames, exit_threshold=exit_threshold)


def embedding_task(
    _: str | None, *, model: ModelSpec, cache: PredictionCache | None, frames: FramePolicy
) -> EmbeddingTask:
    """`embed`: the encoder `model.spec` names (option `device`), through the cache."""
    from imagesafety.encoders import load_encoder

    return EmbeddingTask(load_encoder(model.spec, **model.options), cache, frames)
