"""Black-box attacks for classifiers without gradients (ONNX NudeNet, VLM endpoints): ART's Square attack.

The attack works on the array the classifier really sees: its prepared input when `prepare` returns a
(3, H, W) array in [0, 1] (NudeNet's 320 x 320 input), else the decoded image itself. Where the prepared
input pads the image (NudeNet's letterbox, `PaddedInput`), only the image's own rows and columns are
perturbed: padding is not part of the user's image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import PaddedInput, PreparesInput, SafetyClassifier


@dataclass
class BlackBoxInput:
    array: np.ndarray  # (3, h, w) float32 in [0, 1]: the part of the input an attack may change
    context: Any  # what else predict needs (NudeNet: the original size); "image" for plain images
    full: np.ndarray | None = None  # the whole prepared input, when `array` is its top-left image region

    def embed(self, region: np.ndarray) -> np.ndarray:
        """The whole input with `region` in place of the image's own pixels."""
        if self.full is None:
            return region
        out = self.full.copy()
        out[:, : region.shape[1], : region.shape[2]] = region
        return out


class BlackBoxView:
    """Scores of a classifier as a function of an input array, for score-based attacks."""

    def __init__(self, classifier: SafetyClassifier):
        self.classifier = classifier

    def to_input(self, image: Image.Image) -> BlackBoxInput:
        if isinstance(self.classifier, PreparesInput):
            prepared = self.classifier.prepare(image)
            array, context = prepared if isinstance(prepared, tuple) else (prepared, None)
            if isinstance(array, np.ndarray) and array.ndim == 3 and array.shape[0] == 3 and array.dtype.kind == "f":
                array = array.astype(np.float32)
                if isinstance(self.classifier, PaddedInput):
                    rows, cols = self.classifier.image_region(prepared)
                    return BlackBoxInput(np.ascontiguousarray(array[:, :rows, :cols]), context, array)
                return BlackBoxInput(array, context)
        return BlackBoxInput(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0, "image")

    def scores(self, arrays: np.ndarray, item: BlackBoxInput) -> np.ndarray:
        """Unsafe scores for a batch of (region) arrays of one input."""
        if item.context == "image":
            images = [
                Image.fromarray((np.clip(a.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)) for a in arrays
            ]
            preds = self.classifier.predict(images)
        else:
            full = [item.embed(a) for a in arrays]
            preds = self.classifier.predict_prepared(
                [(a, item.context) if item.context is not None else a for a in full]
            )
        return np.array([p.unsafe_score for p in preds], dtype=np.float64)


def square_attack(view: BlackBoxView, item: BlackBoxInput, label: int, spec, seed: int = 0) -> np.ndarray:
    """ART's Square attack (L-inf, score-based, `spec.steps` iterations) against the decision at the classifier's
    threshold; returns the adversarial region array (the same shape as `item.array`)."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    threshold = float(view.classifier.threshold)
    t_logit = np.log(threshold / (1 - threshold))
    # ART's Square attack assumes square inputs: the region sits in the top-left of a square canvas whose rest is
    # ignored
    _, h, w = item.array.shape
    canvas = np.zeros((3, max(h, w), max(h, w)), dtype=np.float32)
    canvas[:, :h, :w] = item.array

    def predict(batch: np.ndarray) -> np.ndarray:
        s = np.clip(view.scores(batch[:, :, :h, :w].astype(np.float32), item), 1e-7, 1 - 1e-7)
        unsafe = 1 / (1 + np.exp(-(np.log(s / (1 - s)) - t_logit)))  # argmax = the decision at the threshold
        return np.stack([1 - unsafe, unsafe], axis=1)

    estimator = BlackBoxClassifierNeuralNetwork(
        predict, canvas.shape, nb_classes=2, channels_first=True, clip_values=(0.0, 1.0)
    )
    np.random.seed(seed)
    attack = SquareAttack(
        estimator, norm=np.inf, eps=spec.eps, max_iter=spec.steps, nb_restarts=1, batch_size=1, verbose=False
    )
    y = np.eye(2, dtype=np.float32)[[label]]
    return np.ascontiguousarray(attack.generate(canvas[None], y=y)[0][:, :h, :w])
