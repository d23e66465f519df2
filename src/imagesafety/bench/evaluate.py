"""`evaluate`: the effectiveness benchmark as one call (predict, threshold, metrics, report files).

A run that produced nothing useful fails: when every image failed, or more than `max_error_rate` of them,
`RunFailed` names the first failing files and their errors (and, for manifests, the folder relative paths
were resolved against). Categories the classifier was not built for are reported as not covered.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imagesafety import __version__, registry
from imagesafety.bench.coverage import RULE, is_covered
from imagesafety.bench.grouping import grouped
from imagesafety.bench.metrics import f1_optimal_threshold, grouped_metrics
from imagesafety.bench.pair_metrics import pair_metrics
from imagesafety.classifiers.base import (
    DeclaresWeights,
    ReportsSummary,
    SafetyClassifier,
    TrainedOn,
    TrainedOnHashes,
    Usage,
    cache_key,
    coverage,
)
from imagesafety.data import Dataset, dataset_name, dataset_summary
from imagesafety.data.sample import ResolvesPaths
from imagesafety.files import json_safe
from imagesafety.media import FramePolicy
from imagesafety.records.metrics_document import FORMAT_VERSION, MetricsDocument, parse_metrics
from imagesafety.run.engine import EngineOptions
from imagesafety.run.job import DataSelection, RunOptions, run_job
from imagesafety.run.runner import RunStats
from imagesafety.run.tasks import ModelSpec
from imagesafety.store import USE_DEFAULT_CACHE, PredictionCache

ERRORS_LISTED = 10


class RunFailed(ValueError):
    """Too many images failed for the metrics to mean anything."""


@dataclass
class EvalResult:
    """Everything an evaluation produced: per-image predictions, metrics, and the files written."""

    predictions: pd.DataFrame
    document: MetricsDocument
    stats: RunStats
    files: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The metrics as metrics.json holds them (plain JSON values, for notebooks)."""
        return self.document.to_json()

    @property
    def f1(self) -> float | None:
        return self.document.overall.f1.value

    @property
    def warnings(self) -> list[str]:
        return self.document.warnings


def first_errors(rows: pd.DataFrame, n: int = ERRORS_LISTED) -> list[str]:
    """'FILE: message' for the first `n` error rows."""
    failed = rows[rows["error"].notna()].head(n)
    return [f"{r.image if r.image != '<bytes>' else r.id}: {_message(r.image, r.error)}" for r in failed.itertuples()]


def _message(image: str, error: str) -> str:
    """The error without a leading repetition of the file name."""
    return error[len(image) + 2 :] if isinstance(error, str) and error.startswith(f"{image}: ") else str(error)


def check_errors(rows: pd.DataFrame, data: Any, max_error_rate: float) -> None:
    """RunFailed when every row failed or more than `max_error_rate` of them did."""
    n, errors = len(rows), int(rows["error"].notna().sum())
    if n == 0 or (errors < n and errors <= max_error_rate * n):
        return
    where = ""
    if isinstance(data, ResolvesPaths) and data.base_dir is not None:
        where = f"; relative paths were resolved against {data.base_dir}"
    listed = "\n  ".join(first_errors(rows))
    what = (
        "every image failed"
        if errors == n
        else f"{errors} of {n} images failed (more than --max-error-rate {max_error_rate:g})"
    )
    raise RunFailed(f"{what}{where}. The first ones:\n  {listed}")


