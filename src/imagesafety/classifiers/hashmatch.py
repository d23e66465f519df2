"""`hashmatch:BANK`: a hash bank as a classifier. Score 1 when the image matches an entry within the bank's threshold
(the entry's label flagged, its id, source and distance in the raw output), else 0; its categories are the bank's
labels. An image too flat or small for a reliable hash is never matched, and says so (`unhashable`)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from imagesafety.classifiers.base import Classifier, Prediction
from imagesafety.hashes.bank import load_bank
from imagesafety.hashes.compute import MIN_QUALITY, compute, pdq_dihedral
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH, Category, Taxonomy, slugify


class HashMatchClassifier(Classifier):
    name = "hashmatch"
    version = "1"
    threshold = 0.5
    preferred_batch_size = 64

    def __init__(self, bank: str, dihedral: bool = False, index: str | None = None):
        self.bank = load_bank(bank, index=index)
        self.dihedral = bool(dihedral)
        keys = sorted({slugify(label) for label in self.bank.labels})
        known = {c.key: c for c in UNSAFEBENCH}
        self.taxonomy = Taxonomy(
            "hash-bank", tuple(known.get(k, Category(k, k.replace("_", " ").capitalize())) for k in keys)
        )
        self.covers = frozenset(keys)
        self.weights = path_digest(self.bank.path)
        self.config = {
            "bank": path_digest(self.bank.path),
            "thresholds": self.bank.thresholds,
            "dihedral": self.dihedral,
            "weights": self.weights,
        }

    def prepare(self, image: Image.Image) -> dict[str, list]:
        """The image's hashes (on the run's worker threads)."""
        return {
            a: (pdq_dihedral(image) if self.dihedral and a == "pdq" else [compute(image, a)])
            for a in self.bank.algorithms
        }

    def predict_prepared(self, items: list[dict[str, list]]) -> list[Prediction]:
        out = []
        for hashes in items:
            found = self.bank.match(hashes)
            scores = {c.key: 0.0 for c in self.taxonomy}
            raw: dict[str, Any] = {"quality": min(h.quality for hs in hashes.values() for h in hs)}
            raw["unhashable"] = all(h.quality < MIN_QUALITY[a] for a, hs in hashes.items() for h in hs)
            if found is not None:
                scores[slugify(found.label)] = 1.0
                raw.update(
                    entry=found.id,
                    label=found.label,
                    source=found.source,
                    distance=found.distance,
                    algorithm=found.algorithm,
                )
            out.append(Prediction(1.0 if found else 0.0, int(found is not None), scores, raw))
        return out


def from_spec(arg: str | None, *, dihedral: bool = False, index: str | None = None) -> HashMatchClassifier:
    """`hashmatch:BANK_FOLDER` (options: dihedral=true to match rotations and flips, index=flat|hnsw|ivf)."""
    if not arg:
        raise ValueError("hashmatch needs a bank: hashmatch:PATH/TO/BANK (build one with `imagesafety hashes build`)")
    return HashMatchClassifier(arg, dihedral=str(dihedral).lower() in ("1", "true", "yes"), index=index)
