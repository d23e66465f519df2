"""`freepik-nsfw[:REPO_OR_FOLDER]`: Freepik's NSFW image detector (Freepik/nsfw_image_detector, MIT: an EVA-02
base/14 at 448 px fine-tuned on four levels, neutral < low < medium < high) run through transformers' timm wrapper
and its image processor, as the model card loads it (`AutoModelForImageClassification`, `AutoImageProcessor`).

The levels are read from the model's `id2label` by name, never by position. The unsafe score is the probability that
the image is at `level` or above (the softmax probabilities of those levels summed; `level` low by default, which is
how the card scores its own comparison: an image labelled low, medium or high must come out at least low); the
decision is at `threshold` (0.5: at the level or above is more likely than below it). Every level's probability is
in the raw output. Covers Sexual. A local copy of the repository (config.json, model.safetensors) loads as
`freepik-nsfw:FOLDER`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

DEFAULT_MODEL = "Freepik/nsfw_image_detector"
LEVELS = ("neutral", "low", "medium", "high")
TAXONOMY = Taxonomy("freepik-nsfw", (UNSAFEBENCH.get("sexual"),))


class FreepikNsfw(Classifier):
    name = "freepik-nsfw"
    version = "1"
    taxonomy = TAXONOMY
    covers = frozenset({"sexual"})
    preferred_batch_size = 16

    def __init__(
        self, model: str = DEFAULT_MODEL, level: str = "low", threshold: float = 0.5, device: str | None = None
    ):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        if level not in LEVELS[1:]:
            raise ValueError(f"unknown level {level!r}: use {', '.join(LEVELS[1:])}")
        ref = hub.resolve(model, "Freepik NSFW detector")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = AutoModelForImageClassification.from_pretrained(ref.location).to(self.device).eval()
            self.processor = AutoImageProcessor.from_pretrained(ref.location)
        except (OSError, ValueError, ImportError) as exc:
            raise ValueError(f"cannot load {ref.location!r}: {type(exc).__name__}: {exc}") from None
        labels = {str(name).lower(): int(i) for i, name in self.model.config.id2label.items()}
        missing = [x for x in LEVELS if x not in labels]
        if missing:
            raise ValueError(
                f"model {ref.location!r} has no level {', '.join(missing)}; its labels: {', '.join(sorted(labels))}"
            )
        self.indices = [labels[x] for x in LEVELS]
        self.level = level
        self.counted = [labels[x] for x in LEVELS[LEVELS.index(level) :]]
        self.threshold = float(threshold)
        self.weights = hub.identity_of(ref)
        self.config = {"model": ref.location, "weights": self.weights, "level": level}

    def prepare(self, image: Image.Image) -> Any:
        """The model's own image processor (resize, crop, normalise), on the run's worker threads."""
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def probabilities(self, items: list) -> np.ndarray:
        """(n, 4) softmax probabilities in the model's label order."""
        import torch

        with torch.no_grad():
            logits = self.model(pixel_values=torch.stack(items).to(self.device)).logits
        return logits.softmax(-1).float().cpu().numpy()

    def predict_prepared(self, items: list) -> list[Prediction]:
        if not items:
            return []
        out = []
        for probs in self.probabilities(items):
            score = float(probs[self.counted].sum())
            raw = {"levels": {name: float(probs[i]) for name, i in zip(LEVELS, self.indices)}, "level": self.level}
            out.append(Prediction(score, decide(score, self.threshold), {"sexual": score}, raw))
        return out


def from_spec(arg: str | None, *, level: str = "low", threshold: float = 0.5, device: str | None = None) -> FreepikNsfw:
    """`freepik-nsfw` (Freepik/nsfw_image_detector) or `freepik-nsfw:REPO_OR_FOLDER`."""
    return FreepikNsfw(arg or DEFAULT_MODEL, level, threshold, device)
