"""`evaluate`: the effectiveness benchmark as one call (predict, threshold, metrics, report files)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imagesafety import __version__
from imagesafety.bench.metrics import f1_optimal_threshold, grouped_metrics
from imagesafety.bench.pair_metrics import pair_metrics
from imagesafety.bench.runner import Runner, RunStats, default_workers
from imagesafety.classifiers.base import SafetyClassifier, cache_key
from imagesafety.classifiers.registry import load_classifier
from imagesafety.data import Dataset, load_dataset, select_samples
from imagesafety.store import PredictionCache

USE_DEFAULT_CACHE = "default"


@dataclass
class EvalResult:
    """Everything an evaluation produced: per-image predictions, metrics, and the files written."""

    predictions: pd.DataFrame
    metrics: dict[str, Any]
    stats: RunStats
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def f1(self) -> float | None:
        return self.metrics["overall"]["f1"]["value"]


def open_cache(cache: PredictionCache | str | Path | None) -> PredictionCache | None:
    """The cache to use: an instance, a path, the default location (`"default"`), or None for no cache."""
    if cache is None or isinstance(cache, PredictionCache):
        return cache
    return PredictionCache(None if str(cache) == USE_DEFAULT_CACHE else cache)


def known_total(dataset: Dataset, limit: int | None, filtered: bool) -> int | None:
    """How many samples a run will see, when that is cheap to know (for the progress bar's ETA)."""
    if filtered:
        return None
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None
    return min(size, limit) if limit is not None else size


def evaluate(
    classifier: str | SafetyClassifier,
    dataset: str | Path | Dataset,
    out_dir: str | Path | None = None,
    *,
    threshold: float | None = None,
    calibrate: str | None = None,
    split: str | None = None,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    cache: PredictionCache | str | Path | None = USE_DEFAULT_CACHE,
    batch_size: int | None = None,
    workers: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    html: bool = True,
    classifier_options: dict[str, Any] | None = None,
    engine: str = "local",
    address: str | None = None,
    num_gpus: float = 0,
    partition_size: int = 1000,
    streaming: bool = False,
) -> EvalResult:
    """Benchmark `classifier` on `dataset` per category and per source; write reports to `out_dir` if given.

    Threshold: `threshold` if given; else, with `calibrate=SPLIT`, the F1-optimal threshold on that
    split (whose images are then left out of the metrics); else the classifier's own.
    `engine="ray"` runs the predictions on a Ray cluster (`address`, default: start or join a local one),
    writing partitions under OUT_DIR/ray-parts that a re-run skips.
    """
    if threshold is not None and calibrate is not None:
        raise ValueError("give either a threshold or a calibration split, not both")
    clf = load_classifier(classifier, **(classifier_options or {})) if isinstance(classifier, str) else classifier
    splits = sorted({split, calibrate} - {None}) if split else None  # calibrating alone reports on every other split
    data = load_dataset(dataset, splits=splits, streaming=streaming) if isinstance(dataset, (str, Path)) else dataset
    selected = select_samples(data, categories, sources, splits, limit)
    batch_size = batch_size or getattr(clf, "preferred_batch_size", 16)
    runner = Runner.for_classifier(clf, open_cache(cache), batch_size=batch_size, workers=workers or default_workers(), show_progress=progress)
    started = time.time()
    if engine == "ray":
        if not isinstance(classifier, str):
            raise ValueError("--engine ray builds the classifier on each worker: give it as a spec string (e.g. nudenet)")
        from imagesafety.bench.engines.ray_engine import run_on_ray

        parts = Path(out_dir) / "ray-parts" if out_dir is not None else Path(tempfile.mkdtemp(prefix="imagesafety-ray-"))
        rows = run_on_ray("predict", classifier, classifier_options or {}, selected, parts, address=address, batch_size=batch_size,
                          num_gpus=num_gpus, partition_size=partition_size, progress=progress)
        runner.stats.images = runner.stats.predicted = len(rows)
        runner.stats.errors = int(rows["error"].notna().sum())
        runner.stats.seconds = time.time() - started
    elif engine == "local":
        rows = runner.run(selected, total=known_total(data, limit, bool(categories or sources or splits)))
    else:
        raise ValueError(f"unknown engine {engine!r}: use local or ray")

    threshold_info = choose_threshold(rows, clf, threshold, calibrate)
    report_rows = rows[rows["split"] != calibrate] if calibrate else rows
    if report_rows.empty:
        raise ValueError("no images left to evaluate: check --split, --categories, --sources and the dataset")
    report_rows = apply_threshold(report_rows, threshold_info["value"])
    metrics = grouped_metrics(report_rows, n_boot=n_boot, seed=seed)
    metrics = {
        "imagesafety_version": __version__,
        "classifier": {"name": clf.name, "version": str(clf.version), "config": clf.config, "cache_key": list(cache_key(clf))},
        "dataset": getattr(data, "name", str(dataset)),
        "filters": {"split": split, "categories": categories, "sources": sources, "limit": limit},
        "threshold": threshold_info,
        "run": {**runner.stats.__dict__, "started": started, "images_per_second": runner.stats.images_per_second},
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "percentile 95%"},
        **metrics,
    }
    answers = answer_summary(report_rows)
    if answers:
        metrics["answers"] = answers
    pairs = pair_metrics(report_rows)
    if pairs:
        metrics["pairs"] = pairs
    result = EvalResult(report_rows, metrics, runner.stats)
    if out_dir is not None:
        from imagesafety.bench.report import write_reports

        result.files = write_reports(result, Path(out_dir), data, html=html)
    return result


def answer_summary(rows: pd.DataFrame) -> dict | None:
    """For answer-giving models (VLMs): unsure answers and failures per category, and token use and cost."""
    import json

    raws = [(row.category, json.loads(row.raw)) for row in rows.itertuples() if isinstance(row.raw, str) and '"usage"' in row.raw]
    if not raws:
        return None
    per_category: dict = {}
    for category, raw in raws:
        block = per_category.setdefault(category or "uncategorised", {"unsure_answers": 0, "images": 0})
        block["unsure_answers"] += int(raw.get("unsure", 0))
        block["images"] += 1
    for category, part in rows[rows["error"].notna()].groupby(rows["category"].fillna("uncategorised")):
        per_category.setdefault(category, {"unsure_answers": 0, "images": 0})["failures"] = int(len(part))
    usage = {k: sum(raw["usage"].get(k, 0) for _, raw in raws) for k in ("prompt_tokens", "completion_tokens", "cost")}
    return {"per_category": per_category, "usage": usage, "unsure_answers": sum(b["unsure_answers"] for b in per_category.values())}


def choose_threshold(rows: pd.DataFrame, clf: SafetyClassifier, threshold: float | None, calibrate: str | None) -> dict:
    """The decision threshold and where it came from."""
    if threshold is not None:
        return {"value": float(threshold), "source": "user"}
    if calibrate:
        part = rows[(rows["split"] == calibrate) & rows["error"].isna() & rows["label"].notna()]
        if part.empty:
            raise ValueError(f"calibration split {calibrate!r} has no labelled images; splits present: {sorted(rows['split'].dropna().unique())}")
        value = f1_optimal_threshold(part["label"].astype(int), part["score"])
        return {"value": value, "source": f"F1-optimal on split {calibrate!r} ({len(part)} images)"}
    return {"value": float(clf.threshold), "source": "classifier default"}


def apply_threshold(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows with `decision` = score >= threshold (missing where the image failed)."""
    decision = pd.array(np.where(rows["score"].isna(), pd.NA, (rows["score"] >= threshold).astype(int)), dtype="Int64")
    return rows.assign(decision=decision)
