"""Zero-shot CLIP/SigLIP classifier: one unsafe/safe prompt pair per category of a taxonomy.

Per category, p(unsafe) = softmax(scale * [cos(image, unsafe prompt), cos(image, safe prompt)])[0];
the image's unsafe score is the largest category probability.
"""

from __future__ import annotations

import hashlib
from typing import Any

from PIL import Image

from imagesafety.classifiers.base import EncoderInput, Prediction, decide
from imagesafety.encoders import load_encoder, normalise_encoder_spec
from imagesafety.taxonomy import UNSAFEBENCH, Category, Taxonomy, load_taxonomy

PROMPT_VERSION = "zs1"
DEFAULT_ENCODER = "ViT-L-14/openai"


def prompt_pair(category: Category) -> tuple[str, str]:
    """(unsafe prompt, safe prompt) for one category, from its name and description."""
    name = category.name.lower()
    unsafe = f"an image showing {name} content: {category.description}".strip().rstrip(":")
    safe = f"a harmless, ordinary image with no {name} content"
    return unsafe, safe


class ClipZeroShotClassifier(EncoderInput):
    """Scores images against a prompt pair per category with any CLIP-family encoder."""

    def __init__(self, encoder: str | Any = DEFAULT_ENCODER, taxonomy: str | Taxonomy = UNSAFEBENCH,
                 threshold: float = 0.5, device: str | None = None):
        self.encoder = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
        self.encoder_spec = normalise_encoder_spec(encoder) if isinstance(encoder, str) else self.encoder.name
        self.taxonomy = load_taxonomy(taxonomy)
        self.threshold = float(threshold)
        self.name = f"clip-zeroshot:{self.encoder_spec}"
        self.version = PROMPT_VERSION
        self.prompts = [prompt_pair(c) for c in self.taxonomy]
        texts = [t for pair in self.prompts for t in pair]
        self._text = self.encoder.encode_texts(texts).reshape(len(self.taxonomy), 2, -1)  # (K, 2, D)
        prompt_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
        self.config = {"encoder": self.encoder_spec, "taxonomy": self.taxonomy.keys, "prompts": prompt_hash}

    def unsafe_logits(self, pixels):
        """Differentiable: [0, 1] pixels (B, 3, S, S) -> unsafe logit per image (the largest category logit)."""
        import torch

        text = torch.as_tensor(self._text, device=pixels.device)
        feats = self.encoder.image_features(pixels)  # (B, D)
        cos = torch.einsum("bd,kpd->bkp", feats, text)
        per_category = self.encoder.logit_scale * (cos[..., 0] - cos[..., 1])  # (B, K)
        return per_category.max(dim=1).values

    def prepare(self, image: Image.Image):
        return self.encoder.prepare_pixels(image)

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
        return self.predict_prepared([self.prepare(img) for img in images])

    def predict_prepared(self, items: list) -> list[Prediction]:
        import numpy as np

        feats = self.encoder.encode_prepared(items)  # (B, D)
        cos = np.einsum("bd,kpd->bkp", feats, self._text)
        logits = self.encoder.logit_scale * (cos[..., 0] - cos[..., 1])
        probs = 1.0 / (1.0 + np.exp(-logits))  # two-way softmax
        out = []
        for row in probs:
            scores = {c.key: float(p) for c, p in zip(self.taxonomy, row)}
            score = float(row.max())
            out.append(Prediction(score, decide(score, self.threshold), scores, {"top_category": self.taxonomy.keys[int(row.argmax())]}))
        return out


def from_spec(arg: str | None, **options: Any) -> ClipZeroShotClassifier:
    """`clip-zeroshot[:ENCODER]`, ENCODER as in `imagesafety.encoders.load_encoder` (default ViT-L-14/openai)."""
    return ClipZeroShotClassifier(arg or DEFAULT_ENCODER, **options)
