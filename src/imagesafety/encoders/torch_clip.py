"""CLIP-family encoders in torch: transformers (CLIP, SigLIP) and open_clip, behind one class.

Each encoder carries its model's `PixelSpec` (geometry as its own library computes it: transformers'
CLIPImageProcessor or open_clip's torchvision transforms), and normalisation happens inside the
differentiable path, so predictions and adversarial attacks see exactly the same function of the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesafety import hub
from imagesafety.identity import path_digest
from imagesafety.pixels import CLIP_MEAN, CLIP_STD, PixelSpec


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchClipEncoder:
    """Wraps a model with `encode_image(normalised pixels)` and `encode_text(texts)` callables."""

    def __init__(self, name: str, identity: str, backend: Any, pixel_spec: PixelSpec, logit_scale: float, device: str):
        import torch

        self.name, self.identity = name, identity
        self.backend = backend
        self.pixel_spec = pixel_spec
        self.device = device
        self.logit_scale = float(logit_scale)
        with torch.no_grad():
            probe = torch.zeros(1, 3, pixel_spec.height, pixel_spec.width, device=device)
            self.embed_dim = int(self.raw_image_features(probe).shape[-1])

    @property
    def image_size(self) -> int:
        return self.pixel_spec.height

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Per-image CPU work: the model's geometry, as a uint8 HWC array (run on decoding threads)."""
        return self.pixel_spec.prepare(image)

    def pixels(self, items: list[np.ndarray]):
        """[0, 1] float tensor (B, 3, S, S) from prepared arrays."""
        return self.pixel_spec.tensor(items, self.device)

    def raw_image_features(self, pixels):
        """Differentiable: [0, 1] pixels -> the model's image embeddings, not normalised."""
        return self.backend.encode_image(self.pixel_spec.normalize(pixels))

    def image_features(self, pixels):
        """Differentiable: [0, 1] pixels -> L2-normalised image embeddings."""
        feats = self.raw_image_features(pixels)
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def text_features(self, texts: list[str]):
        feats = self.backend.encode_text(texts)
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_prepared(self, items: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.image_features(self.pixels(items)).float().cpu().numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare(img) for img in images])

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
        max_length = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return self._pooled(self.model.get_text_features(**tokens))


class _OpenClipBackend:
    def __init__(self, model, tokenizer, device: str):
        self.model, self.tokenizer, self.device = model, tokenizer, device

    def encode_image(self, pixel_values):
        return self.model.encode_image(pixel_values)

    def encode_text(self, texts: list[str]):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def transformers_pixel_spec(name_or_path: str, image_size: int, model_type: str) -> PixelSpec:
    """The geometry and statistics of a transformers CLIP/SigLIP checkpoint (its preprocessor_config.json when
    present)."""
    mean, std = (0.5, 0.5, 0.5) if "siglip" in model_type else (CLIP_MEAN, CLIP_STD)
    resize = "stretch" if "siglip" in model_type else "shortest_edge"
    config_file = Path(name_or_path) / "preprocessor_config.json"
    if config_file.is_file():
        pre = json.loads(config_file.read_text())
        mean, std = tuple(pre.get("image_mean", mean)), tuple(pre.get("image_std", std))
        size = pre.get("crop_size") or pre.get("size") or {}
        image_size = (
            int(size.get("height") or size.get("shortest_edge") or image_size) if isinstance(size, dict) else int(size)
        )
        if isinstance(pre.get("size"), dict) and "height" in pre["size"] and not pre.get("do_center_crop", True):
            resize = "stretch"
    return PixelSpec(image_size, tuple(mean), tuple(std), resize, "bicubic", "floor")


