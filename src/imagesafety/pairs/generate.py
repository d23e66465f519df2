"""`generate_pairs`: plan, edit, verify and store counterfactual pairs, resumable per (image, category, seed).

Output folder (`PairStore`): `pairs.parquet` (two rows per kept pair: the original and the edited image, with
pair_id, role, labels, category, instruction, editor, seed and every verification score; loadable by every
command as a dataset), `images/`, and `candidates.jsonl` (every attempt, kept or rejected, with its reasons).
Each original image is judged once, through the run's cache; only edits are judged per attempt. Before any
editing, the judge's coverage of the policy is checked: plans for categories it cannot judge are skipped
(said up front), and a judge that covers none of them stops the run.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imagesafety.bench.coverage import is_covered
from imagesafety.classifiers.base import ModelFailure, Prediction, SafetyClassifier, coverage
from imagesafety.data import Dataset, select_samples
from imagesafety.data.decoding import decoded_samples
from imagesafety.pairs.editors import Editor
from imagesafety.pairs.plans import template_plans
from imagesafety.pairs.store import PairStore
from imagesafety.pairs.verify import Thresholds, verify_pair
from imagesafety.records.pairs import PairCandidate
from imagesafety.run.job import DataSelection
from imagesafety.run.progress import add_task, announce, progress_bar
from imagesafety.run.runner import compute_isolating_failures
from imagesafety.run.tasks import PredictionTask
from imagesafety.store import PredictionCache
from imagesafety.taxonomy import LLAVAGUARD, Taxonomy, load_taxonomy


@dataclass
class GenerationStats:
    plans: int = 0
    kept: int = 0
    rejected: int = 0
    skipped: int = 0
    failed_plans: int = 0
    uncovered_plans: int = 0
    reasons: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        common = "; ".join(f"{n} x {reason}" for reason, n in self.reasons.most_common(5))
        return f"rejections: {common}" if common else "no rejections"


def judged_categories(judge: SafetyClassifier, taxonomy: Taxonomy) -> list[str]:
    """The policy's categories the judge can confirm a flip for."""
    covers = coverage(judge)
    return [c.key for c in taxonomy if is_covered(c.key, covers)]


def reason_kind(reason: str) -> str:
    """A reason without its numbers, for counting ('SSIM 0.41 < 0.5' -> 'SSIM')."""
    return reason.split(" (")[0].split(":")[0]


def generate_pairs(
    dataset: str | Path | Dataset,
    out: str | Path,
    editor: Editor,
    judge: SafetyClassifier,
    *,
    policy: str | Taxonomy = LLAVAGUARD,
    seeds: int = 3,
    thresholds: Thresholds | None = None,
    encoder=None,
    split: str | None = None,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    streaming: bool = False,
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
    planner=None,
    lpips=None,
    progress: bool = True,
    cache: PredictionCache | None = None,
) -> GenerationStats:
    """Up to `seeds` attempts per plan, stopping at the first verified edit. `planner` (an LLMPlanner) rewrites
    each template instruction for the image it sees."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    taxonomy = load_taxonomy(policy)
    judged = set(judged_categories(judge, taxonomy))
    if not judged:
        raise ValueError(
            f"judge {judge.name} cannot judge any category of policy {taxonomy.name!r} "
            f"({', '.join(taxonomy.keys)}); choose a judge that covers them (a VLM, or a classifier built for them)"
        )
    if len(judged) < len(taxonomy):
        announce(
            f"judge {judge.name} judges only {', '.join(sorted(judged))} of {taxonomy.name}'s {len(taxonomy)} "
            "categories: "
            f"plans for the other {len(taxonomy) - len(judged)} are skipped"
        )
    store = PairStore(out).create()
    done = store.attempts()
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    data = selection.open(dataset)
    judging = PredictionTask(judge, cache)
    stats = GenerationStats()
    with progress_bar(progress) as bar, store.log() as log:
        task = add_task(bar, f"pairs {editor.name}", unit="plan")
        splits = [split] if split else None
        labelled = [s for s in select_samples(data, categories, sources, splits, limit) if s.label is not None]
        for item in decoded_samples(labelled):
            sample = item.sample
            if item.error is not None:
                stats.skipped += 1
                continue
            sha, original = item.sha256, item.image
            original_judgment: Prediction | None = None
            for plan in template_plans(sample.id, sample.label, sample.category, taxonomy):
                if plan.category not in judged:
                    stats.uncovered_plans += 1
                    continue
                stats.plans += 1
                previous = done.get((sha, plan.category), [])
                if any(c.kept for c in previous) or len(previous) >= seeds:
                    stats.kept += any(c.kept for c in previous)
                    bar.update(task, advance=1)
                    continue
                if original_judgment is None:
                    original_judgment = judge_once(judging, sha, original)
                if planner is not None:
                    plan = planner.rewrite(plan, original, taxonomy)
                kept = False
                for seed in range(len(previous), seeds):
                    attempt = dict(
                        image_sha256=sha,
                        sample_id=sample.id,
                        source_image=Path(sample.image_ref).name,
                        category=plan.category,
                        seed=seed,
                        instruction=plan.instruction,
                        planner=plan.planner,
                        editor=editor.name,
                        source_label=plan.source_label,
                        target_label=plan.target_label,
                        source_category=sample.category,
                        source=sample.source,
                    )
                    try:
                        edited = editor.edit(original, plan, seed)
                        verdict = verify_pair(
                            original,
                            edited,
                            plan.target_label,
                            judge,
                            editor.region(original, plan, seed),
                            encoder,
                            thresholds,
                            lpips,
                            original_judgment=original_judgment,
                        )
                    except Exception as exc:  # an editor error is recorded and retried with the next seed
                        attempt.update(kept=False, reasons=[f"editor failed: {type(exc).__name__}: {exc}"], scores={})
                    else:
                        attempt.update(kept=verdict.kept, reasons=verdict.reasons, scores=verdict.scores)
                        if verdict.kept:
                            pair_id = hashlib.sha256(f"{sha}|{plan.category}|{seed}".encode()).hexdigest()[:16]
                            original_rel, edited_rel = store.save_pair(sha, pair_id, original, edited)
                            attempt.update(pair_id=pair_id, original=original_rel, edited=edited_rel)
                        else:  # previews, so a reviewer sees what was rejected and why
                            attempt.update(
                                original_preview=store.save_preview(sha[:16], original),
                                edited_preview=store.save_preview(f"{sha[:16]}-{plan.category}-{seed}", edited),
                            )
                    candidate = PairCandidate(**attempt)
                    log(candidate)
                    if candidate.kept:
                        kept = True
                        break
                    stats.rejected += 1
                    stats.reasons.update(reason_kind(r) for r in candidate.reasons)
                stats.kept += kept
                stats.failed_plans += not kept
                bar.update(task, advance=1)
    store.write_table()
    return stats


def judge_once(judging: PredictionTask, sha: str, image) -> Prediction | None:
    """The judge's prediction for an original image: from the cache, or computed now and cached (None if the judge
    failed
    on it: then each attempt judges it again)."""
    cached = judging.lookup([sha]).get(sha)
    if cached is not None:
        return cached
    prediction = compute_isolating_failures(
        judging, [judging.preparer.prepare(image) if judging.preparer is not None else image]
    )[0]
    if isinstance(prediction, ModelFailure):
        return None
    judging.store([(sha, prediction)])
    return prediction