def covered_metrics(rows: pd.DataFrame, covers: frozenset[str] | None, n_boot: int, seed: int) -> dict:
    """Metrics where overall and per-source figures use covered rows only, and uncovered categories are marked."""
    if covers is None:
        return grouped_metrics(rows, n_boot=n_boot, seed=seed) | {
            "coverage": {"covers": "all", "uncovered": [], "rule": RULE}
        }
    covered = rows["category"].map(lambda c: is_covered(c, covers)).astype(bool)
    metrics = (
        grouped_metrics(rows[covered], n_boot=n_boot, seed=seed)
        if covered.any()
        else grouped_metrics(rows.iloc[:0], n_boot, seed)
    )
    uncovered = sorted({str(c) for c in rows.loc[~covered, "category"]})

    def stub(part: pd.DataFrame, name: str) -> dict:
        return {"covered": False, "support": int(len(part)), "errors": int(part["error"].notna().sum())}

    if uncovered:
        extra = grouped(rows[~covered], stub, crossed=True)
        metrics["by_category"] = dict(sorted({**metrics["by_category"], **extra["by_category"]}.items()))
        for category, per in extra["by_category_source"].items():
            metrics["by_category_source"][category] = per
        metrics["by_category_source"] = dict(sorted(metrics["by_category_source"].items()))
    metrics["coverage"] = {"covers": sorted(covers), "uncovered": uncovered, "rule": RULE}
    return metrics


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
    engine: str | EngineOptions = "local",
    address: str | None = None,
    num_gpus: float = 0,
    partition_size: int = 1000,
    streaming: bool = False,
    max_error_rate: float = 0.5,
    covers: frozenset[str] | None | str = "declared",
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
    description: str | None = None,
    frames: FramePolicy | None = None,
) -> EvalResult:
    """Benchmark `classifier` on `dataset` per category and per source; write reports to `out_dir` if given.

    Threshold: `threshold` if given; else, with `calibrate=SPLIT`, the F1-optimal threshold on that split (whose
    images are then left out of the metrics); else the classifier's own. `covers`: the categories the metrics
    count ("declared": the classifier's own declaration; None: all). `engine="ray"` runs the predictions on a Ray
    cluster, writing partitions under OUT_DIR/ray-parts that a re-run skips. `frames`: how animations, videos and
    transparent images are read and their views combined (default: every frame up to 64, `max`).
    """
    if threshold is not None and calibrate is not None:
        raise ValueError("give either a threshold or a calibration split, not both")
    if not 0 <= max_error_rate <= 1:
        raise ValueError(f"--max-error-rate must be between 0 and 1, got {max_error_rate}")
    clf = (
        registry.build("classifier", classifier, **(classifier_options or {}))
        if isinstance(classifier, str)
        else classifier
    )
    splits = sorted({split, calibrate} - {None}) if split else None  # calibrating alone reports on every other split
    if frames is not None and frames.early_exit and calibrate is not None:
        raise ValueError(
            "--early-exit stops a video at the decision threshold, which --calibrate chooses only after the run: "
            "give --threshold, or drop --early-exit"
        )
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    engine = engine if isinstance(engine, EngineOptions) else EngineOptions(engine, address, num_gpus, partition_size)
    started = time.time()
    job = run_job(
        clf,
        dataset,
        selection,
        RunOptions(cache, batch_size, workers, progress, engine),
        remote=ModelSpec("predict", classifier, classifier_options or {}) if isinstance(classifier, str) else None,
        splits=splits,
        frames=frames,
        exit_threshold=threshold,
        parts_dir=Path(out_dir) / "ray-parts" if out_dir is not None else None,
        description=description or f"eval {clf.name}",
    )
    rows, stats, data, task, store = job.rows, job.stats, job.dataset, job.task, job.store
    if rows.empty:
        present = dataset_summary(data)
        raise ValueError(
            "no images to evaluate: the filters left nothing (categories present: "
            f"{', '.join(present['categories']) or 'none'}; "
            f"sources: {', '.join(present['sources']) or 'none'}; splits: {', '.join(present['splits']) or 'none'})"
        )
    check_errors(rows, data, max_error_rate)
    threshold_info = choose_threshold(rows, clf, threshold, calibrate)
    report_rows = rows[rows["split"] != calibrate] if calibrate else rows
    if report_rows.empty:
        raise ValueError(f"no images left to evaluate after taking out the calibration split {calibrate!r}")
    report_rows = apply_threshold(report_rows, threshold_info["value"])
    declared = coverage(clf) if covers == "declared" else covers
    metrics = covered_metrics(report_rows, declared, n_boot, seed)
    metrics = {
        "imagesafety_version": __version__,
        "classifier": {
            "name": clf.name,
            "version": str(clf.version),
            "config": clf.config,
            "cache_key": list(cache_key(clf)),
            **({"spec": classifier, "options": classifier_options or {}} if isinstance(classifier, str) else {}),
        },
        "dataset": dataset_name(data, str(dataset)),
        "filters": {"split": split, "categories": categories, "sources": sources, "limit": limit},
        "threshold": threshold_info,
        "run": {**stats.__dict__, "started": started, "images_per_second": stats.images_per_second},
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "percentile 95%"},
        "frames": frames_summary(rows, task.frames),
        **metrics,
    }
    warnings = training_overlap(clf, report_rows) + near_duplicate_overlap(clf, report_rows, data)
    if isinstance(clf, ReportsSummary):
        summary = metrics["classifier_summary"] = clf.run_summary(rows)
        warnings += summary_warnings(clf.name, summary)
    if warnings:
        metrics["warnings"] = warnings
    answers = answer_summary(report_rows)
    if answers:
        metrics["answers"] = answers
    pairs = pair_metrics(report_rows)
    if pairs:
        metrics["pairs"] = pairs
    if store is not None:
        weights = str(clf.weights) if isinstance(clf, DeclaresWeights) else None
        store.touch_model(task.key, clf.config, weights, out_dir)
    document = parse_metrics({"format_version": FORMAT_VERSION, **json_safe(metrics)}, "the metrics of this run")
    result = EvalResult(report_rows, document, stats)
    if out_dir is not None:
        from imagesafety.bench.report import write_reports

        result.files = write_reports(result, Path(out_dir), data, html=html)
    return result


