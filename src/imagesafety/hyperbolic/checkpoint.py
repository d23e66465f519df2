"""HySAC model folders: ours (hysac.json + safetensors) and the authors' (hysac_model.pth + hysac_bounds.json).

The authors' checkpoints load exactly as their code writes them (aimagelab/HySAC `HySAC.state_dict()`):
- both peft key layouts: peft 0.4.0 (their pin) keeps a wrapped layer's own weights at `...k_proj.weight`,
  current peft under `...k_proj.base_layer.weight`; adapters as `lora_A.default.weight` (or without the name);
- peft 0.4.0's LoRA `Conv2d` gave the wrapped patch embedding a bias (randomly initialised, frozen, saved):
  it is loaded onto the patch convolution, which CLIP itself builds without one;
- their `pixel_mean` / `pixel_std` buffers (ImageNet values, shape (3, 1, 1), never used: their normalisation is
  in CLIPProcessor) are ignored; any other key we do not know is an error that names it.
`hysac_bounds.json` holds, per group (S safe text, V safe image, U unsafe text, G unsafe image), the
distance-from-origin statistics `avg`, `low_05` and `up_95`; ours writes the same layout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagesafety import hub
from imagesafety.files import read_json
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.model import HyperbolicHeads, LoraHyperbolicCLIP
from imagesafety.model_card import CardError, load_weights, read_card, save_model
from imagesafety.records.cards import HysacCard

CARD = "hysac.json"
WEIGHTS = "model.safetensors"
FORMAT = HysacCard.FORMATS[0]
RELEASED_WEIGHTS, RELEASED_BOUNDS = "hysac_model.pth", "hysac_bounds.json"
#: buffers the authors' model saves but never uses: ignored, never loaded
UNUSED_KEYS = ("pixel_mean", "pixel_std")
GROUPS = {"S": "safe text", "V": "safe image", "U": "unsafe text", "G": "unsafe image"}
PATCH_BIAS = "visual.base_model.model.vision_model.embeddings.patch_embedding.bias"


def distance_bounds(distances: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Distance-from-origin statistics per group in the authors' layout (`avg`, `low_05`, `up_95`), plus std, min,
    max."""
    out = {}
    for name, d in distances.items():
        d = np.asarray(d, dtype=np.float64)
        out[name] = {
            "avg": float(d.mean()),
            "low_05": float(np.percentile(d, 5)),
            "up_95": float(np.percentile(d, 95)),
            "std": float(d.std()),
            "min": float(d.min()),
            "max": float(d.max()),
        }
    return out


def bounds_spread(bounds: dict, group: str = "V") -> float:
    """A scale for distances of a group: its std, else (up_95 - low_05) / 3.29 (the width of a normal's central 90%)."""
    b = bounds.get(group) or {}
    if "std" in b:
        return float(b["std"])
    if "up_95" in b and "low_05" in b:
        return float(b["up_95"] - b["low_05"]) / 3.29
    return 0.1


def save_hysac(directory: str | Path, model, card: dict[str, Any]) -> Path:
    return save_model(directory, model.state_dict(), card, fmt=FORMAT, card_file=CARD, weights_file=WEIGHTS)


def backbone_identity(backbone: str) -> tuple[str, str]:
    """(resolved backbone reference, its content identity): a local folder absolute, a hub id as given."""
    ref = hub.resolve(backbone, "HySAC backbone")
    return ref.location, hub.identity_of(ref)


