"""Image/text encoders by spec, through the registry: `clip:ViT-L-14/openai` (or bare `ViT-L-14/openai`, open_clip),
`hf:MODEL_OR_FOLDER` (transformers CLIP/SigLIP; a local folder with config.json works bare too), `hysac:DIR`,
`nsfwjs:MODEL`. One process builds each encoder once: the classifiers of a zoo share one CLIP."""

from __future__ import annotations

import threading
from pathlib import Path

from imagesafety import registry
from imagesafety.encoders.base import DifferentiableEncoder, Encoder, TextEncoder

__all__ = ["Encoder", "TextEncoder", "DifferentiableEncoder", "load_encoder", "normalise_encoder_spec"]

_LOADED: dict[tuple[str, str | None, str | None], Encoder] = {}
_LOCK = threading.RLock()  # encoders built from specs load other encoders (HySAC light mode)


def normalise_encoder_spec(spec: str) -> str:
    """`KIND:ARG` for every spec: a bare `ARCH/TAG` is open_clip (`clip:`), a bare local folder with config.json `hf:`,
    and local paths become absolute, so one model has one spec wherever it is named from."""
    spec = str(spec).strip()
    kind, sep, arg = spec.partition(":")
    if not sep and kind in registry.entries("encoder") and not Path(spec).expanduser().exists():
        return f"{kind}:"  # an encoder with a default model (`nsfwjs`)
    if not sep or kind not in registry.entries("encoder"):
        kind, arg = ("hf", spec) if (Path(spec).expanduser() / "config.json").is_file() else ("clip", spec)
    if kind in ("hf", "hysac") and Path(arg).expanduser().exists():
        arg = str(Path(arg).expanduser().resolve())
    if kind == "clip":
        arch, slash, pretrained = arg.partition("/")
        if slash and Path(pretrained).expanduser().exists():
            arg = f"{arch}/{Path(pretrained).expanduser().resolve()}"
    return f"{kind}:{arg}"


def load_encoder(spec: str, device: str | None = None) -> Encoder:
    """The encoder for a spec (built once per process, device and, for local files, content; then shared)."""
    spec = normalise_encoder_spec(spec)
    key = (spec, device, _local_identity(spec))
    with _LOCK:
        if key not in _LOADED:
            kind, _, arg = spec.partition(":")
            _LOADED[key] = registry.get("encoder", kind).build(arg or None, device=device)
        return _LOADED[key]


def _local_identity(spec: str) -> str | None:
    """The content digest of a spec's local weights (so a model retrained in place is loaded anew), else None."""
    from imagesafety.identity import path_digest

    arg = spec.partition(":")[2]
    for candidate in (arg, arg.partition("/")[2]):
        if candidate and Path(candidate).exists():
            return path_digest(candidate)
    return None


def forget_encoders() -> None:
    """Drop the process's shared encoders (tests; or to free memory)."""
    with _LOCK:
        _LOADED.clear()
