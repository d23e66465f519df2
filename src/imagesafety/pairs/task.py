"""Pair generation as an engine task: every plan of one image (edit, verify, keep or reject) is that image's work, so
`pairs generate` runs locally or on Ray workers like every other command. What a worker needs arrives as a
`PairSettings` (spec strings), from which it builds the editor, judge, planner and metrics for itself."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from imagesafety.bench.coverage import is_covered
from imagesafety.classifiers.base import ModelFailure, Prediction, SafetyClassifier, coverage
from imagesafety.data.decoding import Prepared
from imagesafety.media import FramePolicy
from imagesafety.pairs.editors import Editor
from imagesafety.pairs.plans import template_plans
from imagesafety.pairs.store import PairStore
from imagesafety.pairs.verify import Thresholds, verify_pair
from imagesafety.records.pairs import PairCandidate, parse_candidate
from imagesafety.run.runner import BatchRows, compute_isolating_failures
from imagesafety.run.tasks import SAMPLE_COLUMNS, ModelSpec, PredictionTask, row_results, sample_columns, typed_frame
from imagesafety.run.views import Views
from imagesafety.store import PredictionCache
from imagesafety.taxonomy import Taxonomy

PAIR_COLUMNS = (*SAMPLE_COLUMNS, "outcome", "error")
#: pairs are cut from an image's first frame: an edit of one frame of an animation is not a pair of images
FIRST_FRAME = FramePolicy(max_frames=1)


@dataclass(frozen=True)
class PairSettings:
    """The whole pipeline by name, as `pairs generate` takes it (what crosses to Ray workers): the editor and its
    options, the judge (the ModelSpec's model), an evidence region source, a VLM planner, the checks."""

    editor: str = "mask-composite"
    editor_options: dict[str, Any] = field(default_factory=dict)
    policy: str = "llavaguard"
    seeds: int = 3
    region: str | None = None  # evidence:SPEC
    region_margin: float = 0.02
    planner: str | None = None  # llm:MODEL
    planner_base_url: str | None = None
    lpips: bool = False
    encoder: str | None = None
    thresholds: dict[str, float] | None = None

    def build(self) -> tuple[Editor, Any, Any, Any]:
        """The editor (on the evidence region when asked), the planner, the LPIPS metric and the encoder."""
        from imagesafety.classifiers import load_classifier
        from imagesafety.encoders import load_encoder
        from imagesafety.pairs.editors import load_editor

        editor = load_editor(self.editor, **self.editor_options)
        if self.region is not None:
            from imagesafety.pairs.evidence_region import EvidenceRegionEditor

            source = self.region[len("evidence:") :] if self.region.startswith("evidence:") else ""
            if not source:
                raise ValueError(f"--region takes evidence:SPEC (a classifier spec), not {self.region!r}")
            editor = EvidenceRegionEditor(editor, load_classifier(source), self.region_margin)
        planner = None
        if self.planner is not None:
            if not self.planner.startswith("llm:"):
                raise ValueError(f"--planner takes llm:MODEL, not {self.planner!r}")
            from imagesafety.pairs.llm_plans import LLMPlanner

            planner = LLMPlanner(self.planner[4:], base_url=self.planner_base_url)
        metric = None
        if self.lpips:
            from imagesafety.pairs.verify import LPIPSMetric

            metric = LPIPSMetric()
        return editor, planner, metric, load_encoder(self.encoder) if self.encoder else None


@dataclass
class PairCounts:
    """Plans made, kept, failed and skipped for want of a judge, and the rejected attempts by reason."""

    plans: int = 0
    kept: int = 0
    rejected: int = 0
    failed_plans: int = 0
    uncovered_plans: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: PairCounts) -> None:
        self.plans += other.plans
        self.kept += other.kept
        self.rejected += other.rejected
        self.failed_plans += other.failed_plans
        self.uncovered_plans += other.uncovered_plans
        self.reasons.update(other.reasons)


@dataclass
class PairOutcome(PairCounts):
    """One image's plans: its counts, and the attempts made in this run."""

    candidates: list[PairCandidate] = field(default_factory=list)

    def to_json(self) -> str:
        record = {
            "candidates": [c.line() for c in self.candidates],
            "plans": self.plans,
            "kept": self.kept,
            "rejected": self.rejected,
            "failed_plans": self.failed_plans,
            "uncovered_plans": self.uncovered_plans,
            "reasons": dict(self.reasons),
        }
        return json.dumps(record, default=float)

    @classmethod
    def from_json(cls, text: str, source: str) -> PairOutcome:
        record = json.loads(text)
        record["candidates"] = [parse_candidate(c, source) for c in record["candidates"]]
        record["reasons"] = Counter(record["reasons"])
        return cls(**record)


