"""`cosmos-guardrail[:FOLDER]`: the video content safety filter of NVIDIA's Cosmos guardrail
(nvidia/Cosmos-1.0-Guardrail),
as its code runs it: SigLIP so400m-patch14-384 image features (the vision tower's pooled output, L2-normalised) into a
small MLP
head (1152 -> 512 -> 256 -> 7, batch norm and ReLU between) over seven classes, the first of which is Safe. The original
flags a frame when its most probable class is not Safe and samples videos at 2 frames per second (`--fps 2`).

Score: the most probable unsafe class against Safe, p_k / (p_k + p_safe), so that the default threshold 0.5 flags
exactly
the frames the original flags; each class's own p_k / (p_k + p_safe) is its category score. Weights: the head from
`FOLDER/video_content_safety_filter/safety_filter.pt` (the Hub repository, or a local copy of it), the encoder from
`encoder=` (default google/siglip-so400m-patch14-384, or its local folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH, Category, Taxonomy

DEFAULT_CHECKPOINT = "nvidia/Cosmos-1.0-Guardrail"
DEFAULT_ENCODER = "google/siglip-so400m-patch14-384"
HEAD_FILE = "video_content_safety_filter/safety_filter.pt"
CLASSES = ("safe", "sexual_content", "violence", "drugs", "child_abuse", "hate_and_harassment", "self_harm")
#: each unsafe class -> the UnsafeBench categories its score stands for (child abuse is its own)
UNSAFEBENCH_CATEGORIES = {
    "sexual_content": ("sexual",),
    "violence": ("violence",),
    "drugs": ("illegal_activity",),
    "hate_and_harassment": ("hate", "harassment"),
    "self_harm": ("self_harm",),
}
TAXONOMY = Taxonomy(
    "cosmos-guardrail",
    tuple(UNSAFEBENCH.get(k) for k in ("sexual", "violence", "illegal_activity", "hate", "harassment", "self_harm"))
    + (Category("child_abuse", "Child abuse", "Child abuse, Cosmos guardrail's own class."),),
)


def build_head(input_size: int = 1152, num_classes: int = len(CLASSES)):
    """The guardrail's MLP head, its modules named as in its checkpoint (`network.layers.N`)."""
    import torch

    layers = torch.nn.Sequential(
        torch.nn.Linear(input_size, 512),
        torch.nn.BatchNorm1d(512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 256),
        torch.nn.BatchNorm1d(256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, num_classes),
    )
    network = torch.nn.Module()
    network.layers = layers
    root = torch.nn.Module()
    root.network = network
    return root


def head_path(checkpoint: str) -> Path:
    local = Path(checkpoint).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        found = local / HEAD_FILE
        if not found.is_file():
            raise ValueError(f"Cosmos guardrail folder {local} has no {HEAD_FILE}")
        return found
    hint = (
        f"download {checkpoint} elsewhere and pass cosmos-guardrail:FOLDER (its folder) or "
        "cosmos-guardrail:PATH/TO/safety_filter.pt"
    )
    if not hub.in_hub_cache(checkpoint, HEAD_FILE):
        hub.require_hub(f"Cosmos guardrail head {checkpoint}/{HEAD_FILE}", hint)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(checkpoint, HEAD_FILE))
    except Exception as exc:  # gated (accept NVIDIA's license first), missing, HTTP errors: one line
        raise ValueError(f"cannot download {checkpoint}/{HEAD_FILE} ({type(exc).__name__}); {hint}") from None


class CosmosGuardrail(Classifier):
    name = "cosmos-guardrail"
    version = "1"
    taxonomy = TAXONOMY
    preferred_batch_size = 16

    def __init__(
        self,
        checkpoint: str = DEFAULT_CHECKPOINT,
        encoder: str = DEFAULT_ENCODER,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoImageProcessor, SiglipModel

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        head_file = head_path(checkpoint)
        ref = hub.resolve(encoder, "SigLIP encoder")
        try:
            self.processor = AutoImageProcessor.from_pretrained(ref.location)
            self.encoder = SiglipModel.from_pretrained(ref.location).to(self.device).eval()
        except OSError as exc:
            raise ValueError(f"cannot load the SigLIP encoder {ref.location!r}: {exc}") from None
        try:
            state = torch.load(head_file, map_location="cpu", weights_only=True)["model"]
        except Exception as exc:  # a damaged or foreign file: one line
            raise ValueError(f"Cosmos guardrail head {head_file} cannot be read: {type(exc).__name__}: {exc}") from None
        self.head = build_head(
            int(state["network.layers.0.weight"].shape[1]), int(state["network.layers.6.weight"].shape[0])
        )
        if self.head.network.layers[-1].out_features != len(CLASSES):
            raise ValueError(
                f"Cosmos guardrail head {head_file} has {self.head.network.layers[-1].out_features} classes, not "
                f"{len(CLASSES)}"
            )
        self.head.load_state_dict(state)
        self.head = self.head.to(self.device).eval()
        self.threshold = float(threshold)
        self.covers = frozenset(k for keys in UNSAFEBENCH_CATEGORIES.values() for k in keys)
        self.weights = hub.identity_of(ref)
        self.config = {"head": path_digest(head_file), "encoder": ref.location, "weights": self.weights}

    def prepare(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(images, 7) class probabilities, as the guardrail computes them."""
        import torch

        with torch.no_grad():
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            features = self.encoder.get_image_features(**inputs)
            if not isinstance(
                features, torch.Tensor
            ):  # transformers 5 returns the vision output; 4 returned its pooled part
                features = features.pooler_output
            features = features / features.norm(dim=-1, keepdim=True)
            return torch.softmax(self.head.network.layers(features), dim=-1).float().cpu().numpy()

    def predict_prepared(self, items: list[Image.Image]) -> list[Prediction]:
        if not items:
            return []
        out = []
        for probs in self.probabilities(items):
            safe = float(probs[0])
            against = {
                name: float(p) / (float(p) + safe) if p + safe > 0 else 0.0 for name, p in zip(CLASSES[1:], probs[1:])
            }
            scores = {key: against[name] for name, keys in UNSAFEBENCH_CATEGORIES.items() for key in keys}
            scores["child_abuse"] = against["child_abuse"]
            score = max(against.values())
            raw = {"probabilities": {c: float(p) for c, p in zip(CLASSES, probs)}, "top": CLASSES[int(probs.argmax())]}
            out.append(Prediction(score, decide(score, self.threshold), scores, raw))
        return out


def from_spec(
    arg: str | None, *, encoder: str = DEFAULT_ENCODER, threshold: float = 0.5, device: str | None = None
) -> CosmosGuardrail:
    """`cosmos-guardrail` (nvidia/Cosmos-1.0-Guardrail) or `cosmos-guardrail:FOLDER_OR_safety_filter.pt`."""
    return CosmosGuardrail(arg or DEFAULT_CHECKPOINT, encoder, threshold, device)
