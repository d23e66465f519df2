"""HySAC model folders: ours (hysac.json + safetensors) and the released format (hysac_model.pth + hysac_bounds.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagesafety import hub
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.model import HyperbolicHeads, LoraHyperbolicCLIP
from imagesafety.model_card import CardError, load_weights, read_card, save_model

CARD = "hysac.json"
WEIGHTS = "model.safetensors"
FORMAT = "imagesafety-hysac/1"
#: buffers the authors' model saves but never uses (their normalisation is in CLIPProcessor): ignored, never loaded
UNUSED_KEYS = ("pixel_mean", "pixel_std")
RELEASED_WEIGHTS, RELEASED_BOUNDS = "hysac_model.pth", "hysac_bounds.json"


def distance_bounds(distances: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Distance-from-origin statistics per group, with the released code's keys (`up_95` = 95th percentile)."""
    out = {}
    for name, d in distances.items():
        d = np.asarray(d, dtype=np.float64)
        out[name] = {"mean": float(d.mean()), "std": float(d.std()), "min": float(d.min()), "max": float(d.max()),
                     "low_5": float(np.percentile(d, 5)), "up_95": float(np.percentile(d, 95))}
    return out


def save_hysac(directory: str | Path, model, card: dict[str, Any]) -> Path:
    return save_model(directory, model.state_dict(), card, fmt=FORMAT, card_file=CARD, weights_file=WEIGHTS)


def backbone_identity(backbone: str) -> tuple[str, str]:
    """(resolved backbone reference, its content identity): a local folder absolute, a hub id as given."""
    ref = hub.resolve(backbone, "HySAC backbone")
    return ref.location, hub.identity_of(ref)


def load_hysac(directory: str | Path, device: str = "cpu", backbone: str | None = None):
    """(model, card) from one of our folders, or from a released checkpoint folder (LoRA on CLIP ViT-L/14)."""
    directory = Path(directory)
    if (directory / RELEASED_WEIGHTS).is_file() and not (directory / CARD).is_file():
        return load_released(directory / RELEASED_WEIGHTS, directory / RELEASED_BOUNDS, backbone or "openai/clip-vit-large-patch14", device)
    if not (directory / CARD).is_file():
        raise ValueError(f"{directory}: not a HySAC model folder (no {CARD} or {RELEASED_WEIGHTS})")
    try:
        card = read_card(directory, CARD, FORMAT)
    except CardError as exc:
        raise ValueError(str(exc)) from None
    card.setdefault("weights_file", WEIGHTS)
    if card["mode"] == "light":
        model = HyperbolicHeads(card["in_dim"], card["embed_dim"], card.get("curv_init", 1.0))
    else:
        backbone, card["backbone_identity"] = backbone_identity(backbone or card["backbone"])
        model = LoraHyperbolicCLIP(backbone, card.get("lora"), card.get("curv_init", 1.0))
    state = {k: v for k, v in load_weights(directory, card).items() if k not in UNUSED_KEYS}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"{directory}: weights do not match a {card['mode']} model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), card


def load_released(weights: str | Path, bounds: str | Path, backbone: str = "openai/clip-vit-large-patch14", device: str = "cpu"):
    """The released HySAC format: a state dict of the LoRA model and a JSON of distance bounds."""
    backbone, identity = backbone_identity(backbone)
    model = LoraHyperbolicCLIP(backbone)
    state = {k: v for k, v in torch.load(weights, map_location="cpu", weights_only=True).items() if k not in UNUSED_KEYS}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"{weights}: not a HySAC state dict for backbone {backbone} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bounds_data = json.loads(Path(bounds).read_text()) if Path(bounds).is_file() else {}
    threshold = bounds_data.get("V", {}).get("up_95")
    card = {"format": FORMAT, "mode": "lora", "backbone": backbone, "embed_dim": model.embed_dim, "bounds": bounds_data,
            "threshold": threshold, "threshold_rule": "released bounds: 95th percentile of safe-image distances", "backbone_identity": identity}
    return model.to(device).eval(), card


def released_rescale(x: torch.Tensor, bounds: dict, curvature: float, key: str = "V", alpha: float = 0.8) -> torch.Tensor:
    """The released code's redirection rule: a point whose distance from the origin exceeds the safe
    bound (`bounds[key]['up_95']` plus tanh((up_95 - alpha) / c) + 1) gets that bound as its space-part norm."""
    up = float(bounds[key]["up_95"])
    limit = up + (np.tanh((up - alpha) / curvature) + 1)
    far = L.dist_to_origin(x, curvature) > limit
    rescaled = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * limit
    return torch.where(far[..., None], rescaled, x)
