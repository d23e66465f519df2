"""A trained HySAC model as an embedder of images and texts onto the hyperboloid (either mode)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagesafety.encoders.inference_mode import prepare_for_inference
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.checkpoint import load_hysac


class HysacEmbedder:
    """`encode_images` / `encode_texts` -> space parts on the hyperboloid; `distance_to_origin` for classification."""

    def __init__(self, directory: str | Path, device: str = "cpu", encoder=None, backbone: str | None = None):
        self.model, self.card = load_hysac(directory, device, backbone)
        prepare_for_inference(self.model, device)
        self.mode = self.card["mode"]
        self.device = device
        self.directory = Path(directory)
        if self.mode == "light":
            from imagesafety.encoders import load_encoder

            self.encoder = encoder if encoder is not None else load_encoder(self.card["encoder"], device)
            if self.encoder.embed_dim != self.card["in_dim"]:
                raise ValueError(f"{directory}: heads expect {self.card['in_dim']}-d embeddings from {self.card['encoder']!r}, "
                                 f"encoder {self.encoder.name!r} gives {self.encoder.embed_dim}-d")
            self.image_size = getattr(self.encoder, "image_size", 224)
        else:
            self.encoder = None
            self.image_size = self.model.image_size

    @property
    def name(self) -> str:
        """Encoder id for caches: embeddings depend on these exact weights."""
        return f"hysac:{self.model_id}"

    @property
    def embed_dim(self) -> int:
        return int(self.card["embed_dim"])

    @property
    def curvature(self) -> float:
        return self.model.curvature.item()

    @property
    def model_id(self) -> str:
        """Identity of the weights, recorded in indexes built with this model."""
        if "model_id" in self.card:
            return self.card["model_id"]
        digest = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
        self.card["model_id"] = digest.hexdigest()[:16]
        return self.card["model_id"]

    def prepare_pixels(self, image: Image.Image) -> np.ndarray:
        from imagesafety.encoders.base import resize_center_crop

        return np.asarray(resize_center_crop(image, self.image_size))

    def pixels(self, arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).to(self.device).permute(0, 3, 1, 2).float().div(255.0)

    def image_points(self, pixels: torch.Tensor) -> torch.Tensor:
        """Differentiable: [0, 1] pixels -> hyperboloid points."""
        if self.mode == "light":
            feats = self.encoder.image_features(pixels)
            return self.model.encode_image(feats)
        return self.model.encode_image(pixels)

    def encode_prepared(self, arrays: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return self.image_points(self.pixels(arrays)).float().cpu().numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare_pixels(img) for img in images])

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
