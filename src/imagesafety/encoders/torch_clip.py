"""CLIP-family encoders in torch: transformers (CLIP, SigLIP) and open_clip, behind one class.

Preprocessing is ours (resize, centre crop, then normalisation inside the differentiable path),
so predictions and adversarial attacks see exactly the same function of the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.encoders.base import CLIP_MEAN, CLIP_STD, resize_center_crop


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class TorchClipEncoder:
    """Wraps a model with `encode_image(normalised pixels)` and `encode_text(texts)` callables."""

    def __init__(self, name: str, backend: Any, image_size: int, mean, std, logit_scale: float, device: str):
        import torch

        self.name = name
        self.backend = backend
        self.image_size = int(image_size)
        self.device = device
        self.logit_scale = float(logit_scale)
        mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # (p - mean) / std as p * (1 / std) + (-mean / std): one new full-size tensor instead of two, in attack loops too
        self._inv_std, self._shift = 1 / std, -mean / std
        with torch.no_grad():
            self.embed_dim = int(self.image_features(torch.zeros(1, 3, self.image_size, self.image_size, device=device)).shape[-1])

    def prepare_pixels(self, image: Image.Image) -> np.ndarray:
        """Per-image CPU work: resized, centre-cropped uint8 HWC array (run on decoding threads)."""
        return np.asarray(resize_center_crop(image, self.image_size))

    def stack_pixels(self, arrays: list[np.ndarray]):
        """[0, 1] float tensor (B, 3, S, S) from prepared arrays."""
        import torch

        batch = torch.from_numpy(np.stack(arrays)).to(self.device)
        return batch.permute(0, 3, 1, 2).float().div(255.0).contiguous()

    def pixels(self, images: list[Image.Image]):
        """[0, 1] float tensor (B, 3, S, S) of resized, centre-cropped images."""
        return self.stack_pixels([self.prepare_pixels(img) for img in images])

    def encode_prepared(self, arrays: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.image_features(self.stack_pixels(arrays)).float().cpu().numpy()

    def image_features(self, pixels):
        """Differentiable: [0, 1] pixels -> L2-normalised image embeddings."""
        feats = self.backend.encode_image(pixels.mul(self._inv_std).add_(self._shift))
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def text_features(self, texts: list[str]):
        feats = self.backend.encode_text(texts)
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare_pixels(img) for img in images])

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.text_features(texts).float().cpu().numpy()


class _TransformersBackend:
    def __init__(self, model, tokenizer, device: str):
        self.model, self.tokenizer, self.device = model, tokenizer, device

    @staticmethod
    def _pooled(out):
        return out if hasattr(out, "shape") else out.pooler_output  # transformers 4 returns a tensor, 5 an output

    def encode_image(self, pixel_values):
        return self._pooled(self.model.get_image_features(pixel_values=pixel_values))

    def encode_text(self, texts: list[str]):
        max_length = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return self._pooled(self.model.get_text_features(**tokens))


class _OpenClipBackend:
    def __init__(self, model, tokenizer, device: str):
        self.model, self.tokenizer, self.device = model, tokenizer, device

    def encode_image(self, pixel_values):
        return self.model.encode_image(pixel_values)

    def encode_text(self, texts: list[str]):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def load_transformers_clip(name_or_path: str, device: str | None = None) -> TorchClipEncoder:
    """A transformers CLIP or SigLIP checkpoint by hub id or local folder (config.json + weights + tokenizer)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from imagesafety.encoders.inference_mode import prepare_for_inference

    device = device or default_device()
    try:
        model = prepare_for_inference(AutoModel.from_pretrained(name_or_path).to(device), device)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise ValueError(f"cannot load transformers model {name_or_path!r}: {exc}") from exc
    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise ValueError(f"{name_or_path!r} is a {type(model).__name__}, not a CLIP/SigLIP image-text model")
    vision = model.config.vision_config
    mean, std = CLIP_MEAN, CLIP_STD
    config_file = Path(name_or_path) / "preprocessor_config.json"
    if config_file.is_file():
        pre = json.loads(config_file.read_text())
        mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
    elif "siglip" in model.config.model_type:
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    scale = float(torch.exp(model.logit_scale).item()) if hasattr(model, "logit_scale") else 100.0
    return TorchClipEncoder(f"hf:{name_or_path}", _TransformersBackend(model, tokenizer, device), vision.image_size, mean, std, scale, device)


def load_open_clip(arch: str, pretrained: str | None, device: str | None = None) -> TorchClipEncoder:
    """An open_clip model: architecture plus a pretrained tag (`openai`, `laion2b_s32b_b82k`) or checkpoint path."""
    try:
        import open_clip

        from imagesafety.encoders.inference_mode import prepare_for_inference
    except ImportError as exc:
        raise ImportError("open_clip models need: pip install 'imagesafety[openclip]' (or use an hf: transformers model)") from exc
    device = device or default_device()
    try:
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    except RuntimeError as exc:
        raise ValueError(f"cannot load open_clip {arch}/{pretrained}: {exc}") from exc
    prepare_for_inference(model, device)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    backend = _OpenClipBackend(model, open_clip.get_tokenizer(arch), device)
    return TorchClipEncoder(f"openclip:{arch}/{pretrained}", backend, size, cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD), scale, device)
