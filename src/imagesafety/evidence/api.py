"""`explain`: where in each image a classifier's unsafe evidence is, how faithful that map is, and the smallest region
whose removal flips the verdict; the same call the CLI makes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import (
    Differentiable,
    FatalModelError,
    LocatesEvidence,
    SafetyClassifier,
    cache_key,
    config_hash,
)
from imagesafety.evidence.maps import gradient_map, occlusion_map, pooled, rise_map, rise_masks
from imagesafety.evidence.regions import FILLS, deletion_insertion, minimal_flip, top_boxes

BLACK_BOX_METHODS = ("occlusion", "rise", "boxes")
GRADIENT_METHODS = ("integrated-gradients", "saliency")
METHODS = ("auto", *BLACK_BOX_METHODS, *GRADIENT_METHODS)


@dataclass(frozen=True)
class ExplainSettings:
    """How evidence is computed (every field is part of the evidence cache key)."""

    method: str = "auto"
    category: str | None = None
    work_side: int = 224  # the image is explained with its long side at most this (the map is mapped back)
    window: int = 0  # occlusion window in work pixels (0: work_side / 8)
    stride: int = 0  # occlusion stride (0: window / 2)
    rise_masks: int = 500
    rise_cells: int = 8
    patch: int = 0  # flip-search and pooling patch (0: work_side / 16)
    fill: str = "blur"
    max_flip_area: float = 0.5
    steps: int = 16
    seed: int = 0
    box_level: float = 0.5  # top boxes: regions where the map is at least this share of its peak (above the median)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; methods: {', '.join(METHODS)}")
        if self.fill not in FILLS:
            raise ValueError(f"unknown fill {self.fill!r}; fills: {', '.join(FILLS)}")


@dataclass
class Evidence:
    """One image's evidence: the classifier's score, the top regions [x0, y0, x1, y1, weight] in the image's pixels,
    the map (at the image's size), the smallest flipping region, and deletion/insertion AUCs beside a random map's."""

    id: str
    method: str
    score: float | None
    decision: int | None = None  # the classifier's decision at its threshold (the flip search runs on flagged images)
    boxes: list[list[float]] = field(default_factory=list)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    flip_fraction: float | None = None
    flip_box: list[float] | None = None
    flip_fill: str = "blur"
    score_after_flip: float | None = None
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    random_deletion_auc: float | None = None
    random_insertion_auc: float | None = None
    category: str | None = None
    detector_boxes: list[list[float]] = field(
        default_factory=list
    )  # a detector's own regions (NudeNet's exposed detections)
    frame: int | None = None  # the view explained, for an image of several (its most unsafe frame)
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """Everything but the map, JSON-serialisable."""
        out = asdict(self)
        out.pop("heatmap")
        return out


def resolve_method(classifier: SafetyClassifier, method: str) -> str:
    """`auto`: integrated gradients for differentiable classifiers, occlusion for black-box ones; a gradient method on a
    black-box classifier is refused with the methods it supports."""
    white_box = isinstance(classifier, Differentiable)
    if method == "auto":
        return "integrated-gradients" if white_box else "occlusion"
    if method == "boxes" and not isinstance(classifier, LocatesEvidence):
        raise ValueError(
            f"{classifier.name} reports no regions of its own: --method boxes needs a detector (e.g. nudenet); "
            f"it supports: {', '.join(m for m in METHODS if m != 'boxes' and (white_box or m not in GRADIENT_METHODS))}"
        )
    if method in GRADIENT_METHODS and not white_box:
        raise ValueError(
            f"{classifier.name} is black-box (no gradients): --method {method} needs a differentiable classifier; "
            f"{classifier.name} supports: {', '.join(('auto', *BLACK_BOX_METHODS))}"
        )
    return method


def scorer_for(classifier: SafetyClassifier, category: str | None):
    """Arrays in [0, 1] -> the classifier's unsafe score (or its score for `category`), batched through `predict`."""

    def score(arrays: list[np.ndarray]) -> np.ndarray:
        images = [Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8)) for a in arrays]
        preds = classifier.predict(images)
        if category is None:
            return np.asarray([p.unsafe_score for p in preds], dtype=np.float64)
        return np.asarray([p.category_scores[category] for p in preds], dtype=np.float64)

    return score


class UnknownCategory(FatalModelError, ValueError):
    """A category the classifier does not score: every image's mistake, so the run stops on the first."""


def check_category(classifier: SafetyClassifier, category: str | None, probe: Image.Image) -> None:
    if category is None:
        return
    scored = sorted(classifier.predict([probe])[0].category_scores)
    if category not in scored:
        raise UnknownCategory(
            f"{classifier.name} does not score category {category!r}; it scores: {', '.join(scored) or 'no categories'}"
        )


def logit_fn_for(classifier: SafetyClassifier):
    """The classifier's unsafe logit as a function of work-resolution [0, 1] pixels: resized to the model's input inside
    the graph (bilinear, antialiased), so gradients land on the pixels the map shows."""
    import torch.nn.functional as F

    spec = classifier.pixel_spec

    def f(x):
        return classifier.unsafe_logits(
            F.interpolate(x, size=(spec.height, spec.width), mode="bilinear", antialias=True, align_corners=False)
        ).reshape(-1)

    return f


