"""Known images before any model: the service's hash bank. A match answers at once (flagged in the bank's label, the
entry and distance in the answer and the audit log) and the image is never stored."""

from __future__ import annotations

from dataclasses import dataclass

from imagesafety.classifiers.base import Prediction
from imagesafety.hashes.bank import HashBank, load_bank
from imagesafety.hashes.compute import compute
from imagesafety.identity import path_digest
from imagesafety.images import decode_image
from imagesafety.taxonomy import slugify


@dataclass
class KnownImages:
    """A loaded bank and its content version (the audit log's model_version for matches)."""

    bank: HashBank
    version: str

    @classmethod
    def load(cls, path: str) -> KnownImages:
        bank = load_bank(path)
        return cls(bank, path_digest(bank.path)[:23])

    def match(self, data: bytes, max_pixels: int, name: str) -> Prediction | None:
        """The prediction a match stands for, or None (no match, or a hash too weak to match on)."""
        image = decode_image(data, max_pixels, name)
        found = self.bank.match({a: [compute(image, a)] for a in self.bank.algorithms})
        if found is None:
            return None
        label = slugify(found.label)
        detail = {
            "entry": found.id,
            "label": found.label,
            "source": found.source,
            "distance": found.distance,
            "algorithm": found.algorithm,
            "bank": self.version,
        }
        return Prediction(1.0, 1, {label: 1.0}, {"hash_match": detail})
