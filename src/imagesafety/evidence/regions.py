"""From an evidence map to regions: how pixels are removed (fills), the top evidence boxes, the smallest set of
evidence-ranked patches whose removal flips the decision, and deletion / insertion curves (RISE's faithfulness)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from imagesafety.evidence.maps import Scorer

FILLS = ("blur", "pixelate", "mean", "telea", "ns")


def filled(image: np.ndarray, fill: str) -> np.ndarray:
    """The whole image as `fill` would replace it (blur, pixelate, mean colour); inpainting fills use `remove`."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; fills: {', '.join(FILLS)}")
    pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    if fill == "blur":
        out = pil.filter(ImageFilter.GaussianBlur(radius=max(2, min(pil.size) // 16)))
    elif fill == "pixelate":
        side = max(1, min(pil.size) // 16)
        out = pil.resize((max(1, pil.width // side), max(1, pil.height // side)), Image.BOX).resize(
            pil.size, Image.NEAREST
        )
    else:
        return np.broadcast_to(image.reshape(-1, 3).mean(axis=0), image.shape).astype(image.dtype).copy()
    return np.asarray(out, dtype=np.float32) / 255


def remove(image: np.ndarray, mask: np.ndarray, fill: str, background: np.ndarray | None = None) -> np.ndarray:
    """`image` with the pixels where `mask` is true replaced by the fill (OpenCV's Telea / Navier-Stokes inpainting for
    `telea` / `ns`, from the rest of the image)."""
    if fill in ("telea", "ns"):
        import cv2

        u8 = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        flag = cv2.INPAINT_TELEA if fill == "telea" else cv2.INPAINT_NS
        return cv2.inpaint(u8, mask.astype(np.uint8) * 255, 3, flag).astype(np.float32) / 255
    back = filled(image, fill) if background is None else background
    return np.where(mask[..., None], back, image).astype(np.float32)


def top_boxes(heatmap: np.ndarray, k: int = 3, level: float = 0.5) -> list[list[float]]:
    """Up to `k` boxes [x0, y0, x1, y1, weight] around the connected regions (4-connected) where the map rises above its
    median by at least `level` x its peak's rise (RISE maps sit on a floor of the mean score), heaviest first; weight:
    the region's share of the evidence above the median."""
    lifted = heatmap - float(np.median(heatmap))
    peak = float(lifted.max())
    if peak <= 0:
        return []
    hot = lifted >= level * peak
    heatmap = lifted
    seen = np.zeros_like(hot)
    positive = float(np.clip(lifted, 0, None).sum()) or 1.0
    boxes = []
    for y, x in zip(*np.nonzero(hot)):
        if seen[y, x]:
            continue
        queue, ys, xs, weight = deque([(y, x)]), [], [], 0.0
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            ys.append(cy)
            xs.append(cx)
            weight += float(heatmap[cy, cx])
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < hot.shape[0] and 0 <= nx < hot.shape[1] and hot[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        boxes.append([float(min(xs)), float(min(ys)), float(max(xs) + 1), float(max(ys) + 1), weight / positive])
    return sorted(boxes, key=lambda b: -b[4])[:k]


def patch_order(heatmap: np.ndarray, patch: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the patch grid, most evidence first."""
    height, width = heatmap.shape
    cells = [
        (y, min(y + patch, height), x, min(x + patch, width))
        for y in range(0, height, patch)
        for x in range(0, width, patch)
    ]
    return sorted(cells, key=lambda c: -float(heatmap[c[0] : c[1], c[2] : c[3]].mean()))


@dataclass
class Flip:
    """The smallest share of the image whose removal flips the decision (None: no flip within `max_area`)."""

    fraction: float | None
    box: list[float] | None
    score_after: float | None
    image_after: np.ndarray | None


def minimal_flip(
    image: np.ndarray,
    heatmap: np.ndarray,
    scorer: Scorer,
    threshold: float,
    fill: str = "blur",
    patch: int = 8,
    max_area: float = 0.5,
    batch_size: int = 32,
) -> Flip:
    """Greedy over evidence-ranked patches: remove the top 1, 2, ... patches (scored a batch of candidates at a time,
    each
    batch built when it is scored, so memory is bounded by a batch) and stop at the first set that brings the score
    below
    `threshold`, up to `max_area` of the image."""
    order = patch_order(heatmap, patch)
    total = image.shape[0] * image.shape[1]
    background = None if fill in ("telea", "ns") else filled(image, fill)
    mask = np.zeros(image.shape[:2], dtype=bool)
    index, removed = 0, 0
    while index < len(order):
        chunk: list[tuple[float, tuple[int, int, int, int]]] = []
        while index < len(order) and len(chunk) < batch_size:
            y0, y1, x0, x1 = order[index]
            area = (y1 - y0) * (x1 - x0)  # the grid's cells are disjoint
            if (removed + area) / total > max_area:
                index = len(order)
                break
            index, removed = index + 1, removed + area
            chunk.append((removed / total, (y0, y1, x0, x1)))
        if not chunk:
            break
        base = mask  # the candidates of this batch: the patches removed so far, plus the first k of this batch
        edited, masks = [], []
        for _, (y0, y1, x0, x1) in chunk:
            base[y0:y1, x0:x1] = True
            masks.append(base.copy())
            edited.append(remove(image, base, fill, background))
        mask = base
        scores = np.asarray(scorer(edited), dtype=np.float64)
        for (fraction, _), m, score, after in zip(chunk, masks, scores, edited):
            if score < threshold:
                ys, xs = np.nonzero(m)
                return Flip(
                    fraction,
                    [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                    float(score),
                    after,
                )
    return Flip(None, None, None, None)


def deletion_insertion(
    image: np.ndarray, heatmap: np.ndarray, scorer: Scorer, fill: str = "blur", steps: int = 16, batch_size: int = 32
) -> tuple[float, float]:
    """RISE's deletion and insertion AUCs: the score as the most salient pixels are removed (deletion: lower is more
    faithful) or put back into the filled image (insertion: higher is more faithful), at `steps` equal shares; the AUC
    is
    the trapezoid mean over shares 0..1. Copies are built a batch at a time."""
    order = np.argsort(-heatmap.ravel(), kind="stable")
    total = order.size
    background = filled(image, "blur" if fill in ("telea", "ns") else fill)

    def copy(i: int) -> np.ndarray:
        step, insert = i % (steps + 1), i > steps
        mask = np.zeros(total, dtype=bool)
        mask[order[: round(step * total / steps)]] = True
        mask = mask.reshape(heatmap.shape)[..., None]
        return (
            np.where(mask, image, background).astype(np.float32)
            if insert
            else np.where(mask, background, image).astype(np.float32)
        )

    count = 2 * (steps + 1)
    scores: list[float] = []
    for start in range(0, count, batch_size):
        scores.extend(
            np.asarray(scorer([copy(i) for i in range(start, min(count, start + batch_size))]), dtype=np.float64)
        )
    d, ins = np.asarray(scores[: steps + 1]), np.asarray(scores[steps + 1 :])
    return float(np.trapezoid(d, dx=1 / steps)), float(np.trapezoid(ins, dx=1 / steps))