def to_work(image: Image.Image, side: int) -> np.ndarray:
    scale = min(1.0, side / max(image.size))
    work = (
        image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
        if scale < 1
        else image
    )
    return np.asarray(work.convert("RGB"), dtype=np.float32) / 255


def boxes_map(shape: tuple[int, int], boxes: list[list[float]], scale: tuple[float, float]) -> np.ndarray:
    """A map from a detector's boxes: each box's pixels hold its weight (the highest where boxes overlap)."""
    heat = np.zeros(shape, dtype=np.float32)
    for x0, y0, x1, y1, weight in boxes:
        ys = slice(int(y0 / scale[1]), max(int(y0 / scale[1]) + 1, int(np.ceil(y1 / scale[1]))))
        xs = slice(int(x0 / scale[0]), max(int(x0 / scale[0]) + 1, int(np.ceil(x1 / scale[0]))))
        heat[ys, xs] = np.maximum(heat[ys, xs], weight)
    return heat


def model_calls(settings: ExplainSettings, size: tuple[int, int], faithfulness: bool = True) -> int:
    """Model calls a map costs at most for an image of `size` (the flip search, bounded by its area budget, aside)."""
    from imagesafety.evidence.maps import windows

    scale = min(1.0, settings.work_side / max(size))
    width, height = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    side = max(width, height)
    window = settings.window or max(2, side // 8)
    stride = settings.stride or max(1, window // 2)
    method = settings.method
    calls = 1 + (
        len(list(windows(height, width, window, stride)))
        if method in ("auto", "occlusion")
        else settings.rise_masks
        if method == "rise"
        else 1
        if method == "boxes"
        else 2 * 32
    )
    return calls + (4 * (settings.steps + 1) if faithfulness else 0)


def explain_image(
    classifier: SafetyClassifier,
    image: Image.Image,
    settings: ExplainSettings,
    image_id: str = "image",
    faithfulness: bool = True,
) -> Evidence:
    """Evidence for one image (explained at the work resolution, every region mapped back to the image's pixels);
    without `faithfulness`, only the map and its boxes (no flip search, no deletion / insertion curves)."""
    method = resolve_method(classifier, settings.method)
    work = to_work(image, settings.work_side)
    height, width = work.shape[:2]
    side = max(height, width)
    window = settings.window or max(2, side // 8)
    stride = settings.stride or max(1, window // 2)
    patch = settings.patch or max(2, side // 16)
    scorer = scorer_for(classifier, settings.category)
    batch = max(
        1, min(32, int(2**28 // (height * width * 3 * 4)))
    )  # masked copies per model call: at most 256 MB of pixels
    score = float(scorer([work])[0])
    sx, sy = image.width / width, image.height / height
    detected = (
        classifier.evidence_boxes(classifier.predict([image])[0]) if isinstance(classifier, LocatesEvidence) else []
    )
    if method == "boxes":
        heat = boxes_map((height, width), detected, (sx, sy))
    elif method == "occlusion":
        heat = occlusion_map(work, scorer, window, stride, baseline=0.0, batch_size=batch)
    elif method == "rise":
        heat = rise_map(
            work,
            scorer,
            rise_masks(settings.rise_masks, height, width, settings.rise_cells, 0.5, settings.seed),
            batch_size=batch,
        )
    else:
        if settings.category is not None:
            raise ValueError(f"{method} explains the unsafe logit; for --category use occlusion or rise")
        heat = pooled(gradient_map(work, logit_fn_for(classifier), method), patch)
    scale = lambda box: [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, *box[4:]]  # noqa: E731
    full = np.asarray(Image.fromarray(heat, mode="F").resize(image.size, Image.BILINEAR), dtype=np.float32)
    evidence = Evidence(
        id=image_id,
        method=method,
        score=score,
        decision=int(score >= float(classifier.threshold)),
        boxes=[scale(b) for b in top_boxes(heat, level=settings.box_level)],
        heatmap=full,
        flip_fill=settings.fill,
        category=settings.category,
        detector_boxes=detected,
    )
    if not faithfulness:
        return evidence
    threshold = float(classifier.threshold)
    flip = (
        minimal_flip(work, heat, scorer, threshold, settings.fill, patch, settings.max_flip_area, batch)
        if score >= threshold
        else None
    )
    if flip is not None and flip.box is not None:
        evidence.flip_fraction, evidence.flip_box, evidence.score_after_flip = (
            flip.fraction,
            scale(flip.box),
            flip.score_after,
        )
    evidence.deletion_auc, evidence.insertion_auc = deletion_insertion(
        work, heat, scorer, settings.fill, settings.steps, batch
    )
    random_heat = np.random.default_rng(settings.seed).random(heat.shape).astype(np.float32)
    evidence.random_deletion_auc, evidence.random_insertion_auc = deletion_insertion(
        work, random_heat, scorer, settings.fill, settings.steps, batch
    )
    return evidence


def evidence_key(classifier: SafetyClassifier, settings: ExplainSettings) -> str:
    """Cache folder name: the classifier's prediction key (name, version, config with its weights' digest) and the
    settings."""
    return config_hash({"classifier": list(cache_key(classifier)), "settings": asdict(settings)})
