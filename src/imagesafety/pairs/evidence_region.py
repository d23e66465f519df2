"""Pairs whose edit region comes from the evidence: a classifier's smallest flipping region (dilated by a margin)
instead
of a box typed by hand, for any editor that edits a region (`EditsRegion`)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import SafetyClassifier, cache_key
from imagesafety.evidence.api import ExplainSettings, explain_image
from imagesafety.pairs.editors import EditsRegion, box_mask
from imagesafety.pairs.plans import EditPlan


class EvidenceRegionEditor:
    """`inner`'s edit on each image's evidence region: `source`'s minimal flipping region, grown by `margin` (a fraction
    of the image's sides) on every side. An image the source does not flag, or cannot flip within the area budget, has
    no region: its edit fails with that reason (recorded with the candidate)."""

    def __init__(
        self,
        inner: EditsRegion,
        source: SafetyClassifier,
        margin: float = 0.02,
        settings: ExplainSettings | None = None,
    ):
        if not isinstance(inner, EditsRegion):
            raise ValueError(
                f"editor {getattr(inner, 'name', inner)!r} does not edit a region; --region evidence:SPEC needs a "
                "region "
                "editor (mask-composite or diffusers-inpaint:MODEL)"
            )
        if not 0 <= margin < 0.5:
            raise ValueError(f"--region-margin must be in [0, 0.5), got {margin}")
        self.inner, self.source, self.margin = inner, source, float(margin)
        self.settings = settings or ExplainSettings()
        self.name = f"{inner.name}@evidence:{source.name}"
        self.config = {
            **inner.config,
            "region": "evidence",
            "source": list(cache_key(source)),
            "margin": self.margin,
            "explain": asdict(self.settings),
        }
        self._boxes: dict[str, tuple[float, float, float, float] | None] = {}

    def box_for(self, image: Image.Image) -> tuple[float, float, float, float] | None:
        """The evidence region as fractions (left, top, right, bottom), computed once per image."""
        key = hashlib.sha256(image.tobytes()).hexdigest()
        if key not in self._boxes:
            evidence = explain_image(self.source, image.convert("RGB"), self.settings)
            box = None
            if evidence.flip_box is not None:
                x0, y0, x1, y1 = evidence.flip_box[:4]
                w, h = image.size
                box = (
                    max(0.0, x0 / w - self.margin),
                    max(0.0, y0 / h - self.margin),
                    min(1.0, x1 / w + self.margin),
                    min(1.0, y1 / h + self.margin),
                )
            self._boxes[key] = box
        return self._boxes[key]

    def region(self, image: Image.Image, plan: EditPlan, seed: int) -> np.ndarray:
        box = self.box_for(image)
        return box_mask(image.size, box) if box is not None else np.zeros((image.height, image.width), dtype=bool)

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image:
        box = self.box_for(image)
        if box is None:
            raise ValueError(
                f"no evidence region: {self.source.name} does not flag this image, or no removal within "
                f"{self.settings.max_flip_area:.0%} of its area flips it"
            )
        return self.inner.with_box(box).edit(image, plan, seed)
