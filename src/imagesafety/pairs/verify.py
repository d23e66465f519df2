"""Keep a pair only if the label flipped (the judge says so) and nothing else changed (the similarity checks).

Every score is returned, and every failed check becomes a reason, so rejected candidates can be
stored with why they were rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import Prediction, SafetyClassifier


@dataclass(frozen=True)
class Thresholds:
    min_ssim: float = 0.5  # whole image, structural similarity
    min_outside_similarity: float = 0.98  # 1 - mean |difference| / 255 outside the editor's region
    max_changed_fraction: float = 0.5  # share of pixels that changed (by more than 16 levels) anywhere
    min_embedding_cosine: float = 0.7  # with an encoder
    max_lpips: float = 0.4  # perceptual distance, with an LPIPS model
    min_std: float = 2.0  # below this the edited image is blank


@dataclass
class Verification:
    kept: bool
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)


LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of the luminance of two RGB arrays (0-255), with scikit-image."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:
        raise ImportError("pair verification needs scikit-image: pip install 'imagesafety[pairs]'") from exc
    return float(structural_similarity(a.astype(np.float32) @ LUMA, b.astype(np.float32) @ LUMA, data_range=255))


class LPIPSMetric:
    """Learned perceptual distance (the `lpips` package; AlexNet backbone by default). `pretrained_backbone=False`
    keeps LPIPS's own linear weights but a random backbone: for offline checks of the code path only."""

    def __init__(self, net: str = "alex", pretrained_backbone: bool = True, device: str = "cpu", max_side: int = 224):
        try:
            import lpips
        except ImportError as exc:
            raise ImportError("LPIPS needs the lpips package (and torchvision): pip install lpips") from exc
        try:
            self.model = lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False).to(device).eval()
        except Exception as exc:  # the backbone's weights come from torchvision's hub on first use
            raise RuntimeError(
                f"LPIPS could not load its {net} backbone weights ({type(exc).__name__}: {exc}); they are downloaded "
                "by torchvision on first use: run once with internet, or pass --no-lpips"
            ) from exc
        self.device, self.max_side = device, int(max_side)

    def __call__(self, a: Image.Image, b: Image.Image) -> float:
        """Distance of the two images, both scaled to at most `max_side` (224: AlexNet's own input size; LPIPS averages
        a
        patch statistic, so a 512 px pair costs about a fifth of the full-resolution computation)."""
        import torch

        scale = min(1.0, self.max_side / max(a.size))
        size = (max(16, round(a.width * scale)), max(16, round(a.height * scale)))

        def tensor(img: Image.Image):
            img = img.convert("RGB").resize(size, Image.BILINEAR) if img.size != size else img.convert("RGB")
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
            return x.to(self.device)

        with torch.inference_mode():
            return float(self.model(tensor(a), tensor(b)).item())


def channel_std(image: np.ndarray) -> float:
    """The mean over channels of each channel's standard deviation (spatial variation), exactly, from 256-bin histograms
    (no floating-point copy of the image)."""
    values = np.arange(256, dtype=np.float64)
    stds = []
    for c in range(image.shape[2]):
        counts = np.bincount(image[..., c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = counts @ values / n
        stds.append(np.sqrt(max(counts @ (values - mean) ** 2 / n, 0.0)))
    return float(np.mean(stds))


def similarity_scores(
    original: Image.Image,
    edited: Image.Image,
    region: np.ndarray | None = None,
    encoder=None,
    lpips: LPIPSMetric | None = None,
) -> dict[str, float]:
    """SSIM, changed fraction, similarity outside the edited region, and (with an encoder) embedding cosine,
    (with an LPIPS model) perceptual distance."""
    a = np.asarray(original.convert("RGB"))
    b = np.asarray(edited.convert("RGB"))
    diff = np.abs(a.astype(np.int16) - b)  # per channel, 0-255
    r, g, bl = diff[..., 0], diff[..., 1], diff[..., 2]  # channel by channel: numpy reduces a last axis of 3 slowly
    per_pixel = r.astype(np.int32) + g + bl  # the three channels' differences, summed once for both masks
    scores = {
        "ssim": ssim(a, b),
        "changed_fraction": float((np.maximum(np.maximum(r, g), bl) > 16).mean()),
        "edited_std": channel_std(b),
    }
    if region is not None:
        inside_pixels = int(np.count_nonzero(region))
        inside_sum = int(per_pixel[region].sum()) if inside_pixels else 0
        outside_pixels = region.size - inside_pixels
        outside_sum = int(per_pixel.sum()) - inside_sum
        scores["outside_similarity"] = float(1 - outside_sum / (3 * outside_pixels) / 255) if outside_pixels else 1.0
        scores["inside_change"] = float(inside_sum / (3 * inside_pixels) / 255) if inside_pixels else 0.0
    if encoder is not None:
        emb = encoder.encode_images([original, edited])
        scores["embedding_cosine"] = float(
            np.dot(emb[0], emb[1]) / (np.linalg.norm(emb[0]) * np.linalg.norm(emb[1]) + 1e-12)
        )
    if lpips is not None:
        scores["lpips"] = lpips(original, edited)
    return scores


def verify_pair(
    original: Image.Image,
    edited: Image.Image,
    target_label: int,
    judge: SafetyClassifier,
    region: np.ndarray | None = None,
    encoder=None,
    thresholds: Thresholds | None = None,
    lpips: LPIPSMetric | None = None,
    original_judgment: Prediction | None = None,
) -> Verification:
    """Keep the pair only if the judge sees the flip and the similarity checks pass; `original_judgment` is the judge's
    (cached) verdict on the original, so only the edit is judged here."""
    t = thresholds or Thresholds()
    if edited.size != original.size:
        return Verification(False, [f"editor changed the size from {original.size} to {edited.size}"], {})
    scores = similarity_scores(original, edited, region, encoder, lpips)
    reasons = []
    if scores["edited_std"] < t.min_std:
        reasons.append("edited image is blank")
    if original_judgment is None:
        original_judgment, edited_judgment = judge.predict([original.convert("RGB"), edited.convert("RGB")])
    else:
        edited_judgment = judge.predict([edited.convert("RGB")])[0]
    scores.update(
        {
            "judge_original": original_judgment.unsafe_score,
            "judge_edited": edited_judgment.unsafe_score,
            "judge_edited_decision": edited_judgment.decision,
        }
    )
    if edited_judgment.decision != target_label:
        reasons.append(
            f"judge did not confirm the flip (edited judged {'unsafe' if edited_judgment.decision else 'safe'})"
        )
    if scores["ssim"] < t.min_ssim:
        reasons.append(f"image changed too much (SSIM {scores['ssim']:.3f} < {t.min_ssim})")
    if scores["changed_fraction"] > t.max_changed_fraction:
        reasons.append(f"edit touched {scores['changed_fraction']:.0%} of the image (> {t.max_changed_fraction:.0%})")
    if "outside_similarity" in scores and scores["outside_similarity"] < t.min_outside_similarity:
        reasons.append(
            f"changes outside the edited region (similarity {scores['outside_similarity']:.3f} < "
            f"{t.min_outside_similarity})"
        )
    if "lpips" in scores and scores["lpips"] > t.max_lpips:
        reasons.append(f"perceptually too different (LPIPS {scores['lpips']:.3f} > {t.max_lpips})")
    if "embedding_cosine" in scores and scores["embedding_cosine"] < t.min_embedding_cosine:
        reasons.append(f"embedding moved too far (cosine {scores['embedding_cosine']:.3f} < {t.min_embedding_cosine})")
    return Verification(not reasons, reasons, scores)