def judged_categories(judge: SafetyClassifier, taxonomy: Taxonomy) -> list[str]:
    """The policy's categories the judge can confirm a flip for."""
    covers = coverage(judge)
    return [c.key for c in taxonomy if is_covered(c.key, covers)]


def reason_kind(reason: str) -> str:
    """A reason without its numbers, for counting ('SSIM 0.41 < 0.5' -> 'SSIM')."""
    return reason.split(" (")[0].split(":")[0]


class PairTask:
    """Plans, edits and verifies pairs for each image; a plan finished in an earlier run (kept, or out of seeds) is
    counted, not redone. With `log`, each image's attempts are appended to candidates.jsonl as soon as it is done (a
    Ray worker leaves that to the driver, which logs each attempt once)."""

    concurrent = 1
    frames = FIRST_FRAME

    def __init__(
        self,
        store: PairStore,
        editor: Editor,
        judge: SafetyClassifier,
        taxonomy: Taxonomy,
        judged: set[str],
        *,
        seeds: int = 3,
        thresholds: Thresholds | None = None,
        encoder: Any = None,
        planner: Any = None,
        lpips: Any = None,
        cache: PredictionCache | None = None,
        log: bool = True,
    ):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        self.folder, self.editor, self.judge, self.taxonomy, self.judged = store, editor, judge, taxonomy, judged
        self.seeds, self.thresholds, self.encoder, self.planner, self.lpips = seeds, thresholds, encoder, planner, lpips
        self.judging = PredictionTask(judge, cache)
        self.done = store.attempts()
        self.logged = {(c.image_sha256, c.category, c.seed) for attempts in self.done.values() for c in attempts}
        self.log = log
        self.name = editor.name
        self._current: tuple[Prepared, PairOutcome] | None = None

    def lookup(self, shas: list[str]) -> dict[str, Any]:
        return {}  # plans depend on the row's label and category, not only the image: resumed per plan in `compute`

    def store(self, items: list[tuple[str, PairOutcome]]) -> None:
        if self.log:
            log_new(self.folder, [c for _, outcome in items for c in outcome.candidates], self.logged)

    def prepare(self, item: Prepared, image: Image.Image) -> tuple[Prepared, Image.Image]:
        return item, image

    def compute(self, items: list[tuple[Prepared, Image.Image]]) -> list[PairOutcome]:
        """Each image's outcome, edited once: an image read as several views (a transparent one on white and on
        black) is edited on its first view, and its other views share that outcome."""
        out = []
        for item, image in items:
            if self._current is None or self._current[0] is not item:
                self._current = (item, self.plans_for(item, image))
            out.append(self._current[1])
        return out

    def combine(self, views: Views, results: list[PairOutcome]) -> PairOutcome:
        return results[0]

    def flags(self, result: PairOutcome) -> bool:
        return False

    def columns(self, rows: BatchRows) -> dict[str, list]:
        return {
            **sample_columns(rows),
            "outcome": [outcome.to_json() if outcome else None for outcome in row_results(rows)],
            "error": rows.errors,
        }

    def frame(self, columns: dict[str, list]) -> pd.DataFrame:
        return typed_frame(columns, PAIR_COLUMNS)

    def plans_for(self, item: Prepared, original: Image.Image) -> PairOutcome:
        """Every plan of one image: up to `seeds` attempts each, stopping at the first verified edit."""
        sample, sha = item.sample, str(item.sha256)
        outcome = PairOutcome()
        original_judgment: Prediction | None = None
        for plan in template_plans(sample.id, sample.label, sample.category, self.taxonomy):
            if plan.category not in self.judged:
                outcome.uncovered_plans += 1
                continue
            outcome.plans += 1
            previous = self.done.get((sha, plan.category), [])
            if any(c.kept for c in previous) or len(previous) >= self.seeds:
                outcome.kept += any(c.kept for c in previous)
                continue
            if original_judgment is None:
                original_judgment = self.judge_original(sha, original)
            if self.planner is not None:
                plan = self.planner.rewrite(plan, original, self.taxonomy)
            kept = False
            for seed in range(len(previous), self.seeds):
                candidate = self.attempt(sample, sha, original, original_judgment, plan, seed)
                outcome.candidates.append(candidate)
                if candidate.kept:
                    kept = True
                    break
                outcome.rejected += 1
                outcome.reasons.update(reason_kind(r) for r in candidate.reasons)
            outcome.kept += kept
            outcome.failed_plans += not kept
        return outcome

    def attempt(self, sample, sha: str, original, original_judgment, plan, seed: int) -> PairCandidate:
        """One edit of one plan, verified; a kept pair's images (or a rejected edit's previews) are written now."""
        attempt: dict[str, Any] = dict(
            image_sha256=sha,
            sample_id=sample.id,
            source_image=Path(sample.image_ref).name,
            category=plan.category,
            seed=seed,
            instruction=plan.instruction,
            planner=plan.planner,
            editor=self.editor.name,
            source_label=plan.source_label,
            target_label=plan.target_label,
            source_category=sample.category,
            source=sample.source,
        )
        try:
            edited = self.editor.edit(original, plan, seed)
            verdict = verify_pair(
                original,
                edited,
                plan.target_label,
                self.judge,
                self.editor.region(original, plan, seed),
                self.encoder,
                self.thresholds,
                self.lpips,
                original_judgment=original_judgment,
            )
        except Exception as exc:  # an editor error is recorded and retried with the next seed
            attempt.update(kept=False, reasons=[f"editor failed: {type(exc).__name__}: {exc}"], scores={})
        else:
            attempt.update(kept=verdict.kept, reasons=verdict.reasons, scores=verdict.scores)
            if verdict.kept:
                pair_id = hashlib.sha256(f"{sha}|{plan.category}|{seed}".encode()).hexdigest()[:16]
                original_rel, edited_rel = self.folder.save_pair(sha, pair_id, original, edited)
                attempt.update(pair_id=pair_id, original=original_rel, edited=edited_rel)
            else:  # previews, so a reviewer sees what was rejected and why
                attempt.update(
                    original_preview=self.folder.save_preview(sha[:16], original),
                    edited_preview=self.folder.save_preview(f"{sha[:16]}-{plan.category}-{seed}", edited),
                )
        return PairCandidate(**attempt)

    def judge_original(self, sha: str, image) -> Prediction | None:
        """The judge's prediction for an original image: from the cache, or computed now and cached (None if the
        judge failed on it: then each attempt judges it again)."""
        judging = self.judging
        cached = judging.lookup([sha]).get(sha)
        if cached is not None:
            return Prediction.from_dict(cached)
        prediction = compute_isolating_failures(
            judging, [judging.preparer.prepare(image) if judging.preparer is not None else image]
        )[0]
        if isinstance(prediction, ModelFailure):
            return None
        judging.store([(sha, prediction.to_dict())])
        return prediction