def map_state(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The state dict with the authors' key layouts mapped onto `model`'s; unused buffers dropped; an unknown key,
    a missing one or a shape mismatch is a ValueError naming it."""
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in UNUSED_KEYS or key.endswith(".position_ids"):
            continue
        stem, _, leaf = key.rpartition(".")
        candidates = [key, f"{stem}.base_layer.{leaf}"]
        adapter = re.match(r"^(.*\.lora_[AB])\.(weight|bias)$", key)
        if adapter:
            candidates.append(f"{adapter.group(1)}.default.{adapter.group(2)}")
        found = next((c for c in candidates if c in ours), None)
        if found is None:
            raise ValueError(f"{source}: unexpected key {key!r}: not part of a HySAC model on this backbone")
        if tuple(value.shape) != tuple(ours[found].shape):
            raise ValueError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(ours[found].shape)}"
            )
        mapped[found] = value
    missing = [k for k in ours if k not in mapped]
    if missing:
        raise ValueError(
            f"{source}: missing {len(missing)} weights of a HySAC model on this backbone, e.g. {missing[0]!r}"
        )
    return mapped


def load_lora_state(model: LoraHyperbolicCLIP, state: dict[str, torch.Tensor], source: str) -> None:
    if any(k in state for k in (PATCH_BIAS, PATCH_BIAS.replace(".bias", ".base_layer.bias"))):
        model.add_patch_bias()
    model.load_state_dict(map_state(state, model, source))


def load_hysac(directory: str | Path, device: str = "cpu", backbone: str | None = None):
    """(model, card) from one of our folders, or from the authors' checkpoint folder (LoRA on CLIP ViT-L/14)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such HySAC model folder")
    if (directory / RELEASED_WEIGHTS).is_file() and not (directory / CARD).is_file():
        return load_released(
            directory / RELEASED_WEIGHTS,
            directory / RELEASED_BOUNDS,
            backbone or "openai/clip-vit-large-patch14",
            device,
        )
    if not (directory / CARD).is_file():
        raise ValueError(f"{directory}: not a HySAC model folder (no {CARD} or {RELEASED_WEIGHTS})")
    try:
        card = read_card(directory, CARD, HysacCard)
    except CardError as exc:
        raise ValueError(str(exc)) from None
    weights = card.weights_file or WEIGHTS
    state = load_weights(directory, weights)
    if card.mode == "light":
        if card.in_dim is None:
            raise ValueError(f"{directory / CARD}: field in_dim: a light HySAC model records its input size")
        model = HyperbolicHeads(card.in_dim, card.embed_dim, card.curv_init)
        model.load_state_dict(map_state(state, model, str(directory / weights)))
    else:
        if card.backbone is None and backbone is None:
            raise ValueError(f"{directory / CARD}: field backbone: a LoRA HySAC model records its backbone")
        location, identity = backbone_identity(backbone or str(card.backbone))
        if card.backbone_identity and identity != card.backbone_identity and backbone is None:
            raise ValueError(
                f"{directory}: trained on backbone {card.backbone} with weights "
                f"{card.backbone_identity[:23]}..., "
                f"which now has {identity[:23]}... (its weights changed); pass the original backbone with --option "
                "backbone=PATH"
            )
        card = card.model_copy(update={"backbone_identity": identity})
        model = LoraHyperbolicCLIP(location, card.lora, card.curv_init)
        load_lora_state(model, state, str(directory / weights))
    return model.to(device).eval(), card


def read_released_bounds(path: str | Path) -> dict:
    """`hysac_bounds.json` as the authors' code reads it: {S, V, U, G} x {up_95, low_05, avg} (missing file: no
    bounds)."""
    path = Path(path)
    if not path.is_file():
        return {}
    bounds = read_json(path)
    if not isinstance(bounds, dict) or any(not isinstance(v, dict) for v in bounds.values()):
        raise ValueError(f"{path}: expected {{group: {{up_95, low_05, avg}}}} for groups {', '.join(GROUPS)}")
    return bounds


def load_released(
    weights: str | Path, bounds: str | Path, backbone: str = "openai/clip-vit-large-patch14", device: str = "cpu"
):
    """The authors' format: `HySAC.state_dict()` saved with torch.save, and the distance bounds."""
    location, identity = backbone_identity(backbone)
    model = LoraHyperbolicCLIP(location)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{weights}: not a readable torch state dict ({type(exc).__name__}: {exc})") from None
    load_lora_state(model, state, str(weights))
    bounds_data = read_released_bounds(bounds)
    threshold = bounds_data.get("V", {}).get("up_95")
    card = HysacCard(
        format=FORMAT,
        mode="lora",
        backbone=location,
        backbone_identity=identity,
        embed_dim=model.embed_dim,
        bounds=bounds_data,
        threshold=threshold,
        threshold_rule="released bounds: 95th percentile of safe-image distances (V up_95)",
    )
    return model.to(device).eval(), card


def released_rescale(
    x: torch.Tensor, bounds: dict, curvature: float, key: str = "V", alpha: float = 0.8
) -> torch.Tensor:
    """The released code's redirection rule: a point whose distance from the origin exceeds the safe
    bound (`bounds[key]['up_95']` plus tanh((up_95 - alpha) / c) + 1) gets that bound as its space-part norm."""
    up = float(bounds[key]["up_95"])
    limit = up + (np.tanh((up - alpha) / curvature) + 1)
    far = L.dist_to_origin(x, curvature) > limit
    rescaled = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * limit
    return torch.where(far[..., None], rescaled, x)
