"""Any classifier with `--option calibration=CAL`: its scores mapped through a calibration fitted for it (its identity
is
checked), decisions at the calibration's operating thresholds, and a grade per category when a policy gives grades."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imagesafety.calibration.fit import UNSAFE, Calibration, check_identity, load_calibration
from imagesafety.classifiers.base import (
    Classifier,
    DeclaresCoverage,
    DeclaresWeights,
    Prediction,
    PreparesInput,
    SafetyClassifier,
    cache_key,
    coverage,
)


class CalibratedClassifier(Classifier):
    """`inner` with calibrated scores: the unsafe score through the `unsafe` map, each category through its own map (a
    category without one keeps its raw score and says so in `raw`)."""

    def __init__(self, inner: SafetyClassifier, calibration: Calibration, source: str = "calibration"):
        check_identity(calibration, list(cache_key(inner)), source)
        self.inner, self.calibration = inner, calibration
        self.name, self.version, self.taxonomy = inner.name, inner.version, inner.taxonomy
        self.covers = coverage(inner) if isinstance(inner, DeclaresCoverage) else None
        self.threshold = float(calibration.maps[UNSAFE].threshold)
        if isinstance(inner, DeclaresWeights):
            self.weights = inner.weights
        self.config = {
            **inner.config,
            "calibration": {
                k: m.params | {"method": m.method, "threshold": m.threshold} for k, m in calibration.maps.items()
            },
        }

    def prepare(self, image: Image.Image):
        return self.inner.prepare(image) if isinstance(self.inner, PreparesInput) else image

    def predict_prepared(self, items) -> list[Prediction]:
        preds = (
            self.inner.predict_prepared(items) if isinstance(self.inner, PreparesInput) else self.inner.predict(items)
        )
        maps = self.calibration.maps
        out = []
        for p in preds:
            score = float(maps[UNSAFE].apply(np.array([p.unsafe_score]))[0])
            cats = {
                k: float(maps[k].apply(np.array([v]))[0]) if k in maps else float(v)
                for k, v in p.category_scores.items()
            }
            raw = {
                "uncalibrated": {"unsafe_score": p.unsafe_score, "category_scores": p.category_scores},
                "thresholds": {k: maps[k].threshold for k in cats if k in maps},
                "inner": p.raw,
            }
            out.append(Prediction(score, int(score >= self.threshold), cats, raw, p.views))
        return out


def calibrated(inner: SafetyClassifier, path: str) -> CalibratedClassifier:
    return CalibratedClassifier(inner, load_calibration(path), str(path))
