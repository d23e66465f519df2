"""How a model sees an image: one preprocessing record per model and the one path from images to model tensors.

`PixelSpec.prepare` is the per-image CPU work (geometry only; run on the decoding threads), `tensor` stacks
prepared arrays into [0, 1] pixels (B, 3, H, W), and `normalize` is the model's normalisation, applied
inside differentiable paths so attacks perturb [0, 1] pixels and eps conversions read `std`.

Resize rules, each as its reference library computes it:
- `shortest_edge`: the short side to `size` (the long side `int(size * long / short)`, as transformers and
  torchvision round), then a centred crop; `crop_offset` says where an odd margin goes (`floor`:
  transformers' CLIPImageProcessor; `round`: torchvision's CenterCrop, used by open_clip).
- `stretch`: straight to the model's size, aspect ratio not kept (NSFWJS).
- `stretch_crop`: stretched to a `stretch_to` square, then a centred crop of `size` (Yahoo's OpenNSFW: 256, then 224).
- `letterbox`: the image padded with zeros at the bottom/right to a square, then resized (NudeNet); for images whose
  square would exceed `LETTERBOX_PAD_LIMIT` pixels the long side is resized first and then padded: the same geometry
  without building a huge square (only the blend along the image's border differs).
`jpeg_quality` adds a JPEG re-encode of the prepared image at that quality (OpenNSFW's reference does this step).
Interpolations: `bicubic` / `bilinear` (Pillow), `bilinear_cv2` (OpenCV INTER_LINEAR), `bilinear_aligned`
(TensorFlow's resizeBilinear with aligned corners and no antialiasing, in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

#: CLIP's published preprocessing statistics.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZES = ("shortest_edge", "stretch", "stretch_crop", "letterbox")
LETTERBOX_PAD_LIMIT = 4096 * 4096
INTERPOLATIONS = ("bicubic", "bilinear", "bilinear_cv2", "bilinear_aligned")


@dataclass(frozen=True)
class PixelSpec:
    """A model's input: `size` (a square side, or (height, width)), the resize rule, and normalisation."""

    size: int | tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "shortest_edge"
    interpolation: str = "bicubic"
    crop_offset: str = "floor"
    stretch_to: int | None = None
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise ValueError(f"unknown resize rule {self.resize!r}; known: {', '.join(RESIZES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; known: {', '.join(INTERPOLATIONS)}")
        if self.crop_offset not in ("floor", "round"):
            raise ValueError("crop_offset must be floor or round")
        if self.resize == "stretch_crop" and (self.stretch_to or 0) < max(self.height, self.width):
            raise ValueError("stretch_crop needs stretch_to at least the input size")

    @property
    def height(self) -> int:
        return int(self.size if isinstance(self.size, int) else self.size[0])

    @property
    def width(self) -> int:
        return int(self.size if isinstance(self.size, int) else self.size[1])

    @property
    def min_std(self) -> float:
        """The smallest channel std: eps in normalised units = eps in [0, 1] pixel units / min_std."""
        return float(min(self.std))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "size": [self.height, self.width],
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "interpolation": self.interpolation,
            "crop_offset": self.crop_offset,
        }
        extra = {"stretch_to": self.stretch_to, "jpeg_quality": self.jpeg_quality}
        return out | {k: v for k, v in extra.items() if v is not None}  # older records keep their form

    # -- geometry (numpy, per image) -------------------------------------------------------------
    def prepare(self, image: Image.Image) -> np.ndarray:
        """HWC array at the model's input size: uint8, or float32 in [0, 1] for `bilinear_aligned`."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        if self.resize == "shortest_edge":
            array = self._shortest_edge(image)
        elif self.resize == "stretch":
            array = self._resized(image, self.height, self.width)
        elif self.resize == "stretch_crop":
            side = int(self.stretch_to or 0)
            array = center_crop(self._resized(image, side, side), self.height, self.width, self.crop_offset)
        else:
            array = self._letterbox(image)
        return array if self.jpeg_quality is None else jpeg_roundtrip(array, self.jpeg_quality)

    def image_region(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the prepared input that hold the image itself (the rest is padding)."""
        if self.resize != "letterbox":
            return self.height, self.width
        width, height = original_size
        if (
            max(width, height) ** 2 <= LETTERBOX_PAD_LIMIT
        ):  # padded first: the border row/column blends image and padding
            side = max(width, height)
            return min(self.height, math.ceil(height * self.height / side)), min(
                self.width, math.ceil(width * self.width / side)
            )
        return letterbox_size(width, height, self.height, self.width)

    def _resized(self, image: Image.Image, height: int, width: int) -> np.ndarray:
        if self.interpolation == "bilinear_aligned":
            return resize_bilinear_aligned(np.asarray(image, dtype=np.float32) / 255.0, height, width)
        if self.interpolation == "bilinear_cv2":
            import cv2

            array = np.asarray(image)
            if array.shape[:2] == (height, width):
                return np.ascontiguousarray(array)
            return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
        resample = Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR
        if image.size == (width, height):
            return np.asarray(image)
        return np.asarray(image.resize((width, height), resample))

    def _shortest_edge(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        side = min(self.height, self.width)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = side, int(side * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        resized = self._resized(image, new_h, new_w)
        return center_crop(resized, self.height, self.width, self.crop_offset)

    def _letterbox(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        side = max(width, height)
        if side * side <= LETTERBOX_PAD_LIMIT:
            square = Image.new("RGB", (side, side))
            square.paste(image, (0, 0))
            return self._resized(square, self.height, self.width)
        h, w = letterbox_size(width, height, self.height, self.width)
        resized = self._resized(image, h, w)
        out = np.zeros((self.height, self.width, 3), dtype=resized.dtype)
        out[:h, :w] = resized
        return out

    # -- tensors (torch, batched) ----------------------------------------------------------------
    def tensor(self, arrays: list[np.ndarray], device: Any = "cpu"):
        """[0, 1] float32 tensor (B, 3, H, W) from prepared arrays."""
        import torch

        batch = torch.from_numpy(np.stack(arrays)).to(device)
        batch = batch.permute(0, 3, 1, 2).float()
        if arrays[0].dtype == np.uint8:
            batch = batch.div_(255.0)
        return batch.contiguous()

    def normalize(self, pixels):
        """(pixels - mean) / std, as one new tensor (a multiply, then an in-place add)."""
        import torch

        inv_std = torch.tensor([1 / s for s in self.std], dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        shift = torch.tensor(
            [-m / s for m, s in zip(self.mean, self.std)], dtype=pixels.dtype, device=pixels.device
        ).view(1, 3, 1, 1)
        return pixels.mul(inv_std).add_(shift)


def jpeg_roundtrip(array: np.ndarray, quality: int) -> np.ndarray:
    """The uint8 HWC array after a JPEG encode (Pillow, its default subsampling) and decode."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def letterbox_size(width: int, height: int, out_height: int, out_width: int) -> tuple[int, int]:
    """(rows, cols) an image takes when its long side is scaled to the output's side (at least one pixel each)."""
    scale = min(out_height, out_width) / max(width, height)
    return max(1, min(out_height, round(height * scale))), max(1, min(out_width, round(width * scale)))


def center_crop(array: np.ndarray, height: int, width: int, offset: str = "floor") -> np.ndarray:
    """The centred (height, width) window of an HWC array (zero-padded where the array is smaller)."""
    h, w = array.shape[:2]
    if h < height or w < width:
        padded = np.zeros((max(h, height), max(w, width), array.shape[2]), dtype=array.dtype)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = array
        array, h, w = padded, padded.shape[0], padded.shape[1]
    if offset == "round":
        top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    else:
        top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(array[top : top + height, left : left + width])


def resize_bilinear_aligned(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """TensorFlow's resizeBilinear(alignCorners=true, halfPixelCenters=false) of an HWC float32 array."""
    in_h, in_w = x.shape[:2]
    if (in_h, in_w) == (height, width):
        return np.ascontiguousarray(x, dtype=np.float32)

    def axis(n_in: int, n_out: int):
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else (n_in / n_out)
        src = np.arange(n_out, dtype=np.float64) * ratio
        lo = np.floor(src).astype(np.int64).clip(0, n_in - 1)
        hi = np.minimum(n_in - 1, np.ceil(src).astype(np.int64))
        return lo, hi, (src - lo).astype(np.float32)

    top, bottom, row_frac = axis(in_h, height)
    left, right, col_frac = axis(in_w, width)
    x = x.astype(np.float32, copy=False)
    col = col_frac[None, :, None]
    upper = x[top][:, left] + (x[top][:, right] - x[top][:, left]) * col
    lower = x[bottom][:, left] + (x[bottom][:, right] - x[bottom][:, left]) * col
    return np.ascontiguousarray(upper + (lower - upper) * row_frac[:, None, None], dtype=np.float32)