def frames_summary(rows: pd.DataFrame, policy: FramePolicy) -> dict[str, Any]:
    """How images of several views were read and combined: the policy, and how many were animations, videos or
    transparent, how many were sampled (over max_frames) and how many video frames an early exit left unclassified."""
    reports = [json.loads(v) for v in rows["views"] if isinstance(v, str)]
    kinds = [r["sampling"]["kind"] for r in reports]
    return {
        "policy": policy.key(),
        "aggregate": f"{policy.rule} over frames; per frame the worse of white and black behind transparent pixels",
        "animations": kinds.count("animation"),
        "videos": kinds.count("video"),
        "transparent": sum(any(s["background"] for s in r["scores"]) for r in reports),
        "sampled": sum("evenly" in r["sampling"]["rule"] for r in reports),
        "frames_skipped_by_early_exit": sum(int(r["skipped"]) for r in reports),
    }


def training_overlap(clf: SafetyClassifier, rows: pd.DataFrame) -> list[str]:
    """A warning when evaluated images are among the classifier's own training images."""
    if not isinstance(clf, TrainedOn):
        return []
    trained = clf.training_images()
    overlap = int(rows["sha256"].isin(trained).sum()) if trained else 0
    if not overlap:
        return []
    return [
        f"{overlap} of the {len(rows)} evaluated images were used to train {clf.name}: these figures overstate it "
        "(evaluate on held-out images, e.g. --split test)"
    ]


