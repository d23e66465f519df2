"""An image read as several views (frames, and each transparent frame on white and on black) is classified view by
view in shared batches; these rules turn the views' results back into the image's one result.

Per frame the worse background counts; across frames the rule is `max` (unsafe when any frame is) or `K-of-n`
(the K-th highest frame score, so it reaches the threshold exactly when K frames do; K is capped at the number of
frames read, so a still image is judged by its one frame and never passes for lack of frames).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagesafety.classifiers.base import Prediction, Usage
from imagesafety.media import FramePolicy, Sampling, ViewInfo, read_views
from imagesafety.media.policy import ViewScore, ViewsReport


@dataclass(eq=False)
class Views:
    """One image's prepared views in reading order, and what is read of the file."""

    sampling: Sampling
    info: list[ViewInfo] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)


def prepared_views(data: bytes, policy: FramePolicy, max_pixels: int, name: str, prepare) -> Views:
    """Every view decoded and passed through `prepare` at once (the decoded picture is dropped right after)."""
    return prepare_views(*read_views(data, policy, max_pixels, name), prepare)


def prepare_views(sampling: Sampling, views: Iterable[tuple[Any, ViewInfo]], prepare) -> Views:
    """Views (decoded lazily, or already decoded by a worker process) passed through `prepare` one by one."""
    out = Views(sampling)
    for image, info in views:
        out.inputs.append(prepare(image))
        out.info.append(info)
    return out


def is_plain(views: Views) -> bool:
    """A still, opaque image: one view, whose result is the image's result unchanged."""
    return len(views.info) == 1 and views.sampling.kind == "still" and views.info[0].background is None


def _kth_largest(values: list[float], k: int) -> float:
    return float(sorted(values, reverse=True)[min(k, len(values)) - 1])


def combine_predictions(views: Views, preds: list[Prediction], policy: FramePolicy) -> Prediction:
    """The image's prediction from its views' predictions (`preds` may be shorter than the views after an early
    exit)."""
    if is_plain(views):
        return preds[0]
    frames: dict[int, list[int]] = {}
    for i in range(len(preds)):
        frames.setdefault(views.info[i].frame, []).append(i)
    # per frame, the worse background
    worst = {f: max(idx, key=lambda i: preds[i].unsafe_score) for f, idx in frames.items()}
    k = min(policy.k, len(frames))
    frame_scores = {f: preds[i].unsafe_score for f, i in worst.items()}
    score = _kth_largest(list(frame_scores.values()), k)
    deciding = next(worst[f] for f in sorted(frames, key=lambda f: -frame_scores[f]) if frame_scores[f] <= score)
    frame_decisions = [max(preds[i].decision for i in idx) for idx in frames.values()]
    decision = int(sum(frame_decisions) >= k)
    categories: dict[str, float] = {}
    for key in preds[0].category_scores:
        per_frame = [max(preds[i].category_scores.get(key, 0.0) for i in idx) for idx in frames.values()]
        categories[key] = _kth_largest(per_frame, k)
    scores = [
        ViewScore(views.info[i].frame, views.info[i].timestamp_s, views.info[i].background, float(p.unsafe_score))
        for i, p in enumerate(preds)
    ]
    report = ViewsReport(
        views.sampling, policy.rule, scores, scores[deciding], skipped=len(views.sampling.frames_read) - len(frames)
    )
    return Prediction(
        unsafe_score=score,
        decision=decision,
        category_scores=categories,
        raw=preds[deciding].raw,
        views=report,
        usage=Usage.total([p.usage for p in preds]),  # every view's answers were paid for, not the deciding one's
    )


def combine_embeddings(views: Views, vectors: list[np.ndarray]) -> np.ndarray:
    """An image's embedding from its views: their mean (a still opaque image: its one embedding)."""
    if len(vectors) == 1:
        return vectors[0]
    return np.mean(np.stack(vectors), axis=0).astype(np.float32)
