"""The encoder contracts shared by zero-shot classifiers, probes, the zoo and embedding jobs."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from imagesafety.pixels import PixelSpec


@runtime_checkable
class Encoder(Protocol):
    """Maps images into an embedding space. `name` is the spec it was built from (local paths absolute) and
    `identity` the content identity of its weights: caches and saved cards key on both."""

    name: str
    identity: str
    embed_dim: int

    def prepare(self, image: Image.Image) -> Any: ...  # per-image CPU work (decoding threads)

    def encode_prepared(self, items: list[Any]) -> np.ndarray: ...  # (n, d) float32

    def encode_images(self, images: list[Image.Image]) -> np.ndarray: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Encoders with a text tower in the same space (CLIP, SigLIP, HySAC)."""

    logit_scale: float

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class RawFeatures(Protocol):
    """Torch CLIP encoders whose features before the final normalisation are reachable (the zoo's heads were trained
    on them): `pixels` batches prepared arrays, `raw_image_features` is differentiable in those pixels."""

    def pixels(self, items: list[Any]) -> Any: ...

    def raw_image_features(self, pixels: Any) -> Any: ...


@runtime_checkable
class DifferentiableEncoder(Protocol):
    """Torch encoders: `pixel_spec` turns images into [0, 1] pixels and `image_features` is differentiable in them."""

    pixel_spec: PixelSpec
    device: str

    def pixels(self, items: list[Any]) -> Any: ...

    def image_features(self, pixels: Any) -> Any: ...
