"""How much of an animation or video is read, and the records of what was read: every frame is a view, and a
transparent frame two views (flattened onto white and onto black), so content can hide neither in a later frame
nor in a colour that vanishes on one background."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode safely (unreadable, truncated, oversized, or not an image)."""


class MediaBudgetError(ImageDecodeError):
    """A file over one of the frame budgets (named in the message); refused before or while decoding, never passed."""


def failure_line(name: str, exc: Exception) -> str:
    """One file's failure as its error row: a decoding error says it all; anything else (a loader, a preprocessor)
    is named with the file and its type."""
    return str(exc) if isinstance(exc, ImageDecodeError) else f"{name}: {type(exc).__name__}: {exc}"


FRAME_RULE = re.compile(r"^(?:max|(\d+)-of-n)$")


@dataclass(frozen=True)
class FramePolicy:
    """Budgets and the aggregation rule for files with several frames; defaults are safe for untrusted files.

    `rule` is `max` (unsafe if any view is) or `K-of-n` (unsafe if at least K frames are). Over `max_frames`,
    frames are sampled: the first, the last and evenly spaced ones between (the rule is recorded)."""

    max_frames: int = 64  # frames classified per animation or video
    max_declared_frames: int = 4096  # an animation declaring more is refused before any frame is decoded
    max_total_pixels: int = 512 * 1024 * 1024  # pixels decoded per file, all frames together
    fps: float = 1.0  # video frames sampled per second
    max_duration_s: float = 3600.0  # a longer video is refused
    max_frame_rate: float = 240.0  # a video declaring a higher frame rate is refused
    rule: str = "max"
    early_exit: bool = False  # stop a video at the first view over the threshold

    def __post_init__(self) -> None:
        if not FRAME_RULE.match(self.rule):
            raise ValueError(f"--frame-rule: {self.rule!r} is not 'max' or 'K-of-n' (e.g. 2-of-n)")
        if self.k < 1:
            raise ValueError("--frame-rule: K in K-of-n must be at least 1")
        for name in ("max_frames", "max_declared_frames", "max_total_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.fps <= 0 or self.max_duration_s <= 0 or self.max_frame_rate <= 0:
            raise ValueError("fps, max_duration_s and max_frame_rate must be above 0")

    @property
    def k(self) -> int:
        """How many frames must be unsafe (1 for `max`)."""
        match = FRAME_RULE.match(self.rule)
        return int(match.group(1)) if match and match.group(1) else 1

    def key(self) -> dict[str, Any]:
        """Every setting that can change an image's aggregated prediction (a part of the cache key)."""
        return asdict(self)


@dataclass(frozen=True)
class ViewInfo:
    """Where one view comes from: frame index, its time in seconds (None for stills), and the background
    transparent pixels were flattened onto (None when the frame is opaque)."""

    frame: int = 0
    timestamp_s: float | None = None
    background: str | None = None


@dataclass
class Sampling:
    """What was read of a file: its kind (`still`, `animation`, `video`), how many frames it has (or, for video,
    would have at the sampling rate), which were read and by what rule."""

    kind: str = "still"
    frames_total: int = 1
    frames_read: list[int] = field(default_factory=lambda: [0])
    rule: str = "all"
    duration_s: float | None = None
    width: int = 0
    height: int = 0

    @property
    def pixels(self) -> int:
        """Pixels of the frames that will be classified."""
        return self.width * self.height * len(self.frames_read)


def sample_indices(total: int, budget: int) -> list[int]:
    """All of range(total), or `budget` of them: the first, the last and evenly spaced ones between."""
    if total <= budget:
        return list(range(total))
    if budget == 1:
        return [0]
    step = (total - 1) / (budget - 1)
    return sorted({round(i * step) for i in range(budget)})


@dataclass
class ViewScore:
    """One classified view's unsafe score, and where the view came from."""

    frame: int
    timestamp_s: float | None
    background: str | None
    score: float


@dataclass
class ViewsReport:
    """How an image's views became its one prediction: what was read (`sampling`), the rule (`aggregate`: `max` or
    `K-of-n`), every view's score, the view that decided, and the views left unclassified by an early exit."""

    sampling: Sampling
    aggregate: str
    scores: list[ViewScore]
    decided_by: ViewScore
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewsReport:
        return cls(
            sampling=Sampling(**data["sampling"]),
            aggregate=data["aggregate"],
            scores=[ViewScore(**s) for s in data["scores"]],
            decided_by=ViewScore(**data["decided_by"]),
            skipped=int(data.get("skipped", 0)),
        )