def logged_keys(store: PairStore) -> set[tuple[str, str, int]]:
    """(image, category, seed) of every attempt candidates.jsonl holds."""
    return {(c.image_sha256, c.category, c.seed) for c in store.candidates()}


def log_new(store: PairStore, candidates: list[PairCandidate], logged: set[tuple[str, str, int]]) -> int:
    """Append the attempts not in `logged` (which grows by them); how many."""
    fresh = [c for c in candidates if (c.image_sha256, c.category, c.seed) not in logged]
    if fresh:
        with store.log() as append:
            for candidate in fresh:
                append(candidate)
                logged.add((candidate.image_sha256, candidate.category, candidate.seed))
    return len(fresh)


def pair_task(
    _: str | None,
    *,
    model: ModelSpec,
    cache: PredictionCache | None,
    frames: FramePolicy,
    out: str,
    pairs: dict[str, Any],
    log: bool = False,
) -> PairTask:
    """`pairs`: the judge `model.spec` names and the pipeline `pairs` describes (PairSettings' fields), writing
    images under `out` (a folder every worker can reach)."""
    from imagesafety import registry
    from imagesafety.taxonomy import load_taxonomy

    settings = PairSettings(**pairs)
    judge = registry.build("classifier", model.spec, **model.options)
    editor, planner, metric, encoder = settings.build()
    taxonomy = load_taxonomy(settings.policy)
    return PairTask(
        PairStore(out).create(),
        editor,
        judge,
        taxonomy,
        set(judged_categories(judge, taxonomy)),
        seeds=settings.seeds,
        thresholds=Thresholds(**settings.thresholds) if settings.thresholds else None,
        encoder=encoder,
        planner=planner,
        lpips=metric,
        cache=cache,
        log=log,
    )
