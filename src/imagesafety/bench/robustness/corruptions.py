"""Natural corruptions at severities 1-5: ImageNet-C definitions where they exist, plus platform re-encodings.

Each function maps an RGB PIL image to a corrupted RGB PIL image, deterministically for a given
numpy Generator. Severity constants follow Hendrycks & Dietterich's ImageNet-C.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from imagesafety import registry
from imagesafety.classifiers.base import (
    CachesAnswers,
    Classifier,
    PreparesInput,
    SafetyClassifier,
    coverage,
    preferred_batch_size,
)

SEVERITIES = (1, 2, 3, 4, 5)


def _array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _image(x: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8))


def gaussian_noise(img, severity, rng):
    c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    x = _array(img)
    return _image(x + rng.normal(size=x.shape, scale=c))


def gaussian_blur(img, severity, rng):
    from scipy.ndimage import gaussian_filter

    sigma = [1, 2, 3, 4, 6][severity - 1]
    x = _array(img)
    return _image(gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0))


def brightness(img, severity, rng):
    c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    from skimage.color import hsv2rgb, rgb2hsv  # as ImageNet-C computes it

    hsv = rgb2hsv(_array(img))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _image(hsv2rgb(hsv))


def contrast(img, severity, rng):
    c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    x = _array(img)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _image((x - means) * c + means)


def jpeg(img, severity, rng):
    quality = [25, 18, 15, 10, 7][severity - 1]
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def resize(img, severity, rng):
    """Downscale then upscale back, as platforms do to thumbnails and previews."""
    factor = [0.75, 0.5, 0.4, 0.3, 0.25][severity - 1]
    small = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.BILINEAR)
    return small.resize(img.size, Image.BICUBIC)


def crop(img, severity, rng):
    """Keep a random window of the given fraction of each side, resized back."""
    keep = [0.9, 0.8, 0.7, 0.6, 0.5][severity - 1]
    w, h = max(1, round(img.width * keep)), max(1, round(img.height * keep))
    left = int(rng.integers(0, img.width - w + 1))
    top = int(rng.integers(0, img.height - h + 1))
    return img.crop((left, top, left + w, top + h)).resize(img.size, Image.BICUBIC)


def screenshot(img, severity, rng):
    """A screenshot of the image shown in an app: scaled, framed by interface bars, re-encoded as JPEG."""
    scale = [0.9, 0.8, 0.7, 0.6, 0.5][severity - 1]
    quality = [90, 80, 70, 60, 50][severity - 1]
    w, h = img.size
    inner = img.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    canvas = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(200, 256, 3)))
    bar = max(1, round(h * (1 - scale) / 2))
    canvas.paste(Image.new("RGB", (w, bar), (32, 32, 32)), (0, 0))
    canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def corruption_names() -> list[str]:
    """Registered corruptions (built-in ones and plug-ins)."""
    return list(registry.entries("corruption"))


def corruption(name: str) -> Callable[[Image.Image, int, np.random.Generator], Image.Image]:
    return registry.get("corruption", name).load()


def corrupt(img: Image.Image, name: str, severity: int, seed: int = 0) -> Image.Image:
    """The corrupted image; randomness depends only on (seed, the image's pixels), not on run order."""
    function = corruption(name)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1-5, got {severity}")
    fingerprint = zlib.crc32(np.asarray(img.convert("RGB"))[::7, ::7].tobytes())
    return function(img.convert("RGB"), severity, np.random.default_rng([seed, fingerprint, severity]))


class CorruptedClassifier(Classifier):
    """A classifier seeing corrupted images: same name and version, the corruption in its config (so cached apart)."""

    def __init__(self, classifier: SafetyClassifier, corruption: str, severity: int, seed: int = 0):
        self.inner, self.corruption, self.severity, self.seed = classifier, corruption, severity, seed
        self.name, self.version, self.taxonomy = classifier.name, classifier.version, classifier.taxonomy
        self.threshold = classifier.threshold
        self.covers = coverage(classifier)
        self.preferred_batch_size = preferred_batch_size(classifier)
        self.config = {**classifier.config, "corruption": corruption, "severity": severity, "corruption_seed": seed}
        self._prepares = isinstance(classifier, PreparesInput)

    def prepare(self, image: Image.Image):
        corrupted = corrupt(image, self.corruption, self.severity, self.seed)
        return self.inner.prepare(corrupted) if self._prepares else corrupted

    def predict_prepared(self, items):
        return self.inner.predict_prepared(items) if self._prepares else self.inner.predict(items)

    def attach_cache(self, cache) -> None:
        if isinstance(self.inner, CachesAnswers):
            self.inner.attach_cache(cache)
