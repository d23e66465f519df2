"""Q16 (Schramowski et al.): a CLIP ViT-L/14 image embedding against two learned prompt embeddings (`yiting/Q16`,
`prompts.p`): logits = 100 x cosine (both sides L2-normalised), softmax, index 1 = unsafe. Built for every
UnsafeBench category but Sexual and Spam."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesafety.classifiers.zoo.common import (
    ClipHeadClassifier,
    WeightsError,
    load_numpy_pickle,
    prediction,
    weights_file,
)
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH

REPO, FILE = "yiting/Q16", "prompts.p"


class Q16Classifier(ClipHeadClassifier):
    name = "q16"
    version = "1"
    taxonomy = UNSAFEBENCH
    covers = frozenset(UNSAFEBENCH.keys) - {"sexual", "spam"}

    def __init__(
        self,
        weights: str | Path | None = None,
        backbone: str | None = None,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        import torch

        super().__init__(backbone, device)
        path = weights_file(weights, REPO, FILE, "Q16 prompts")
        prompts = load_numpy_pickle(path).astype(np.float32)
        if prompts.ndim != 2 or prompts.shape[0] != 2:
            raise WeightsError(
                f"Q16 prompts: {path} holds an array of shape {prompts.shape}; expected (2, embedding dim): safe, "
                "unsafe"
            )
        self.check_dim(prompts.shape[1], "Q16 prompts")
        self.text = torch.from_numpy(prompts / np.linalg.norm(prompts, axis=1, keepdims=True)).to(self.device)
        self.threshold = float(threshold)
        self.weights = path_digest(path)
        self.config = {
            "weights": self.weights,
            "backbone": self.encoder.name,
            "backbone_weights": self.encoder.identity,
        }

    def similarity(self, feats):
        return 100.0 * (feats / feats.norm(dim=-1, keepdim=True)) @ self.text.T

    def head_logit(self, feats):
        """softmax over (safe, unsafe) -> its unsafe probability is sigmoid(s_unsafe - s_safe)."""
        s = self.similarity(feats)
        return s[:, 1] - s[:, 0]

    def head_output(self, feats: np.ndarray):
        import torch

        with torch.no_grad():
            s = self.similarity(torch.from_numpy(feats).to(self.device)).cpu()
        probs = torch.softmax(s, dim=-1).numpy()
        return [
            prediction(p[1], self.threshold, {}, {"similarity": [float(v) for v in row]})
            for p, row in zip(probs, s.numpy())
        ]


def from_spec(
    arg: str | None,
    *,
    weights: str | None = None,
    backbone: str | None = None,
    threshold: float = 0.5,
    device: str | None = None,
) -> Q16Classifier:
    return Q16Classifier(weights or arg, backbone, threshold, device)
