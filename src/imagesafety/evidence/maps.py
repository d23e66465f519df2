"""Evidence maps: how much each pixel of an image pushes a classifier's unsafe score up.

Pure functions over an image array (H, W, 3, float in [0, 1]) and a batched scorer (a list of arrays -> their scores):
`occlusion_map` (captum's `Occlusion` semantics: each window's score drop spread over its pixels, averaged over the
windows that cover each pixel; windows at 0, s, 2s, ... clipped at the border) and `rise_map` (Petsiuk et al., BMVC
2018:
random low-resolution binary masks, bilinearly upsampled with a random shift; saliency = sum_i score(I * M_i) M_i /
(N p)). Many masked copies go through one scorer call. Gradient maps come from captum (`gradient_map`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

Scorer = Callable[[list[np.ndarray]], np.ndarray]


def windows(height: int, width: int, window: int, stride: int) -> Iterator[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every occlusion window, as captum places them: ceil((side - window) / stride) + 1 per
    axis."""
    window_h, window_w = min(window, height), min(window, width)
    rows = int(np.ceil((height - window_h) / stride)) + 1
    cols = int(np.ceil((width - window_w) / stride)) + 1
    for r in range(rows):
        for c in range(cols):
            y0, x0 = r * stride, c * stride
            yield y0, min(y0 + window_h, height), x0, min(x0 + window_w, width)


def occlusion_map(
    image: np.ndarray,
    scorer: Scorer,
    window: int,
    stride: int,
    baseline: np.ndarray | float = 0.0,
    batch_size: int = 32,
) -> np.ndarray:
    """(H, W) map: for each pixel, the mean over windows covering it of score(image) - score(image with the window
    replaced by `baseline`, a constant or an array of the image's shape)."""
    height, width = image.shape[:2]
    base = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape)
    reference = float(scorer([image])[0])
    total = np.zeros((height, width), dtype=np.float64)
    count = np.zeros((height, width), dtype=np.float64)
    boxes = list(windows(height, width, window, stride))
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        copies = []
        for y0, y1, x0, x1 in chunk:
            masked = image.copy()
            masked[y0:y1, x0:x1] = base[y0:y1, x0:x1]
            copies.append(masked)
        scores = np.asarray(scorer(copies), dtype=np.float64)
        for (y0, y1, x0, x1), score in zip(chunk, scores):
            total[y0:y1, x0:x1] += reference - score
            count[y0:y1, x0:x1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


class RiseMasks:
    """n RISE masks of (H, W), made when asked for (mask i from its own seed), so memory is bounded by a batch: a
    cells x cells binary grid (each cell kept with probability p), bilinearly upsampled to (cells + 1) x the cell size
    and cropped at a random shift within one cell."""

    def __init__(self, n: int, height: int, width: int, cells: int = 8, p: float = 0.5, seed: int = 0):
        self.n, self.height, self.width, self.cells, self.p, self.seed = n, height, width, cells, p, seed

    def __len__(self) -> int:
        return self.n

    def mask(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, i])
        cell_h, cell_w = int(np.ceil(self.height / self.cells)), int(np.ceil(self.width / self.cells))
        grid = (rng.random((self.cells, self.cells)) < self.p).astype(np.float32)
        big = np.asarray(
            Image.fromarray(grid, mode="F").resize(
                ((self.cells + 1) * cell_w, (self.cells + 1) * cell_h), Image.BILINEAR
            ),
            dtype=np.float32,
        )
        dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
        return big[dy : dy + self.height, dx : dx + self.width]

    def __getitem__(self, index: slice) -> np.ndarray:
        return np.stack([self.mask(i) for i in range(*index.indices(self.n))])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.mask(i) for i in range(self.n))


def rise_masks(n: int, height: int, width: int, cells: int = 8, p: float = 0.5, seed: int = 0) -> RiseMasks:
    """The RISE masks of an image of (height, width) (see `RiseMasks`)."""
    return RiseMasks(n, height, width, cells, p, seed)


def rise_map(
    image: np.ndarray,
    scorer: Scorer,
    masks: RiseMasks | np.ndarray,
    p: float = 0.5,
    baseline: np.ndarray | float = 0.0,
    batch_size: int = 32,
) -> np.ndarray:
    """(H, W) RISE saliency of `image` under `masks` (from `rise_masks`, with the same p)."""
    base = np.broadcast_to(np.asarray(baseline, dtype=image.dtype), image.shape)
    saliency = np.zeros(image.shape[:2], dtype=np.float64)
    for start in range(0, len(masks), batch_size):
        chunk = masks[start : start + batch_size]
        copies = [(image * m[..., None] + base * (1 - m[..., None])).astype(image.dtype) for m in chunk]
        scores = np.asarray(scorer(copies), dtype=np.float64)
        saliency += np.tensordot(scores, chunk, axes=1)
    return (saliency / (len(masks) * p)).astype(np.float32)


def pooled(heatmap: np.ndarray, patch: int) -> np.ndarray:
    """The map averaged over patch x patch cells and spread back to every pixel (gradient maps are noisy per pixel)."""
    height, width = heatmap.shape
    out = np.empty_like(heatmap)
    for y in range(0, height, patch):
        for x in range(0, width, patch):
            out[y : y + patch, x : x + patch] = heatmap[y : y + patch, x : x + patch].mean()
    return out


def gradient_map(image: np.ndarray, logit_fn, method: str = "integrated-gradients", steps: int = 32) -> np.ndarray:
    """(H, W) captum attribution of `logit_fn` (a torch function of a (B, 3, H, W) [0, 1] tensor) at the image:
    integrated
    gradients from a black image, or saliency; summed over colour channels."""
    import torch
    from captum.attr import IntegratedGradients, Saliency

    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
    if method == "integrated-gradients":
        attribution = IntegratedGradients(logit_fn).attribute(
            x, baselines=torch.zeros_like(x), n_steps=steps, internal_batch_size=steps
        )
    else:
        attribution = Saliency(logit_fn).attribute(x)
    return attribution[0].sum(dim=0).detach().cpu().numpy().astype(np.float32)