def load_transformers_clip(name_or_path: str, device: str | None = None) -> TorchClipEncoder:
    """A transformers CLIP or SigLIP checkpoint by hub id or local folder (config.json + weights + tokenizer)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from imagesafety.encoders.inference_mode import prepare_for_inference

    ref = hub.resolve(name_or_path, "encoder")
    device = device or default_device()
    try:
        model = prepare_for_inference(AutoModel.from_pretrained(ref.location).to(device), device)
        tokenizer = AutoTokenizer.from_pretrained(ref.location)
    except OSError as exc:
        raise ValueError(f"cannot load transformers model {ref.location!r}: {exc}") from exc
    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise ValueError(f"{ref.location!r} is a {type(model).__name__}, not a CLIP/SigLIP image-text model")
    spec = transformers_pixel_spec(ref.location, int(model.config.vision_config.image_size), model.config.model_type)
    scale = float(torch.exp(model.logit_scale).item()) if hasattr(model, "logit_scale") else 100.0
    identity = hub.identity_of(ref)
    return TorchClipEncoder(
        f"hf:{ref.location}", identity, _TransformersBackend(model, tokenizer, device), spec, scale, device
    )


def open_clip_pixel_spec(model) -> PixelSpec:
    """open_clip's eval transform as a PixelSpec: torchvision Resize + CenterCrop (round offset), or squash."""
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    size = size[0] if isinstance(size, (tuple, list)) else size
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ValueError(f"open_clip resize mode {mode!r} is not supported (shortest and squash are)")
    return PixelSpec(
        int(size),
        tuple(cfg.get("mean", CLIP_MEAN)),
        tuple(cfg.get("std", CLIP_STD)),
        "shortest_edge" if mode == "shortest" else "stretch",
        cfg.get("interpolation", "bicubic"),
        "round",
    )


def load_open_clip(arch: str, pretrained: str | None, device: str | None = None) -> TorchClipEncoder:
    """An open_clip model: architecture plus a pretrained tag (`openai`, `laion2b_s32b_b82k`) or checkpoint path.
    A tag is resolved to its checkpoint file first, so the encoder's identity is that file's content digest."""
    try:
        import open_clip

        from imagesafety.encoders.inference_mode import prepare_for_inference
    except ImportError as exc:
        raise ImportError(
            "open_clip models need: pip install 'imagesafety[openclip]' (or use an hf: transformers model)"
        ) from exc
    device = device or default_device()
    checkpoint = resolve_open_clip_checkpoint(arch, pretrained)
    # a tag resolved to a file loses the tag's settings: OpenAI's weights were trained with QuickGELU
    is_tag = bool(pretrained) and not Path(pretrained).expanduser().exists()
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) if is_tag else {}
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            arch, pretrained=checkpoint, device=device, force_quick_gelu=bool(tag_cfg.get("quick_gelu"))
        )
    except RuntimeError as exc:
        raise ValueError(f"cannot load open_clip {arch}/{pretrained}: {exc}") from exc
    prepare_for_inference(model, device)
    scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    backend = _OpenClipBackend(model, open_clip.get_tokenizer(arch), device)
    identity = path_digest(checkpoint) if checkpoint else f"openclip:{arch}/random"
    name = f"clip:{arch}/{pretrained}" if pretrained else f"clip:{arch}"
    return TorchClipEncoder(name, identity, backend, open_clip_pixel_spec(model), scale, device)


def resolve_open_clip_checkpoint(arch: str, pretrained: str | None) -> str | None:
    """The local checkpoint file for a pretrained tag (downloaded on first use) or a given path."""
    import open_clip

    if not pretrained:
        return None
    if Path(pretrained).expanduser().exists():
        return str(Path(pretrained).expanduser().resolve())
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise ValueError(f"open_clip {arch} has no pretrained tag {pretrained!r} (tags: {tags}) and no such file")
    if cfg.get("hf_hub"):
        repo = cfg["hf_hub"].rstrip("/")
        hub.resolve(repo, "open_clip weights", cache_file=cfg.get("hf_hub_filename") or "open_clip_model.safetensors")
    try:
        return open_clip.download_pretrained(cfg)
    except Exception as exc:
        raise ValueError(
            f"cannot fetch open_clip weights {arch}/{pretrained} ({type(exc).__name__}: {exc}); "
            "download the checkpoint elsewhere and give its path: ARCH/PATH/TO/CHECKPOINT"
        ) from None


def open_clip_from_spec(arg: str | None, *, device: str | None = None) -> TorchClipEncoder:
    """`clip:ARCH/TAG` or `clip:ARCH/PATH` (registry factory)."""
    spec = arg or ""
    arch, sep, pretrained = spec.partition("/")
    if not sep or not arch:
        raise ValueError(
            f"encoder {spec!r}: expected ARCH/PRETRAINED (open_clip), hf:MODEL, or a local transformers folder"
        )
    return load_open_clip(arch, pretrained or None, device)


def transformers_from_spec(arg: str | None, *, device: str | None = None) -> TorchClipEncoder:
    """`hf:HUB_ID_OR_FOLDER` (registry factory)."""
    if not arg:
        raise ValueError("hf encoder needs a model: hf:openai/clip-vit-large-patch14 or hf:PATH/TO/FOLDER")
    return load_transformers_clip(arg, device)
