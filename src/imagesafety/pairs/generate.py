"""`generate_pairs`: plan, edit, verify and store counterfactual pairs, resumable per (image, category, seed).

Output folder (`PairStore`): `pairs.parquet` (two rows per kept pair: the original and the edited image, with
pair_id, role, labels, category, instruction, editor, seed and every verification score; loadable by every
command as a dataset), `images/`, and `candidates.jsonl` (every attempt, kept or rejected, with its reasons).
Each original image is judged once, through the run's cache; only edits are judged per attempt. Before any
editing, the judge's coverage of the policy is checked: plans for categories it cannot judge are skipped
(said up front), and a judge that covers none of them stops the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from imagesafety.classifiers.base import SafetyClassifier, cache_key, config_hash
from imagesafety.data import Dataset, select_samples
from imagesafety.pairs.editors import Editor
from imagesafety.pairs.store import PairStore
from imagesafety.pairs.task import (
    PairCounts,
    PairOutcome,
    PairSettings,
    PairTask,
    judged_categories,
    log_new,
    logged_keys,
)
from imagesafety.pairs.verify import Thresholds
from imagesafety.run.job import DataSelection, RunOptions, run_job
from imagesafety.run.progress import announce
from imagesafety.run.runner import RunInterrupted
from imagesafety.run.tasks import ModelSpec
from imagesafety.store import PredictionCache
from imagesafety.taxonomy import LLAVAGUARD, Taxonomy, load_taxonomy


@dataclass
class GenerationStats(PairCounts):
    """A run's counts, and the images that could not be read."""

    skipped: int = 0

    def summary(self) -> str:
        common = "; ".join(f"{n} x {reason}" for reason, n in self.reasons.most_common(5))
        return f"rejections: {common}" if common else "no rejections"


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
    run: RunOptions | None = None,
    remote: tuple[str, PairSettings] | None = None,
) -> GenerationStats:
    """Up to `seeds` attempts per plan, stopping at the first verified edit. `planner` (an LLMPlanner) rewrites
    each template instruction for the image it sees. Runs on the engine `run` names: on Ray, every worker builds the
    pipeline from `remote` (the judge's spec and the PairSettings the objects were built from) and writes images
    under `out`, which must be a folder every node reaches."""
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
    task = PairTask(
        store,
        editor,
        judge,
        taxonomy,
        judged,
        seeds=seeds,
        thresholds=thresholds,
        encoder=encoder,
        planner=planner,
        lpips=lpips,
        cache=cache,
    )
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    wanted = [split] if split else None
    labelled = (
        s for s in select_samples(selection.open(dataset), categories, sources, wanted, limit) if s.label is not None
    )
    spec = None
    if remote is not None:
        judge_spec, settings = remote
        pairs = {**asdict(settings), "seeds": seeds, "thresholds": asdict(thresholds) if thresholds else None}
        spec = ModelSpec("pairs", judge_spec, {}, {"out": str(store.out.resolve()), "pairs": pairs, "log": False})
    options = replace(run or RunOptions(progress=progress), cache=None, batch_size=1)
    finished = {  # what a Ray partition's rows depend on: the judge by its content key, the editor, the settings
        "judge": list(cache_key(judge)),
        "editor": [editor.name, editor.config],
        "pairs": spec.settings if spec else None,
    }
    parts = store.out / "ray-parts" / config_hash(finished)
    try:
        job = run_job(
            task, labelled, DataSelection(), options, remote=spec, parts_dir=parts, description=f"pairs {editor.name}"
        )
    except RunInterrupted as stop:  # what finished is logged (locally it already is) before the interrupt goes on
        tally(store, stop.rows)
        raise
    stats = tally(store, job.rows)
    missing = [c.edited for c in store.candidates() if c.kept and c.edited and not (store.out / c.edited).is_file()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} kept pairs have no image under {store.out} (first: {missing[0]}): on Ray, workers write "
            "the images, so --out must be a folder every node of the cluster shares"
        )
    store.write_table()
    return stats


def tally(store: PairStore, rows: pd.DataFrame) -> GenerationStats:
    """The run's counts from its rows, logging any attempt candidates.jsonl does not hold yet (a Ray worker's)."""
    stats, logged = GenerationStats(), logged_keys(store)
    for row in rows.to_dict("records"):
        if isinstance(row["error"], str):
            stats.skipped += 1
            continue
        outcome = PairOutcome.from_json(row["outcome"], f"row {row['id']}")
        log_new(store, outcome.candidates, logged)
        stats.add(outcome)
    return stats
