"""Safety classifiers behind one contract (`base`), built by name through `imagesafety.registry`."""

from __future__ import annotations

from typing import Any

from imagesafety import registry
from imagesafety.classifiers.base import Classifier, Prediction, SafetyClassifier, TorchClassifier

__all__ = ["Classifier", "TorchClassifier", "Prediction", "SafetyClassifier", "load_classifier"]


def load_classifier(spec: str, **options: Any) -> SafetyClassifier:
    """Build a classifier from a spec such as `nudenet`, `q16` or `clip-zeroshot:ViT-B-32/openai`."""
    return registry.build("classifier", spec, **options)
