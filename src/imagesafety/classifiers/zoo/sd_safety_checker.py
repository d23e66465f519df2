"""Stable Diffusion's safety checker (`CompVis/stable-diffusion-safety-checker`) through diffusers' own
`StableDiffusionSafetyChecker` class and its `cosine_distance`: 17 concept scores and 3 special-care scores, each
cosine - threshold, plus 0.01 on every concept score once a special-care concept fires. The unsafe score is the largest
adjusted concept score, flagged above 0 (as the library decides); the raw output keeps all 20 scores. Sexual only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imagesafety import hub
from imagesafety.classifiers.base import TorchClassifier
from imagesafety.classifiers.zoo.common import WeightsError, prediction
from imagesafety.pixels import CLIP_MEAN, CLIP_STD, PixelSpec
from imagesafety.taxonomy import UNSAFEBENCH

REPO = "CompVis/stable-diffusion-safety-checker"
SPECIAL_CARE_ADJUSTMENT = 0.01
#: "flagged when any concept score > 0": the smallest positive float, so `score >= threshold` means score > 0
THRESHOLD = float(np.nextafter(0.0, 1.0))


def checker_pixel_spec(folder: Path | None, image_size: int) -> PixelSpec:
    """The checker's CLIPImageProcessor settings (its preprocessor_config.json; CLIP's defaults when absent)."""
    config = (
        json.loads((folder / "preprocessor_config.json").read_text())
        if folder and (folder / "preprocessor_config.json").is_file()
        else {}
    )
    crop = config.get("crop_size", image_size)
    crop = crop["height"] if isinstance(crop, dict) else int(crop)
    return PixelSpec(
        crop,
        tuple(config.get("image_mean", CLIP_MEAN)),
        tuple(config.get("image_std", CLIP_STD)),
        "shortest_edge",
        "bicubic" if config.get("resample", 3) == 3 else "bilinear",
        "floor",
    )


class SafetyCheckerClassifier(TorchClassifier):
    name = "sd-safety-checker"
    version = "1"
    taxonomy = UNSAFEBENCH
    covers = frozenset({"sexual"})

    def __init__(self, weights: str | Path | None = None, device: str | None = None):
        import torch
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        from imagesafety.encoders.inference_mode import prepare_for_inference

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        ref = hub.resolve(weights or REPO, "SD safety checker weights")
        try:
            self.checker = StableDiffusionSafetyChecker.from_pretrained(ref.location).to(self.device)
        except (OSError, ValueError) as exc:
            raise WeightsError(
                f"SD safety checker: cannot load {ref.location} ({exc}); expected a folder laid out as "
                f"https://huggingface.co/{REPO}: config.json with pytorch_model.bin or model.safetensors"
            ) from None
        prepare_for_inference(self.checker, self.device)
        folder = Path(ref.location) if ref.is_local else None
        if folder is None:
            folder = Path(hub.download(REPO, "preprocessor_config.json", "SD safety checker preprocessing")).parent
        self.pixel_spec = checker_pixel_spec(folder, int(self.checker.config.vision_config.image_size))
        self.threshold = THRESHOLD
        self.weights = hub.identity_of(ref)
        self.config = {"weights": self.weights, "pixels": self.pixel_spec.to_dict()}

    def scores(self, pixels):
        """(concept scores (B, 17), special-care scores (B, 3)), differentiable, from [0, 1] pixels."""
        from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

        c = self.checker
        image_embeds = c.visual_projection(c.vision_model(self.pixel_spec.normalize(pixels))[1])
        special = cosine_distance(image_embeds, c.special_care_embeds) - c.special_care_embeds_weights
        adjustment = (special > 0).any(dim=1, keepdim=True).to(special.dtype) * SPECIAL_CARE_ADJUSTMENT
        concepts = cosine_distance(image_embeds, c.concept_embeds) - c.concept_embeds_weights + adjustment
        return concepts, special

    def unsafe_logits(self, pixels):
        """The largest adjusted concept score (UnsafeBench's attack target); flagged above 0."""
        return self.scores(pixels)[0].max(dim=1).values

    @property
    def logit_threshold(self) -> float:
        return 0.0

    def predict_prepared(self, items: list[np.ndarray]):
        import torch

        with torch.no_grad():
            concepts, special = (t.float().cpu().numpy() for t in self.scores(self.pixels(items)))
        return [
            prediction(
                c.max(),
                self.threshold,
                {"sexual": float(c.max())},
                {
                    "concept_scores": [round(float(v), 4) for v in c],
                    "special_scores": [round(float(v), 4) for v in s],
                    "special_care": bool((s > 0).any()),
                },
            )
            for c, s in zip(concepts, special)
        ]


def from_spec(arg: str | None, *, weights: str | None = None, device: str | None = None) -> SafetyCheckerClassifier:
    return SafetyCheckerClassifier(weights or arg, device)
