"""HySAC's training objective: hyperbolic contrastive losses on four pairings, and entailment losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from imagesafety.hyperbolic import lorentz as L


@dataclass
class LossWeights:
    """Weights of each term, the authors' by default (every term 1.0; this toolkit's first release weighted the
    entailment terms 0.2); the safety entailment orders safe image < unsafe text from the origin. `average`: the total
    as the authors' trainer computes it (`hysac_train.py`, `training.py`): the weights normalised to sum to 1, then the
    weighted sum divided by the number of terms, so with seven equal weights the total is the sum of the terms / 49
    (before this was corrected the total was the sum / 7, every reported loss seven times the authors')."""

    safe_pair: float = 1.0  # safe text <-> safe image
    unsafe_pair: float = 1.0  # unsafe text <-> unsafe image
    safe_text_unsafe_image: float = 1.0
    unsafe_text_safe_image: float = 1.0
    entail_safe: float = 1.0  # safe text -> safe image
    entail_unsafe: float = 1.0  # unsafe text -> unsafe image
    entail_safety: float = 1.0  # safe image -> unsafe text
    eta: float = 1.0
    average: bool = True

    @classmethod
    def with_entailment(cls, weight: float) -> LossWeights:
        return cls(entail_safe=weight, entail_unsafe=weight, entail_safety=weight)


def contrastive_loss(text: Tensor, image: Tensor, curvature: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric cross-entropy with -distance (times a learned scale) as logits; row i matches row i."""
    logits = -L.pairwise_dist(text, image, curvature) * logit_scale
    target = torch.arange(len(text), device=text.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def hysac_loss(
    safe_text: Tensor,
    safe_image: Tensor,
    unsafe_text: Tensor,
    unsafe_image: Tensor,
    curvature: Tensor,
    logit_scale: Tensor,
    w: LossWeights | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its terms, for a batch of (safe text, safe image, unsafe text, unsafe image) embeddings on the
    hyperboloid."""
    w = w or LossWeights()
    terms = {
        "safe_pair": contrastive_loss(safe_text, safe_image, curvature, logit_scale),
        "unsafe_pair": contrastive_loss(unsafe_text, unsafe_image, curvature, logit_scale),
        "safe_text_unsafe_image": contrastive_loss(safe_text, unsafe_image, curvature, logit_scale),
        "unsafe_text_safe_image": contrastive_loss(unsafe_text, safe_image, curvature, logit_scale),
        "entail_safe": L.entailment_loss(safe_text, safe_image, curvature, w.eta),
        "entail_unsafe": L.entailment_loss(unsafe_text, unsafe_image, curvature, w.eta),
        "entail_safety": L.entailment_loss(safe_image, unsafe_text, curvature, w.eta),
    }
    weights = {name: getattr(w, name) for name in terms}
    if w.average:
        norm = sum(weights.values())
        weights = {name: value / norm for name, value in weights.items()}
    total = sum(weights[name] * value for name, value in terms.items())
    if w.average:
        total = total / len(terms)
    return total, {name: float(value.detach()) for name, value in terms.items()}
