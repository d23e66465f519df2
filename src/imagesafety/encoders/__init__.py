"""Image/text encoders by spec: `ViT-L-14/openai` (open_clip), `hf:openai/clip-vit-large-patch14`, or a local path."""

from __future__ import annotations

from pathlib import Path

from imagesafety.encoders.base import Encoder

__all__ = ["Encoder", "load_encoder", "normalise_encoder_spec"]


def normalise_encoder_spec(spec: str) -> str:
    """Drop the optional `clip:` prefix (`clip:ViT-L-14/openai` == `ViT-L-14/openai`)."""
    return spec[len("clip:"):] if spec.startswith("clip:") else spec


def load_encoder(spec: str, device: str | None = None) -> Encoder:
    """Build an encoder.

    - `hf:ID_OR_PATH` or a local folder with config.json: transformers CLIP/SigLIP;
    - `ARCH/TAG` or `ARCH/PATH/TO/CHECKPOINT`: open_clip (e.g. `ViT-L-14/openai`);
    - `hysac:MODEL_DIR`: a trained HySAC model, whose embeddings are points on its hyperboloid (space parts).
    """
    from imagesafety.encoders.torch_clip import load_open_clip, load_transformers_clip

    spec = normalise_encoder_spec(spec)
    if spec.startswith("hysac:"):
        from imagesafety.hyperbolic.embedder import HysacEmbedder

        return HysacEmbedder(spec[len("hysac:"):], device or "cpu")
    if spec.startswith("hf:"):
        return load_transformers_clip(spec[3:], device)
    if (Path(spec) / "config.json").is_file():
        return load_transformers_clip(spec, device)
    arch, sep, pretrained = spec.partition("/")
    if not sep or not arch:
        raise ValueError(f"encoder {spec!r}: expected ARCH/PRETRAINED (open_clip), hf:MODEL, or a local transformers folder")
    return load_open_clip(arch, pretrained or None, device)
