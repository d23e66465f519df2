"""LAION's CLIP-based NSFW detector (CLIP-based-NSFW-Detector), as UnsafeBench runs it.

`laion-nsfw` (ViT-L/14): the AutoKeras model converted to torch (`yiting/NSFWDetector`,
`clip_autokeras_binary_nsfw.pth`):
normalisation (x - mean) / sqrt(variance), then Linear 768-64-512-256-1 with ReLUs and a sigmoid, on the L2-normalised
CLIP ViT-L/14 image embedding. `laion-nsfw:h14`: LAION's PyTorch MLP for ViT-H/14 (`h14_nsfw.pth`, 1024-d, Linear
1024-1024-2048-1024-256-128-16-1 with ReLU and Dropout 0.2), whose output is the NSFW value itself, on the
L2-normalised open_clip ViT-H/14 (laion2b_s32b_b79k) embedding. UnsafeBench scores it on Harassment and Sexual."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesafety.classifiers.zoo.common import (
    ClipHeadClassifier,
    WeightsError,
    check_state,
    load_state_dict,
    prediction,
    weights_file,
)
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH

L14_REPO, L14_FILE = "yiting/NSFWDetector", "clip_autokeras_binary_nsfw.pth"
H14_URL = "https://github.com/LAION-AI/CLIP-based-NSFW-Detector/raw/main/h14_nsfw.pth"
H14_FILE = "h14_nsfw.pth"
H14_BACKBONE = "clip:ViT-H-14/laion2b_s32b_b79k"


def build_l14(dim: int = 768):
    import torch
    from torch import nn

    class Normalization(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.register_buffer("mean", torch.zeros(shape))
            self.register_buffer("variance", torch.ones(shape))

        def forward(self, x):
            return (x - self.mean) / self.variance.sqrt()

    class L14(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = Normalization([dim])
            self.linear_1, self.linear_2 = nn.Linear(dim, 64), nn.Linear(64, 512)
            self.linear_3, self.linear_4 = nn.Linear(512, 256), nn.Linear(256, 1)

        def forward(self, x):  # the logit; the detector's value is its sigmoid
            x = torch.relu(self.linear_1(self.norm(x)))
            x = torch.relu(self.linear_2(x))
            return self.linear_4(torch.relu(self.linear_3(x)))[:, 0]

    return L14()


def build_h14(dim: int = 1024):
    from torch import nn

    class H14(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [dim, 1024, 2048, 1024, 256, 128, 16]
            layers: list = []
            for a, b in zip(sizes, sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.2)]
            self.layers = nn.Sequential(
                *layers[:-2], nn.Linear(16, 1)
            )  # Linear(128, 16) feeds the output layer directly

        def forward(self, x):
            return self.layers(x)

    return H14()


class LaionNsfwClassifier(ClipHeadClassifier):
    version = "1"
    taxonomy = UNSAFEBENCH
    covers = frozenset({"harassment", "sexual"})

    def __init__(
        self,
        variant: str = "l14",
        weights: str | Path | None = None,
        backbone: str | None = None,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        if variant not in ("l14", "h14"):
            raise ValueError(f"laion-nsfw variant must be l14 or h14 (laion-nsfw:h14), got {variant!r}")
        self.variant = variant
        if variant == "l14":
            super().__init__(backbone, device)
            path = weights_file(weights, L14_REPO, L14_FILE, "LAION NSFW detector (ViT-L/14)")
            self.head, layout = (
                build_l14(self.encoder.embed_dim),
                "norm.mean/variance, linear_1..linear_4 (768-64-512-256-1)",
            )
        else:
            super().__init__(backbone, device, default_backbone=H14_BACKBONE, quickgelu_arch="ViT-H-14")
            path = h14_weights(weights)
            self.head, layout = (
                build_h14(self.encoder.embed_dim),
                "layers.0 ... layers.16 (1024-1024-2048-1024-256-128-16-1)",
            )
        check_state(self.head, load_state_dict(path, f"laion-nsfw:{variant}"), path, f"laion-nsfw:{variant}", layout)
        self.head.to(self.device).eval().requires_grad_(False)
        self.name = "laion-nsfw" if variant == "l14" else "laion-nsfw:h14"
        self.threshold = float(threshold)
        self.weights = path_digest(path)
        self.config = {
            "variant": variant,
            "weights": self.weights,
            "backbone": self.encoder.name,
            "backbone_weights": self.encoder.identity,
        }

    def head_logit(self, feats):
        """L14: the logit before the sigmoid; H14: the value itself (its decision is value >= threshold)."""
        out = self.head(feats / feats.norm(dim=-1, keepdim=True))
        return out if self.variant == "l14" else out[:, 0]

    @property
    def logit_threshold(self) -> float:
        return super().logit_threshold if self.variant == "l14" else self.threshold

    def head_output(self, feats: np.ndarray):
        import torch

        with torch.no_grad():
            out = self.head_logit(torch.from_numpy(feats).to(self.device))
            values = (torch.sigmoid(out) if self.variant == "l14" else out.clamp(0, 1)).cpu().numpy()
        return [prediction(v, self.threshold, {}, {"nsfw_value": float(v)}) for v in values]


def h14_weights(option: str | Path | None) -> Path:
    """h14_nsfw.pth: the given file (or a folder holding it), else downloaded once from LAION's repository into the
    cache."""
    if option:
        path = Path(option).expanduser()
        path = path / H14_FILE if path.is_dir() else path
        if not path.is_file():
            raise WeightsError(
                f"laion-nsfw:h14: no {H14_FILE} at {path} (expected the file itself, or a folder holding it)"
            )
        return path.resolve()
    from imagesafety.files import write_atomic
    from imagesafety.net import FetchError, fetch_url
    from imagesafety.store import default_cache_path

    cached = default_cache_path().parent / "weights" / H14_FILE
    if not cached.is_file():
        try:
            write_atomic(cached, fetch_url(H14_URL, max_bytes=200 * 1024 * 1024, timeout_s=300))
        except FetchError as exc:
            raise WeightsError(
                f"laion-nsfw:h14: cannot download {H14_URL} ({exc}); download it elsewhere and pass "
                "--option weights=PATH/TO/h14_nsfw.pth"
            ) from None
    return cached


def from_spec(
    arg: str | None,
    *,
    weights: str | None = None,
    backbone: str | None = None,
    threshold: float = 0.5,
    device: str | None = None,
) -> LaionNsfwClassifier:
    """`laion-nsfw` (ViT-L/14) or `laion-nsfw:h14` (ViT-H/14)."""
    return LaionNsfwClassifier(arg or "l14", weights, backbone, threshold, device)
