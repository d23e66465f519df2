"""Black-box attacks for classifiers without gradients (ONNX NudeNet, VLM endpoints): ART's Square attack.

The attack works on the array the classifier really sees: its prepared input when `prepare` returns a
(3, H, W) array in [0, 1] (NudeNet's padded 320 x 320 input), else the decoded image itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import PreparesInput, SafetyClassifier

BLACK_BOX = ("square",)


@dataclass
class BlackBoxInput:
    array: np.ndarray  # (3, H, W) float32 in [0, 1]
    context: Any  # what else predict needs (NudeNet: the original size)


class BlackBoxView:
    """Scores of a classifier as a function of an input array, for score-based attacks."""

    def __init__(self, classifier: SafetyClassifier):
        self.classifier = classifier

    def to_input(self, image: Image.Image) -> BlackBoxInput:
        if isinstance(self.classifier, PreparesInput):
            prepared = self.classifier.prepare(image)
            array, context = (prepared if isinstance(prepared, tuple) else (prepared, None))
            if isinstance(array, np.ndarray) and array.ndim == 3 and array.shape[0] == 3 and array.dtype.kind == "f":
                return BlackBoxInput(array.astype(np.float32), context)
        return BlackBoxInput(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0, "image")

    def scores(self, arrays: np.ndarray, context: Any) -> np.ndarray:
        """Unsafe scores for a batch of arrays sharing one context."""
        if context == "image":
            images = [Image.fromarray((np.clip(a.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)) for a in arrays]
            preds = self.classifier.predict(images)
        else:
            preds = self.classifier.predict_prepared([(a, context) if context is not None else a for a in arrays])
        return np.array([p.unsafe_score for p in preds], dtype=np.float64)


def square_attack(view: BlackBoxView, item: BlackBoxInput, label: int, eps: float, max_iter: int = 200, seed: int = 0) -> np.ndarray:
    """ART's Square attack (L-inf, score-based) against the decision at the classifier's threshold."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    threshold = float(view.classifier.threshold)
    t_logit = np.log(threshold / (1 - threshold))

    def predict(batch: np.ndarray) -> np.ndarray:
        s = np.clip(view.scores(batch.astype(np.float32), item.context), 1e-7, 1 - 1e-7)
        unsafe = 1 / (1 + np.exp(-(np.log(s / (1 - s)) - t_logit)))  # argmax = the decision at the threshold
        return np.stack([1 - unsafe, unsafe], axis=1)

    estimator = BlackBoxClassifierNeuralNetwork(predict, item.array.shape, nb_classes=2, channels_first=True, clip_values=(0.0, 1.0))
    np.random.seed(seed)
    attack = SquareAttack(estimator, norm=np.inf, eps=eps, max_iter=max_iter, nb_restarts=1, batch_size=1, verbose=False)
    y = np.eye(2, dtype=np.float32)[[label]]
    return attack.generate(item.array[None], y=y)[0]
