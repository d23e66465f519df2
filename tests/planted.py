"""Inputs whose right answer is known by construction: a classifier that fires on a small planted patch of one colour,
and animations, videos and transparent images with the patch in a known frame, time or colour."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.taxonomy import UNSAFEBENCH

MAGENTA = (255, 0, 255)
WHITE = (255, 255, 255)


class PlantedPatchClassifier(Classifier):
    """Unsafe score = `gain` x the share of pixels within `tolerance` of `colour`, as long as that share is at most half
    the image (a picture that is all of the colour is a background, not a planted patch). Counts the views it sees."""

    name = "planted"
    version = "1"
    taxonomy = UNSAFEBENCH
    threshold = 0.5

    def __init__(self, colour=MAGENTA, gain: float = 40.0, tolerance: float = 60.0, threshold: float = 0.5):
        self.colour, self.gain, self.tolerance, self.threshold = (
            np.asarray(colour, dtype=np.float32),
            gain,
            tolerance,
            threshold,
        )
        self.config = {"colour": list(colour), "gain": gain, "tolerance": tolerance, "threshold": threshold}
        self.images_seen = 0

    def score(self, image: Image.Image) -> float:
        arr = np.asarray(image.convert("RGB"), dtype=np.float32)
        share = float((np.abs(arr - self.colour).max(axis=-1) <= self.tolerance).mean())
        return 0.0 if share > 0.5 else min(1.0, self.gain * share)

    def predict_prepared(self, items):
        self.images_seen += len(items)
        out = []
        for img in items:
            s = self.score(img)
            out.append(
                Prediction(
                    s, decide(s, self.threshold), {"sexual": s, "violence": 0.0}, {"planted_share": s / self.gain}
                )
            )
        return out


def from_spec(arg=None, **options):
    """Registry factory (tests register it as a plug-in)."""
    return PlantedPatchClassifier(**options)


def scene(rng: np.random.Generator, size=(80, 64), shade: int = 0) -> np.ndarray:
    """A smooth harmless picture (no colour near magenta)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([40 + (x * 2 + shade) % 90, 90 + (y * 2) % 80, 60 + ((x + y) % 50)], axis=-1)
    return np.clip(base + rng.integers(0, 8, base.shape), 0, 255).astype(np.uint8)


def plant(arr: np.ndarray, box=(30, 20, 42, 32), colour=MAGENTA) -> np.ndarray:
    out = arr.copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = colour
    return out


def animation_bytes(
    fmt: str, frames: int = 12, planted: int | None = 7, seed: int = 0, duration_ms: int = 100
) -> bytes:
    """An animated GIF / WEBP / PNG (APNG) whose only unsafe frame is `planted`."""
    rng = np.random.default_rng(seed)
    pictures = [
        Image.fromarray(plant(scene(rng, shade=i * 7)) if i == planted else scene(rng, shade=i * 7))
        for i in range(frames)
    ]
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    pictures[0].save(buf, fmt, save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0, **extra)
    return buf.getvalue()


def video_bytes(
    seconds: float = 6.0,
    rate: int = 10,
    planted_from: float = 3.0,
    planted_to: float = 3.5,
    size=(96, 64),
    codec: str = "libx264",
    container: str = "mp4",
    gop: int | None = None,
) -> bytes:
    """A short video (PyAV) whose patch is on screen from `planted_from` to `planted_to` seconds."""
    import av

    buf = io.BytesIO()
    out = av.open(buf, mode="w", format=container)
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if gop:
        stream.codec_context.gop_size = gop
    rng = np.random.default_rng(1)
    for i in range(int(seconds * rate)):
        t = i / rate
        arr = scene(rng, size)
        if planted_from <= t < planted_to:
            w, h = size
            arr = plant(arr, (w // 4, h // 4, w * 7 // 12, h * 5 // 8))
        for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def white_on_transparent_png(size=(80, 64), box=(30, 20, 42, 32)) -> bytes:
    """White content drawn on a fully transparent background: invisible on white, plain on black."""
    arr = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = (255, 255, 255, 255)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def register_planted(monkeypatch, **attrs) -> None:
    """Make `planted` a classifier spec, as an installed plug-in would."""
    from importlib.metadata import EntryPoint

    from imagesafety import registry

    real = registry.entry_points

    def fake(group=None, **kw):
        found = list(real(group=group, **kw))
        if group == "imagesafety.classifiers":
            found.append(EntryPoint("planted", "planted:from_spec", group))
        return found

    monkeypatch.setattr(registry, "entry_points", fake)
    registry._plugins.cache_clear()
