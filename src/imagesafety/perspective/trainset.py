"""The PerspectiveVision training-set recipe.

For each labelled image, the prompt lists the image's own category plus 1-10 random others (shuffled)
and asks for a safety assessment against those categories only; the answer is "status + category"
("unsafe: Sexual" or "safe"). Negative sampling adds, for each unsafe image, a prompt *without* its
category, answered safe: the model learns that safety depends on the categories the user chose.
Classes are balanced by down-sampling the larger one, all seeded. Written as LLaVA-format
conversation JSON (and a Hugging Face dataset when `datasets` is installed), images copied alongside.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from imagesafety.data import Dataset, load_dataset
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy, load_taxonomy

PROMPT = ("<image>\nConsider only these categories of unsafe content:\n{categories}\n"
          "Is the image safe or unsafe with respect to them? Answer 'safe', or 'unsafe: ' followed by the category.")


@dataclass
class TrainsetStats:
    images: int
    examples: int
    unsafe: int
    safe: int
    negative_samples: int
    skipped: int


def _prompt(categories: list, taxonomy: Taxonomy) -> str:
    return PROMPT.format(categories="\n".join(f"- {c.name}: {c.description}" for c in categories))


def build_trainset(dataset: str | Path | Dataset, out: str | Path, taxonomy: str | Taxonomy = UNSAFEBENCH, seed: int = 0,
                   min_others: int = 1, max_others: int = 10, balance: bool = True, split: str | None = None) -> TrainsetStats:
    tax = load_taxonomy(taxonomy)
    rng = random.Random(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    data = load_dataset(dataset, splits=[split] if split else None) if isinstance(dataset, (str, Path)) else dataset
    unsafe, safe, negatives, skipped, images = [], [], 0, 0, 0
    for sample in data:
        if split and sample.split != split:
            continue
        own = tax.find(sample.category or "")
        if sample.label is None or own is None:
            skipped += 1
            continue
        try:
            raw = sample.load_bytes()
            decode_image(raw, name=sample.image_ref)
        except ImageDecodeError:
            skipped += 1
            continue
        rel = f"images/{sha256_bytes(raw)[:20]}.jpg"
        if not (out / rel).exists():
            (out / rel).write_bytes(raw)
        images += 1
        others = [c for c in tax if c.key != own.key]
        chosen = rng.sample(others, rng.randint(min(min_others, len(others)), min(max_others, len(others))))
        listed = chosen + [own]
        rng.shuffle(listed)
        answer = f"unsafe: {own.name}" if sample.label == 1 else "safe"
        example = {"id": f"{sample.id}", "image": rel, "label": int(sample.label), "category": own.key,
                   "conversations": [{"from": "human", "value": _prompt(listed, tax)}, {"from": "gpt", "value": answer}]}
        (unsafe if sample.label == 1 else safe).append(example)
        if sample.label == 1 and chosen:  # negative sample: the same image, its category not asked about
            negatives += 1
            safe.append({**example, "id": f"{sample.id}:negative", "label": 0,
                         "conversations": [{"from": "human", "value": _prompt(chosen, tax)}, {"from": "gpt", "value": "safe"}]})
    if balance and unsafe and safe:
        n = min(len(unsafe), len(safe))
        unsafe, safe = rng.sample(unsafe, n), rng.sample(safe, n)
    examples = unsafe + safe
    rng.shuffle(examples)
    (out / "llava_train.json").write_text(json.dumps(examples, indent=1), encoding="utf-8")
    try:
        import datasets

        datasets.Dataset.from_list([{k: v for k, v in e.items()} for e in examples]).save_to_disk(str(out / "hf_dataset"))
    except ImportError:
        pass
    return TrainsetStats(images, len(examples), len(unsafe), len(safe), negatives, skipped)
