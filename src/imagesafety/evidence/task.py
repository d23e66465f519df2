"""`explain` over many images as an engine task: each image's evidence computed by the run's engine (locally or on Ray
workers), cached per image content under the run's folder, and carried back as rows (the record as JSON, the map as
.npy bytes)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from imagesafety import registry
from imagesafety.classifiers.base import SafetyClassifier
from imagesafety.data.decoding import Prepared
from imagesafety.evidence.api import (
    Evidence,
    ExplainSettings,
    check_category,
    evidence_key,
    explain_image,
    resolve_method,
)
from imagesafety.files import atomic_path, write_atomic
from imagesafety.media import FramePolicy
from imagesafety.run.job import DataSelection, RunOptions, run_job
from imagesafety.run.runner import BatchRows
from imagesafety.run.tasks import SAMPLE_COLUMNS, ModelSpec, row_results, sample_columns, typed_frame
from imagesafety.run.views import Views, is_plain

EVIDENCE_COLUMNS = (*SAMPLE_COLUMNS, "evidence", "heatmap", "error")


class ExplainTask:
    """One classifier's evidence per image. An image read as several views (frames, backgrounds) is explained view by
    view and its evidence is the most unsafe view's (the frame is recorded), so an animation is not judged by its first
    frame. With `cache_dir`, each image's evidence is kept there by content hash as soon as it is computed."""

    concurrent = 1

    def __init__(
        self,
        classifier: SafetyClassifier,
        settings: ExplainSettings,
        cache_dir: str | Path | None = None,
        frames: FramePolicy | None = None,
    ):
        resolve_method(classifier, settings.method)
        self.classifier = classifier
        self.settings = settings
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.frames = frames or FramePolicy()
        self.name = classifier.name
        self._category_checked = settings.category is None

    def lookup(self, shas: list[str]) -> dict[str, Evidence]:
        if self.cache_dir is None:
            return {}
        found = {sha: load_evidence(self.cache_dir, sha) for sha in shas}
        return {sha: ev for sha, ev in found.items() if ev is not None}

    def store(self, items: list[tuple[str, Evidence]]) -> None:
        if self.cache_dir is not None:
            for sha, evidence in items:
                save_evidence(self.cache_dir, sha, evidence)

    def prepare(self, item: Prepared, image: Image.Image) -> Image.Image:
        return image

    def compute(self, items: list[Image.Image]) -> list[Evidence]:
        if not self._category_checked:
            check_category(self.classifier, self.settings.category, items[0])
            self._category_checked = True
        return [explain_image(self.classifier, image, self.settings) for image in items]

    def combine(self, views: Views, results: list[Evidence]) -> Evidence:
        if is_plain(views):
            return results[0]
        worst = max(range(len(results)), key=lambda i: -1.0 if results[i].score is None else results[i].score)
        return replace(results[worst], frame=views.info[worst].frame)

    def flags(self, result: Evidence) -> bool:
        return bool(result.decision)

    def columns(self, rows: BatchRows) -> dict[str, list]:
        found = row_results(rows)
        return {
            **sample_columns(rows),
            "evidence": [json.dumps(ev.record()) if ev is not None else None for ev in found],
            "heatmap": [
                heatmap_bytes(ev.heatmap) if ev is not None and ev.heatmap is not None else None for ev in found
            ],
            "error": rows.errors,
        }

    def frame(self, columns: dict[str, list]) -> pd.DataFrame:
        return typed_frame(columns, EVIDENCE_COLUMNS)


def explain_task(
    _: str | None,
    *,
    model: ModelSpec,
    cache: Any,
    frames: FramePolicy,
    settings: dict[str, Any],
    cache_dir: str | None = None,
) -> ExplainTask:
    """`explain`: the classifier `model.spec` names, explained with `settings` (ExplainSettings' fields)."""
    classifier = registry.build("classifier", model.spec, **model.options)
    return ExplainTask(classifier, ExplainSettings(**settings), cache_dir, frames)


