"""`generate_pairs`: plan, edit, verify and store counterfactual pairs, resumable per (image, category, seed).

Output folder: `pairs.parquet` (two rows per kept pair: the original and the edited image, with
pair_id, role, labels, category, instruction, editor, seed and every verification score; loadable by
every command as a dataset), `images/`, and `candidates.jsonl` (every attempt, kept or rejected, with
its reasons): the record that makes a re-run skip finished work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imagesafety.bench.progress import progress_bar
from imagesafety.classifiers.base import SafetyClassifier
from imagesafety.data import Dataset, load_dataset, select_samples
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes
from imagesafety.pairs.editors import Editor
from imagesafety.pairs.plans import template_plans
from imagesafety.pairs.verify import Thresholds, verify_pair
from imagesafety.taxonomy import LLAVAGUARD, Taxonomy, load_taxonomy


@dataclass
class GenerationStats:
    plans: int = 0
    kept: int = 0
    rejected: int = 0
    skipped: int = 0
    failed_plans: int = 0


def generate_pairs(dataset: str | Path | Dataset, out: str | Path, editor: Editor, judge: SafetyClassifier, *,
                   policy: str | Taxonomy = LLAVAGUARD, seeds: int = 3, thresholds: Thresholds | None = None, encoder=None,
                   limit: int | None = None, planner=None, lpips=None, progress: bool = True) -> GenerationStats:
    """Up to `seeds` attempts per plan, stopping at the first verified edit. `planner` (an LLMPlanner) rewrites
    each template instruction for the image it sees."""
    taxonomy = load_taxonomy(policy)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    log_path = out / "candidates.jsonl"
    done: dict[tuple[str, str], list[dict]] = {}
    if log_path.is_file():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                c = json.loads(line)
                done.setdefault((c["image_sha256"], c["category"]), []).append(c)
    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    stats = GenerationStats()
    with progress_bar(progress, unit="plan") as bar, log_path.open("a", encoding="utf-8") as log:
        task = bar.add_task(f"pairs {editor.name}", total=None)
        for sample in select_samples(data, limit=limit):
            if sample.label is None:
                continue
            try:
                raw = sample.load_bytes()
                original = decode_image(raw, name=sample.image_ref)
            except ImageDecodeError:
                stats.skipped += 1
                continue
            sha = sha256_bytes(raw)
            for plan in template_plans(sample.id, sample.label, sample.category, taxonomy):
                stats.plans += 1
                previous = done.get((sha, plan.category), [])
                if any(c["kept"] for c in previous) or len(previous) >= seeds:
                    stats.kept += any(c["kept"] for c in previous)
                    continue
                if planner is not None:
                    plan = planner.rewrite(plan, original, taxonomy)
                kept = False
                for seed in range(len(previous), seeds):
                    candidate = {"image_sha256": sha, "sample_id": sample.id, "category": plan.category, "seed": seed,
                                 "instruction": plan.instruction, "planner": plan.planner, "editor": editor.name, "source_label": plan.source_label,
                                 "target_label": plan.target_label, "source_category": sample.category, "source": sample.source}
                    try:
                        edited = editor.edit(original, plan, seed)
                        verdict = verify_pair(original, edited, plan.target_label, judge, editor.region(original, plan, seed), encoder,
                                              thresholds, lpips)
                    except Exception as exc:  # an editor error is recorded and retried with the next seed
                        candidate.update(kept=False, reasons=[f"editor failed: {type(exc).__name__}: {exc}"], scores={})
                    else:
                        candidate.update(kept=verdict.kept, reasons=verdict.reasons, scores=verdict.scores)
                        if verdict.kept:
                            pair_id = hashlib.sha256(f"{sha}|{plan.category}|{seed}".encode()).hexdigest()[:16]
                            original_path, edited_path = out / "images" / f"{sha[:16]}.png", out / "images" / f"{pair_id}-edited.png"
                            if not original_path.exists():
                                original.save(original_path)
                            edited.save(edited_path)
                            candidate.update(pair_id=pair_id, original=str(original_path.relative_to(out)), edited=str(edited_path.relative_to(out)))
                    log.write(json.dumps(candidate, default=float) + "\n")
                    log.flush()
                    if candidate["kept"]:
                        kept = True
                        break
                    stats.rejected += 1
                stats.kept += kept
                stats.failed_plans += not kept
                bar.update(task, advance=1)
    write_pair_table(out)
    return stats


def write_pair_table(out: Path) -> Path:
    """pairs.parquet from candidates.jsonl: the original and the edited image of every kept candidate."""
    from imagesafety.pairs.gallery import read_reviews

    reviews = read_reviews(out)
    rows = []
    log = out / "candidates.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        c = json.loads(line)
        if not c.get("kept"):
            continue
        common = {"pair_id": c["pair_id"], "category": c["category"], "instruction": c["instruction"], "editor": c["editor"], "seed": c["seed"],
                  "source": c.get("source"), "scores": json.dumps(c["scores"], default=float), "review": reviews.get(c["pair_id"])}
        rows.append({"id": f"{c['pair_id']}:original", "path": c["original"], "label": c["source_label"], "role": "original", **common})
        rows.append({"id": f"{c['pair_id']}:edited", "path": c["edited"], "label": c["target_label"], "role": "edited", **common})
    table = pd.DataFrame(rows, columns=["id", "path", "label", "role", "pair_id", "category", "instruction", "editor", "seed", "source", "scores",
                                        "review"])
    path = out / "pairs.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