def near_duplicate_overlap(clf: SafetyClassifier, rows: pd.DataFrame, data) -> list[str]:
    """A warning when evaluated images are near-duplicates (PDQ distance <= 31) of the classifier's training images, as
    re-encoded or resized copies are (identical files are `training_overlap`'s)."""
    if not isinstance(clf, TrainedOnHashes):
        return []
    trained = clf.training_hashes()
    if trained is None or not len(trained):
        return []
    from imagesafety.data.decoding import decoded_samples
    from imagesafety.hashes.bank import HashBank
    from imagesafety.hashes.compute import pdq

    bank = HashBank(
        ("pdq",),
        {"pdq": 31},
        {"pdq": trained},
        [str(i) for i in range(len(trained))],
        ["trained"] * len(trained),
        [""] * len(trained),
    )
    identical = set(clf.training_images()) if isinstance(clf, TrainedOn) else set()
    wanted = set(rows.loc[rows["error"].isna() & ~rows["sha256"].isin(identical), "id"])
    samples = [s for s in data if s.id in wanted] if wanted else []
    near = sum(
        item.error is None and bank.match({"pdq": [item.image]}) is not None
        for item in decoded_samples(samples, prepare=pdq)
    )
    if not near:
        return []
    return [
        f"{near} of the {len(rows)} evaluated images are near-duplicates (PDQ distance <= 31) of images {clf.name} was "
        "trained "
        "on: these figures overstate it (run `imagesafety datasets audit` to find them)"
    ]


def summary_warnings(name: str, summary: dict[str, Any]) -> list[str]:
    """What a classifier's run summary says a reader must know (rows without a recorded response, unused responses)."""
    out = []
    if summary.get("rows_without_response"):
        out.append(
            f"{name}: {summary['rows_without_response']} rows had no recorded response (counted as errors, not in the "
            "metrics)"
        )
    if summary.get("responses_matching_no_row"):
        examples = ", ".join(summary.get("unmatched_examples", [])[:3])
        out.append(
            f"{name}: {summary['responses_matching_no_row']} recorded responses matched no evaluated row (e.g. "
            f"{examples})"
        )
    if summary.get("category_mismatches"):
        out.append(
            f"{name}: {summary['category_mismatches']} rows matched a response recorded under another category: "
            "the dataset's rows may not be in the order the responses were recorded in"
        )
    return out


def answer_summary(rows: pd.DataFrame) -> dict | None:
    """For answer-giving models (VLMs): unsure answers and failures per category, and token use and cost."""
    answered = rows[rows["usage"].notna()] if "usage" in rows else rows.iloc[:0]
    if answered.empty:
        return None
    raws = answered["raw"].map(lambda r: json.loads(r) if isinstance(r, str) else {})
    usages = [Usage.from_dict(json.loads(u)) for u in answered["usage"]]
    frame = rows.assign(unsure=0, answered=False, failed=rows["error"].notna())
    frame.loc[answered.index, "unsure"] = raws.map(lambda r: int(r.get("unsure", 0)) if isinstance(r, dict) else 0)
    frame.loc[answered.index, "answered"] = True

    def block(part: pd.DataFrame, name: str) -> dict:
        return {
            "unsure_answers": int(part["unsure"].sum()),
            "images": int(part["answered"].sum()),
            "failures": int(part["failed"].sum()),
        }

    per_category = grouped(frame, block, by=("category",))["by_category"]
    usage = asdict(Usage.total(usages) or Usage())
    return {"per_category": per_category, "usage": usage, "unsure_answers": int(frame["unsure"].sum())}


def choose_threshold(rows: pd.DataFrame, clf: SafetyClassifier, threshold: float | None, calibrate: str | None) -> dict:
    """The decision threshold and where it came from."""
    if threshold is not None:
        return {"value": float(threshold), "source": "user"}
    if calibrate:
        part = rows[(rows["split"] == calibrate) & rows["error"].isna() & rows["label"].notna()]
        if part.empty:
            raise ValueError(
                f"calibration split {calibrate!r} has no labelled images; splits present: "
                f"{sorted(rows['split'].dropna().unique())}"
            )
        value = f1_optimal_threshold(part["label"].astype(int), part["score"])
        return {"value": value, "source": f"F1-optimal on split {calibrate!r} ({len(part)} images)"}
    return {"value": float(clf.threshold), "source": "classifier default"}


def apply_threshold(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows with `decision` = score >= threshold (missing where the image failed)."""
    decision = pd.array(np.where(rows["score"].isna(), pd.NA, (rows["score"] >= threshold).astype(int)), dtype="Int64")
    return rows.assign(decision=decision)
