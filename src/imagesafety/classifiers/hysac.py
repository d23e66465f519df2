"""HySAC as a safety classifier: unsafe when the image lands far from the origin of the hyperbolic space.

score = sigmoid((d - threshold) / spread), d the distance from the origin, `spread` the standard
deviation of safe-image distances; so the decision at 0.5 is exactly d >= threshold. Per-category
thresholds (from `hysac calibrate` on labelled categories) give per-category scores the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesafety.classifiers.base import Prediction, TorchClassifier, decide, logit
from imagesafety.hyperbolic.checkpoint import bounds_spread
from imagesafety.model_card import read_training_images
from imagesafety.taxonomy import Category, Taxonomy


class HysacClassifier(TorchClassifier):
    def __init__(
        self,
        path: str | Path,
        threshold: float | None = None,
        device: str = "cpu",
        backbone: str | None = None,
        encoder=None,
    ):
        from imagesafety.hyperbolic.embedder import HysacEmbedder

        self.embedder = HysacEmbedder(path, device, encoder=encoder, backbone=backbone)
        card = self.embedder.card
        if card.threshold is None:
            raise ValueError(f"{path}: no distance threshold; run `imagesafety hysac calibrate` first")
        self.pixel_spec, self.device = self.embedder.pixel_spec, device
        self.distance_threshold = float(card.threshold)
        self.spread = max(bounds_spread(card.bounds), 1e-3)
        self.category_thresholds = {k: float(v) for k, v in (card.category_thresholds or {}).items()}
        self.threshold = 0.5 if threshold is None else float(threshold)
        self.taxonomy = Taxonomy("hysac", tuple(Category(k, k) for k in self.category_thresholds))
        self.name = f"hysac:{self.embedder.directory.name}"
        self.version = "1"
        self.weights = self.embedder.identity
        self.config = {
            "weights": self.weights,
            "threshold": self.distance_threshold,
            "categories": self.category_thresholds,
            "mode": card.mode,
        }

    def training_images(self) -> frozenset[str]:
        return read_training_images(self.embedder.directory)

    def _score(self, d: np.ndarray, threshold: float) -> np.ndarray:
        return 0.5 * (1 + np.tanh((d - threshold) / (2 * self.spread)))  # the logistic function, without overflow

    @property
    def logit_threshold(self) -> float:
        return logit(self.threshold)  # score = sigmoid(unsafe_logits)

    def unsafe_logits(self, pixels):
        """Differentiable: [0, 1] pixels -> (d - threshold) / spread."""
        from imagesafety.hyperbolic import lorentz as L

        d = L.dist_to_origin(self.embedder.image_points(pixels), self.embedder.model.curvature)
        return (d - self.distance_threshold) / self.spread

    def prepare(self, image):
        return self.embedder.prepare(image)

    def predict_prepared(self, items: list) -> list[Prediction]:
        d = self.embedder.distance_to_origin(self.embedder.encode_prepared(items))
        scores = self._score(d, self.distance_threshold)
        out = []
        for di, si in zip(d, scores):
            per_category = {k: float(self._score(di, t)) for k, t in self.category_thresholds.items()}
            out.append(
                Prediction(
                    float(si), decide(float(si), self.threshold), per_category, {"distance_to_origin": float(di)}
                )
            )
        return out


def from_spec(
    arg: str | None, *, threshold: float | None = None, device: str = "cpu", backbone: str | None = None
) -> HysacClassifier:
    """`hysac:DIR`: a model folder from `imagesafety hysac train` (or a released HySAC checkpoint folder)."""
    if not arg:
        raise ValueError("hysac needs a model folder: --classifier hysac:PATH")
    return HysacClassifier(arg, threshold, device, backbone)
