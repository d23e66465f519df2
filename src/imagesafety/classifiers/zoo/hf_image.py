"""Any Hugging Face image-classification checkpoint as a safety classifier (e.g. `Falconsai/nsfw_image_detection`).

Which output labels count as unsafe (`unsafe_labels`) and which category each scores (`label_categories`,
`label:category,...`) are options; the defaults are read from the model's `id2label`: labels naming nudity,
pornography or sexual content count as unsafe and score Sexual, labels naming violence or gore score Violence,
and any label called unsafe/nsfw scores Sexual. The unsafe score is the summed probability of the unsafe labels
(softmax models; the largest for multi-label ones); a category's score sums its labels. Preprocessing is the
checkpoint's own image processor, read into a PixelSpec so attacks see the same pixels."""

from __future__ import annotations

import re

import numpy as np

from imagesafety import hub
from imagesafety.classifiers.base import TorchClassifier
from imagesafety.classifiers.zoo.common import prediction
from imagesafety.pixels import PixelSpec
from imagesafety.taxonomy import UNSAFEBENCH, slugify

SEXUAL = re.compile(r"nsfw|porn|hentai|sex|nud|naked|explicit|erotic|adult|unsafe", re.I)
VIOLENT = re.compile(r"violen|gore|blood|weapon|gun", re.I)


def default_label_categories(labels: list[str]) -> dict[str, str]:
    """Unsafe labels -> the UnsafeBench category each scores."""
    found = {}
    for label in labels:
        if VIOLENT.search(label):
            found[label] = "violence"
        elif SEXUAL.search(label) and not re.search(r"\b(safe|normal|neutral|sfw)\b", label, re.I):
            found[label] = "sexual"
    return found


def parse_label_categories(value: str | dict, labels: list[str]) -> dict[str, str]:
    items = (
        value.items()
        if isinstance(value, dict)
        else (part.split(":", 1) for part in str(value).split(",") if part.strip())
    )
    out = {}
    for label, category in items:
        label = label.strip()
        if label not in labels:
            raise ValueError(f"label_categories: the model has no label {label!r} (labels: {', '.join(labels)})")
        out[label] = UNSAFEBENCH.get(category.strip()).key if UNSAFEBENCH.find(category.strip()) else slugify(category)
    return out


def processor_pixel_spec(processor) -> PixelSpec:
    """The geometry and statistics of a transformers image processor (resize + optional centre crop + normalise)."""
    size = processor.size
    crop = processor.crop_size if processor.do_center_crop else None
    resample = int(processor.resample) if processor.resample is not None else 2
    interpolation = "bicubic" if resample == 3 else "bilinear"
    mean = tuple(processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0)
    std = tuple(processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0)
    if crop is not None:
        return PixelSpec((crop["height"], crop["width"]), mean, std, "shortest_edge", interpolation, "floor")
    if size.get("height") and size.get("width"):
        return PixelSpec((size["height"], size["width"]), mean, std, "stretch", interpolation, "floor")
    raise ValueError(
        f"image processor {type(processor).__name__} resizes by {dict(size)}: only fixed-size processors are supported"
    )


class HFImageClassifier(TorchClassifier):
    version = "1"
    taxonomy = UNSAFEBENCH

    def __init__(
        self,
        model: str,
        unsafe_labels: str | list[str] | None = None,
        label_categories: str | dict | None = None,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from imagesafety.encoders.inference_mode import prepare_for_inference

        ref = hub.resolve(model, "image classifier")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = AutoImageProcessor.from_pretrained(ref.location)
            self.model = prepare_for_inference(
                AutoModelForImageClassification.from_pretrained(ref.location).to(self.device), self.device
            )
        except OSError as exc:
            raise ValueError(f"cannot load image classifier {ref.location!r}: {exc}") from None
        self.labels = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]
        categories = (
            parse_label_categories(label_categories, self.labels)
            if label_categories
            else default_label_categories(self.labels)
        )
        if unsafe_labels is not None:
            chosen = (
                [s.strip() for s in unsafe_labels.split(",")] if isinstance(unsafe_labels, str) else list(unsafe_labels)
            )
            unknown = [s for s in chosen if s not in self.labels]
            if unknown:
                raise ValueError(
                    f"unsafe_labels: the model has no label {unknown[0]!r} (labels: {', '.join(self.labels)})"
                )
            categories = {label: categories.get(label, "sexual") for label in chosen}
        if not categories:
            raise ValueError(
                f"no label of {ref.location} looks unsafe (labels: {', '.join(self.labels)}): name them with "
                "--option unsafe_labels=LABEL,... and --option label_categories=LABEL:CATEGORY,..."
            )
        self.label_categories = categories
        self.unsafe_index = [self.labels.index(label) for label in categories]
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        self.covers = frozenset(c for c in categories.values() if c in UNSAFEBENCH)
        self.pixel_spec = processor_pixel_spec(self.processor)
        self.threshold = float(threshold)
        self.name = f"hf-image-classifier:{ref.location}"
        self.weights = hub.identity_of(ref)
        self.config = {
            "model": ref.location,
            "weights": self.weights,
            "unsafe": categories,
            "pixels": self.pixel_spec.to_dict(),
        }

    def probabilities(self, pixels):
        import torch

        logits = self.model(pixel_values=self.pixel_spec.normalize(pixels)).logits
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def unsafe_logits(self, pixels):
        probs = self.probabilities(pixels)[:, self.unsafe_index]
        p = (probs.max(dim=1).values if self.multi_label else probs.sum(dim=1)).clamp(1e-7, 1 - 1e-7)
        return (p / (1 - p)).log()

    def predict_prepared(self, items: list[np.ndarray]):
        import torch

        with torch.no_grad():
            probs = self.probabilities(self.pixels(items)).float().cpu().numpy()
        out = []
        for row in probs:
            unsafe = row[self.unsafe_index]
            score = unsafe.max() if self.multi_label else unsafe.sum()
            per_category: dict[str, float] = {}
            for label, category in self.label_categories.items():
                per_category[category] = per_category.get(category, 0.0) + float(row[self.labels.index(label)])
            out.append(
                prediction(
                    min(float(score), 1.0),
                    self.threshold,
                    per_category,
                    {"probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, row)}},
                )
            )
        return out


def from_spec(
    arg: str | None,
    *,
    unsafe_labels: str | None = None,
    label_categories: str | None = None,
    threshold: float = 0.5,
    device: str | None = None,
    weights: str | None = None,
) -> HFImageClassifier:
    """`hf-image-classifier:HUB_ID_OR_FOLDER` (`--option weights=FOLDER` for a local copy)."""
    if not (arg or weights):
        raise ValueError(
            "hf-image-classifier needs a model: hf-image-classifier:Falconsai/nsfw_image_detection or a local folder"
        )
    return HFImageClassifier(weights or arg, unsafe_labels, label_categories, threshold, device)
