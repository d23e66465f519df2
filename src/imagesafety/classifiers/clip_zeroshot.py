"""Zero-shot CLIP/SigLIP classifier: one unsafe/safe prompt pair per category of a taxonomy.

Per category, p(unsafe) = softmax(scale * [cos(image, unsafe prompt), cos(image, safe prompt)])[0];
the image's unsafe score is the largest category probability.
"""

from __future__ import annotations

import hashlib

import numpy as np

from imagesafety.classifiers.base import Prediction, TorchClassifier, decide
from imagesafety.encoders import TextEncoder, load_encoder
from imagesafety.encoders.torch_clip import TorchClipEncoder
from imagesafety.taxonomy import UNSAFEBENCH, Category, Taxonomy, load_taxonomy

PROMPT_VERSION = "zs1"
DEFAULT_ENCODER = "ViT-L-14/openai"


def prompt_pair(category: Category) -> tuple[str, str]:
    """(unsafe prompt, safe prompt) for one category, from its name and description."""
    name = category.name.lower()
    unsafe = f"an image showing {name} content: {category.description}".strip().rstrip(":")
    safe = f"a harmless, ordinary image with no {name} content"
    return unsafe, safe


class ClipZeroShotClassifier(TorchClassifier):
    """Scores images against a prompt pair per category with any CLIP-family encoder."""

    def __init__(
        self,
        encoder: str | TorchClipEncoder = DEFAULT_ENCODER,
        taxonomy: str | Taxonomy = UNSAFEBENCH,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        self.encoder = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
        if not isinstance(self.encoder, TextEncoder):
            raise ValueError(f"clip-zeroshot needs an image-text encoder; {self.encoder.name} has no text tower")
        self.pixel_spec, self.device = self.encoder.pixel_spec, self.encoder.device
        self.taxonomy = load_taxonomy(taxonomy)
        self.threshold = float(threshold)
        self.name = f"clip-zeroshot:{self.encoder.name.removeprefix('clip:')}"
        self.version = PROMPT_VERSION
        self.prompts = [prompt_pair(c) for c in self.taxonomy]
        texts = [t for pair in self.prompts for t in pair]
        self._text = self.encoder.encode_texts(texts).reshape(len(self.taxonomy), 2, -1)  # (K, 2, D)
        prompt_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
        self.weights = self.encoder.identity
        self.config = {
            "encoder": self.encoder.name,
            "weights": self.weights,
            "taxonomy": self.taxonomy.keys,
            "prompts": prompt_hash,
        }

    def unsafe_logits(self, pixels):
        """Differentiable: [0, 1] pixels (B, 3, S, S) -> unsafe logit per image (the largest category logit)."""
        import torch

        text = torch.as_tensor(self._text, device=pixels.device)
        feats = self.encoder.image_features(pixels)  # (B, D)
        cos = torch.einsum("bd,kpd->bkp", feats, text)
        per_category = self.encoder.logit_scale * (cos[..., 0] - cos[..., 1])  # (B, K)
        return per_category.max(dim=1).values

    def predict_prepared(self, items: list) -> list[Prediction]:
        feats = self.encoder.encode_prepared(items)  # (B, D)
        cos = np.einsum("bd,kpd->bkp", feats, self._text)
        logits = self.encoder.logit_scale * (cos[..., 0] - cos[..., 1])
        probs = 1.0 / (1.0 + np.exp(-logits))  # two-way softmax
        out = []
        for row in probs:
            scores = {c.key: float(p) for c, p in zip(self.taxonomy, row)}
            score = float(row.max())
            out.append(
                Prediction(
                    score,
                    decide(score, self.threshold),
                    scores,
                    {"top_category": self.taxonomy.keys[int(row.argmax())]},
                )
            )
        return out


def from_spec(
    arg: str | None, *, taxonomy: str = "unsafebench", threshold: float = 0.5, device: str | None = None
) -> ClipZeroShotClassifier:
    """`clip-zeroshot[:ENCODER]`, ENCODER as in `imagesafety.encoders.load_encoder` (default ViT-L-14/openai)."""
    return ClipZeroShotClassifier(arg or DEFAULT_ENCODER, taxonomy, threshold, device)