def explain_spec(spec: str, options: dict, settings: ExplainSettings, cache_dir: Path | None) -> ModelSpec:
    """The spec Ray workers build an ExplainTask from."""
    return ModelSpec(
        "explain",
        spec,
        options,
        {"settings": asdict(settings), "cache_dir": str(cache_dir.resolve()) if cache_dir is not None else None},
    )


def evidence_of(row: dict, settings: ExplainSettings) -> Evidence:
    """A row of an explain run back as Evidence (an error row: no evidence, the error named)."""
    if isinstance(row["error"], str):  # frames hold missing text as NaN
        return Evidence(row["id"], settings.method, None, category=settings.category, error=row["error"])
    heatmap = np.load(io.BytesIO(row["heatmap"])) if isinstance(row["heatmap"], bytes) else None
    return Evidence(**{**json.loads(row["evidence"]), "id": row["id"]}, heatmap=heatmap)


def heatmap_bytes(heatmap: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(heatmap, dtype=np.float32))
    return buffer.getvalue()


def load_evidence(cache: Path, sha: str) -> Evidence | None:
    """An image's cached evidence (None when absent or damaged: it is computed again)."""
    meta, heat = cache / f"{sha}.json", cache / f"{sha}.npy"
    if not (meta.exists() and heat.exists()):
        return None
    try:
        return Evidence(**json.loads(meta.read_text()), heatmap=np.load(heat).astype(np.float32))
    except (ValueError, OSError, TypeError):
        return None


def save_evidence(cache: Path, sha: str, evidence: Evidence) -> None:
    """The map (float16) first, then the record, each written whole (a crash leaves no half entry that loads)."""
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache / f"{sha}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, evidence.heatmap.astype(np.float16))
    write_atomic(cache / f"{sha}.json", json.dumps(evidence.record()))


def explain(
    classifier: SafetyClassifier | str,
    images: Any,
    *,
    method: str = "auto",
    category: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    classifier_options: dict[str, Any] | None = None,
    spec: str | None = None,
    run: RunOptions | None = None,
    frames: FramePolicy | None = None,
    **settings: Any,
) -> list[Evidence]:
    """Evidence for every image: `images` is a list of PIL images, or a dataset (path, spec, Dataset or samples, whose
    error rows stay error rows), run by the engine `run` names (local by default). On Ray each worker builds the
    classifier from `spec` with `classifier_options` (default: `classifier` when it is a spec string). With
    `out_dir`, each image's evidence is cached there as it is computed (a re-run resumes)."""
    options = classifier_options or {}
    clf = registry.build("classifier", classifier, **options) if isinstance(classifier, str) else classifier
    spec = classifier if isinstance(classifier, str) else spec
    config = ExplainSettings(method=method, category=category, **settings)
    key = evidence_key(clf, config)
    cache = Path(out_dir) / "evidence-cache" / key if out_dir is not None else None
    task = ExplainTask(clf, config, cache, frames)
    run = replace(run or RunOptions(progress=progress), cache=None)  # evidence is cached by the task, per image
    job = run_job(
        task,
        as_samples(images),
        DataSelection(),
        run,
        remote=explain_spec(spec, options, config, cache) if spec is not None else None,
        frames=frames,
        parts_dir=Path(out_dir) / "ray-parts" / key if out_dir is not None else None,
        description=f"explain {clf.name}",
    )
    return [evidence_of(row, config) for row in job.rows.to_dict("records")]


def as_samples(images: Any) -> Any:
    """A list of PIL images as samples ids "0", "1", ... (losslessly encoded), anything else as it is (a dataset)."""
    if isinstance(images, list) and images and all(isinstance(i, Image.Image) for i in images):
        from imagesafety.data.sample import Sample

        out = []
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            out.append(Sample(str(i), buffer.getvalue()))
        return out
    return images
