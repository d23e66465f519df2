"""The image/text encoder contract shared by zero-shot classifiers, probes and embedding jobs."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

#: CLIP's published preprocessing statistics, used when a checkpoint does not state its own.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@runtime_checkable
class Encoder(Protocol):
    """Maps images and texts into one embedding space; outputs are L2-normalised float32 arrays.

    Torch encoders also expose `pixels(images)` -> a [0, 1] tensor and a differentiable
    `image_features(pixels)` with the normalisation inside, so attacks work in pixel units.
    """

    name: str
    embed_dim: int
    logit_scale: float

    def encode_images(self, images: list[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """CLIP's geometry: shortest side to `size` (bicubic), then a centred `size` x `size` crop."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.convert("RGB").resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))
