"""Training data for guard heads: embeddings + labels + category masks, validated before any training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imagesafety.run.embed import Embeddings
from imagesafety.taxonomy import Taxonomy, slugify

OVERALL = "unsafe"


@dataclass
class GuardData:
    """Aligned arrays: X (n, d), labels (n,), categories (n,), pair ids, roles, splits and image hashes; `outputs`
    names the head's outputs."""

    X: np.ndarray
    labels: np.ndarray
    categories: np.ndarray
    pair_id: np.ndarray
    role: np.ndarray
    split: np.ndarray
    sha256: np.ndarray
    outputs: list[str]

    ARRAYS = ("X", "labels", "categories", "pair_id", "role", "split", "sha256")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> GuardData:
        return GuardData(*(getattr(self, name)[index] for name in self.ARRAYS), self.outputs)

    def concat(self, other: GuardData) -> GuardData:
        return GuardData(
            *(np.concatenate([getattr(self, name), getattr(other, name)]) for name in self.ARRAYS), self.outputs
        )

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(targets, mask), each (n, K): output 0 learns every image; output k only images of category k."""
        k = len(self.outputs)
        mask = np.zeros((len(self), k), dtype=bool)
        mask[:, 0] = True
        for j, name in enumerate(self.outputs[1:], start=1):
            mask[:, j] = self.categories == name
        return np.repeat(self.labels[:, None], k, axis=1).astype(np.float32), mask


def guard_data(
    emb: Embeddings, target: str = "binary", taxonomy: Taxonomy | None = None, outputs: list[str] | None = None
) -> GuardData:
    """Labelled, error-free rows of an embeddings table, checked for what training needs."""
    if target not in ("binary", "multilabel"):
        raise ValueError(f"unknown target {target!r}: use binary or multilabel")
    frame = emb.frame[emb.frame["error"].isna() & emb.frame["label"].notna()]
    where = emb.path or "embeddings"
    if frame.empty:
        raise ValueError(f"{where}: no labelled images without errors to train on")
    X = np.stack(frame["embedding"].to_list()).astype(np.float32)
    if X.shape[1] != emb.dim:
        raise ValueError(f"{where}: embeddings are {X.shape[1]}-d but the file says {emb.dim}-d")
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: embeddings contain NaN or Inf")
    slugs = {c: slugify(c) for c in frame["category"].dropna().unique() if isinstance(c, str)}  # once per distinct name
    categories = np.array([slugs.get(c, "") if isinstance(c, str) else "" for c in frame["category"]], dtype=object)
    if taxonomy is not None:
        unknown = sorted({c for c in categories if c and taxonomy.find(c) is None})
        if unknown:
            raise ValueError(
                f"{where}: categories {unknown} are not in taxonomy {taxonomy.name!r} ({', '.join(taxonomy.keys)})"
            )
        categories = np.array([taxonomy.get(c).key if c else "" for c in categories], dtype=object)
    labels = frame["label"].astype(int).to_numpy()
    bad = sorted(set(labels.tolist()) - {0, 1})
    if bad:
        raise ValueError(f"{where}: labels must be 0 (safe) or 1 (unsafe), found {bad[0]}")
    if outputs is None:
        outputs = [OVERALL]
        if target == "multilabel":
            present = sorted({c for c in categories if c})
            order = taxonomy.keys if taxonomy is not None else present
            outputs += [c for c in order if c in present]
    shas = frame["sha256"].to_numpy(dtype=object) if "sha256" in frame else np.full(len(frame), None, dtype=object)
    data = GuardData(
        X,
        labels,
        categories,
        frame["pair_id"].to_numpy(dtype=object),
        frame["role"].to_numpy(dtype=object),
        frame["split"].to_numpy(dtype=object),
        shas,
        outputs,
    )
    return data


def check_trainable(data: GuardData, where: str = "training data") -> None:
    """Every output needs both safe and unsafe examples; say which one does not."""
    targets, mask = data.targets()
    for j, name in enumerate(data.outputs):
        values = targets[mask[:, j], j]
        n_unsafe, n_safe = int(values.sum()), int(len(values) - values.sum())
        if n_unsafe == 0 or n_safe == 0:
            what = "overall" if j == 0 else f"category {name!r}"
            raise ValueError(
                f"{where}: {what} has a single class ({n_unsafe} unsafe, {n_safe} safe); a guard needs both"
            )


def check_compatible(emb: Embeddings, other: Embeddings, what: str) -> None:
    """Two embeddings files must come from the same encoder and have the same dimension."""
    if other.encoder != emb.encoder:
        raise ValueError(
            f"{what} come from encoder {other.encoder!r}, but the training embeddings from {emb.encoder!r}"
        )
    if other.dim != emb.dim:
        raise ValueError(f"{what} are {other.dim}-d, but the training embeddings are {emb.dim}-d")
