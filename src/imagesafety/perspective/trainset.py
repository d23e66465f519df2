"""The PerspectiveVision training-set recipe.

For each labelled image, the prompt lists the image's own category plus 1-10 random others (shuffled)
and asks for a safety assessment against those categories only; the answer is "status + category"
("unsafe: Sexual" or "safe"). Negative sampling adds, for each unsafe image, a prompt *without* its
category, answered safe: the model learns that safety depends on the categories the user chose.
Classes are balanced by down-sampling the larger one, all seeded. Written as LLaVA-format
conversation JSON (and a Hugging Face dataset when `datasets` is installed), images copied alongside.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from imagesafety.data import Dataset, dataset_name, load_dataset
from imagesafety.data.decoding import decoded_samples
from imagesafety.files import write_atomic, write_json
from imagesafety.splits import choose_splits
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy, load_taxonomy

PROMPT = (
    "<image>\nConsider only these categories of unsafe content:\n{categories}\n"
    "Is the image safe or unsafe with respect to them? Answer 'safe', or 'unsafe: ' followed by the category."
)


@dataclass
class TrainsetStats:
    images: int
    examples: int
    unsafe: int
    safe: int
    negative_samples: int
    skipped: int
    validation_examples: int = 0
    splits: dict = field(default_factory=dict)


def _prompt(categories: list, taxonomy: Taxonomy) -> str:
    return PROMPT.format(categories="\n".join(f"- {c.name}: {c.description}" for c in categories))


def _examples(samples: list, tax: Taxonomy, rng: random.Random, out: Path, min_others: int, max_others: int):
    """(unsafe examples, safe examples, negative samples, skipped, images) for one group of samples."""
    unsafe, safe, negatives, skipped, images = [], [], 0, 0, 0
    for item in decoded_samples(samples):
        sample, own = item.sample, tax.find(item.sample.category or "")
        if item.error is not None:
            skipped += 1
            continue
        rel = f"images/{item.sha256[:20]}.jpg"
        if not (out / rel).exists():
            write_atomic(out / rel, sample.load_bytes())
        images += 1
        others = [c for c in tax if c.key != own.key]
        chosen = rng.sample(others, rng.randint(min(min_others, len(others)), min(max_others, len(others))))
        listed = chosen + [own]
        rng.shuffle(listed)
        answer = f"unsafe: {own.name}" if sample.label == 1 else "safe"
        example = {
            "id": f"{sample.id}",
            "image": rel,
            "label": int(sample.label),
            "category": own.key,
            "conversations": [{"from": "human", "value": _prompt(listed, tax)}, {"from": "gpt", "value": answer}],
        }
        (unsafe if sample.label == 1 else safe).append(example)
        if sample.label == 1 and chosen:  # negative sample: the same image, its category not asked about
            negatives += 1
            safe.append(
                {
                    **example,
                    "id": f"{sample.id}:negative",
                    "label": 0,
                    "conversations": [
                        {"from": "human", "value": _prompt(chosen, tax)},
                        {"from": "gpt", "value": "safe"},
                    ],
                }
            )
    return unsafe, safe, negatives, skipped, images


def build_trainset(
    dataset: str | Path | Dataset,
    out: str | Path,
    taxonomy: str | Taxonomy = UNSAFEBENCH,
    seed: int = 0,
    min_others: int = 1,
    max_others: int = 10,
    balance: bool = True,
    train_split: str | None = None,
    val_split: str | None = None,
    val_fraction: float = 0.0,
) -> TrainsetStats:
    """The training set from the dataset's training rows (and, with a validation split, `llava_validation.json`);
    `test` rows are never read unless named."""
    tax = load_taxonomy(taxonomy)
    rng = random.Random(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    usable, skipped = [], 0
    for sample in data:
        if sample.label is None or tax.find(sample.category or "") is None:
            skipped += 1
        else:
            usable.append(sample)
    chosen = choose_splits(
        [s.split for s in usable],
        train_split=train_split,
        val_split=val_split,
        val_fraction=val_fraction,
        seed=seed,
        what=dataset_name(data, str(dataset)),
    )
    unsafe, safe, negatives, bad, images = _examples(
        [usable[i] for i in chosen.train], tax, rng, out, min_others, max_others
    )
    skipped += bad
    if balance and unsafe and safe:
        n = min(len(unsafe), len(safe))
        unsafe, safe = rng.sample(unsafe, n), rng.sample(safe, n)
    examples = unsafe + safe
    if not examples:
        raise ValueError(
            f"{dataset_name(data, str(dataset))}: no labelled images of {tax.name} categories in the training rows"
        )
    rng.shuffle(examples)
    write_json(out / "llava_train.json", examples)
    validation: list[dict] = []
    if len(chosen.val):
        v_unsafe, v_safe, _, _, _ = _examples([usable[i] for i in chosen.val], tax, rng, out, min_others, max_others)
        validation = v_unsafe + v_safe
        write_json(out / "llava_validation.json", validation)
    write_json(
        out / "trainset.json",
        {
            "splits": chosen.record,
            "taxonomy": tax.name,
            "seed": seed,
            "examples": len(examples),
            "validation_examples": len(validation),
        },
    )
    try:
        import datasets

        datasets.Dataset.from_list([{k: v for k, v in e.items()} for e in examples]).save_to_disk(
            str(out / "hf_dataset")
        )
    except ImportError:
        pass
    return TrainsetStats(
        images, len(examples), len(unsafe), len(safe), negatives, skipped, len(validation), chosen.record
    )
