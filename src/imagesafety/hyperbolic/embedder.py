"""A trained HySAC model as an encoder of images and texts onto the hyperboloid (either mode).

Its identity is the content digest of the model folder together with its backbone's (LoRA and released
checkpoints) or its CLIP encoder's (light mode): two models in folders of the same name never share cached
embeddings or predictions, and neither does one model on two backbones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imagesafety.encoders.inference_mode import prepare_for_inference
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.checkpoint import load_hysac
from imagesafety.identity import path_digest
from imagesafety.pixels import PixelSpec


class HysacEmbedder:
    """`encode_images` / `encode_texts` -> space parts on the hyperboloid; `distance_to_origin` for classification."""

    def __init__(self, directory: str | Path, device: str = "cpu", encoder=None, backbone: str | None = None):
        self.directory = Path(directory).expanduser().resolve()
        self.model, self.card = load_hysac(self.directory, device, backbone)
        prepare_for_inference(self.model, device)
        self.mode = self.card.mode
        self.device = device
        if self.mode == "light":
            from imagesafety.encoders import load_encoder

            self.encoder = encoder if encoder is not None else load_encoder(str(self.card.encoder), device)
            if self.encoder.embed_dim != self.card.in_dim:
                raise ValueError(
                    f"{directory}: heads expect {self.card.in_dim}-d embeddings from {self.card.encoder!r}, "
                    f"encoder {self.encoder.name!r} gives {self.encoder.embed_dim}-d"
                )
            self.pixel_spec: PixelSpec = self.encoder.pixel_spec
            base_identity = self.encoder.identity
        else:
            self.encoder = None
            self.pixel_spec = self.model.pixel_spec
            base_identity = self.card.backbone_identity
        digest = hashlib.sha256(f"{path_digest(self.directory)}|{base_identity}".encode()).hexdigest()
        self.identity = f"sha256:{digest}"
        self.name = f"hysac:{self.directory}"
        self.logit_scale = float(self.model.logit_scale.exp().item())

    @property
    def embed_dim(self) -> int:
        return self.card.embed_dim

    @property
    def curvature(self) -> float:
        return self.model.curvature.item()

    @property
    def model_id(self) -> str:
        """Identity recorded in indexes built with this model."""
        return self.identity

    def prepare(self, image: Image.Image) -> np.ndarray:
        return self.pixel_spec.prepare(image)

    def pixels(self, items: list[np.ndarray]) -> torch.Tensor:
        return self.pixel_spec.tensor(items, self.device)

    def image_points(self, pixels: torch.Tensor) -> torch.Tensor:
        """Differentiable: [0, 1] pixels -> hyperboloid points."""
        if self.mode == "light":
            return self.model.encode_image(self.encoder.image_features(pixels))
        return self.model.encode_image(self.pixel_spec.normalize(pixels))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_points(pixels)

    def encode_prepared(self, items: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return self.image_points(self.pixels(items)).float().cpu().numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare(img) for img in images])

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if any(not t or not t.strip() for t in texts):
            raise ValueError("empty text query")
        with torch.no_grad():
            if self.mode == "light":
                feats = torch.from_numpy(self.encoder.encode_texts(texts)).to(self.device)
                return self.model.encode_text(feats).float().cpu().numpy()
            return self.model.encode_text(texts).float().cpu().numpy()

    def distance_to_origin(self, points: np.ndarray) -> np.ndarray:
        return L.dist_to_origin(torch.from_numpy(np.asarray(points, dtype=np.float32)), self.curvature).numpy()


def from_spec(
    arg: str | None, *, device: str | None = None, backbone: str | None = None, encoder: Any = None
) -> HysacEmbedder:
    """`hysac:DIR` as an encoder (registry factory)."""
    if not arg:
        raise ValueError("hysac needs a model folder: hysac:PATH")
    return HysacEmbedder(arg, device or "cpu", encoder=encoder, backbone=backbone)
