"""Every file an image can be, read as views: stills, every frame of animations (GIF, WebP, APNG), videos (PyAV,
the `[video]` extra), and transparent frames on both backgrounds; within a `FramePolicy`'s budgets."""

from __future__ import annotations

from collections.abc import Iterator

from PIL import Image

from imagesafety.media.policy import FramePolicy, ImageDecodeError, MediaBudgetError, Sampling, ViewInfo, sample_indices
from imagesafety.media.still import read_still_views
from imagesafety.media.video import looks_like_video, read_video_views

__all__ = [
    "FramePolicy",
    "ImageDecodeError",
    "MediaBudgetError",
    "Sampling",
    "ViewInfo",
    "read_views",
    "sample_indices",
    "view_picture",
]


def read_views(
    data: bytes, policy: FramePolicy, max_pixels: int, name: str = "image"
) -> tuple[Sampling, Iterator[tuple[Image.Image, ViewInfo]]]:
    """What will be read of the file, and its views (RGB image, where it came from), decoded lazily in order."""
    if looks_like_video(data):
        return read_video_views(data, policy, max_pixels, name)
    return read_still_views(data, policy, max_pixels, name)


def view_picture(data: bytes, view: ViewInfo | None, max_pixels: int, name: str = "image") -> Image.Image:
    """The picture one view shows (a report's thumbnail of the frame that decided): the frame at its index (animations)
    or time (videos), on its background; the first view when `view` is None."""
    policy = FramePolicy(max_frames=1, max_declared_frames=1 << 20, max_total_pixels=1 << 62)
    if view is None or (view.frame == 0 and view.timestamp_s in (None, 0.0)):
        return next(read_views(data, policy, max_pixels, name)[1])[0]
    if looks_like_video(data):
        t = float(view.timestamp_s or 0.0)
        policy = FramePolicy(max_frames=1 << 20, fps=1 / max(t, 1e-3), max_total_pixels=1 << 62)
        for image, info in read_views(data, policy, max_pixels, name)[1]:
            if info.timestamp_s is not None and info.timestamp_s + 1e-3 >= t and info.background == view.background:
                return image
    from imagesafety.media.still import frame_views, open_image

    img = open_image(data, max_pixels, name)
    img.seek(view.frame)
    img.load()
    return next(
        (image for image, info in frame_views(img, view) if info.background == view.background), img.convert("RGB")
    )
