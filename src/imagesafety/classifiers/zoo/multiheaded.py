"""The multi-headed safety classifier (Qu et al., Unsafe Diffusion, CCS 2023): five heads (sexual, violent, disturbing,
hateful, political; each Linear 768-384, ReLU, Dropout 0.5, BatchNorm1d, Linear 384-1, sigmoid) on the CLIP ViT-L/14
image embedding, not L2-normalised (as the authors feed it); weights `yiting/MultiHeaded` (`{head}.pt`). Each head
scores one UnsafeBench category; the unsafe score is the largest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesafety.classifiers.zoo.common import (
    ClipHeadClassifier,
    check_state,
    load_state_dict,
    prediction,
    weights_file,
)
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH

REPO = "yiting/MultiHeaded"
#: the authors' head names -> the UnsafeBench category each scores
HEADS = {
    "sexual": "sexual",
    "violent": "violence",
    "disturbing": "shocking",
    "hateful": "hate",
    "political": "political",
}
LAYOUT = "a torch.nn.Sequential state dict: 0 Linear(768, 384), 3 BatchNorm1d(384), 4 Linear(384, 1)"


def build_head(dim: int):
    from torch import nn

    return nn.Sequential(nn.Linear(dim, 384), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm1d(384), nn.Linear(384, 1))


class MultiHeadedClassifier(ClipHeadClassifier):
    name = "multiheaded"
    version = "1"
    taxonomy = UNSAFEBENCH
    covers = frozenset(HEADS.values())

    def __init__(
        self,
        weights: str | Path | None = None,
        backbone: str | None = None,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        import torch

        super().__init__(backbone, device)
        self.check_dim(768, "the multi-headed classifier")
        self.heads = torch.nn.ModuleList()
        digests = {}
        for head in HEADS:
            path = weights_file(weights, REPO, f"{head}.pt", f"multi-headed classifier head {head!r}")
            module = build_head(self.encoder.embed_dim)
            check_state(module, load_state_dict(path, f"head {head!r}"), path, f"head {head!r}", LAYOUT)
            self.heads.append(module)
            digests[head] = path_digest(path)
        self.heads.to(self.device).eval().requires_grad_(False)
        self.threshold = float(threshold)
        self.weights = digests
        self.config = {
            "weights": self.weights,
            "backbone": self.encoder.name,
            "backbone_weights": self.encoder.identity,
        }

    def head_logits(self, feats):
        """(B, 5) logits, one per head, on the raw (not normalised) embedding."""
        import torch

        return torch.cat([head(feats) for head in self.heads], dim=1)

    def head_logit(self, feats):
        return self.head_logits(feats).max(dim=1).values  # sigmoid is monotone: max of sigmoids = sigmoid of the max

    def head_output(self, feats: np.ndarray):
        import torch

        with torch.no_grad():
            probs = torch.sigmoid(self.head_logits(torch.from_numpy(feats).to(self.device))).cpu().numpy()
        out = []
        for row in probs:
            scores = {category: float(p) for category, p in zip(HEADS.values(), row)}
            out.append(
                prediction(row.max(), self.threshold, scores, {"heads": {h: float(p) for h, p in zip(HEADS, row)}})
            )
        return out


def from_spec(
    arg: str | None,
    *,
    weights: str | None = None,
    backbone: str | None = None,
    threshold: float = 0.5,
    device: str | None = None,
) -> MultiHeadedClassifier:
    return MultiHeadedClassifier(weights or arg, backbone, threshold, device)
