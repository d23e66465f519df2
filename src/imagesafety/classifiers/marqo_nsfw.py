"""`marqo-nsfw[:REPO_OR_FOLDER]`: Marqo's NSFW detector (Marqo/nsfw-image-detection-384, a timm ViT-tiny/16 at 384 px,
Apache-2.0) as its card runs it: `timm.create_model("hf-hub:...", pretrained=True)`, timm's own evaluation transform
from the model's data config, softmax over its labels. The unsafe score is the probability of the label named NSFW
(read from the model's `label_names`, not assumed by position); the decision is at 0.5, the card's argmax rule for its
two labels (it publishes threshold curves, not one threshold: tune with `calibrate` / `--option threshold=`). Covers
Sexual. A local copy of the repository (config.json and model.safetensors) loads as `marqo-nsfw:FOLDER`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

DEFAULT_MODEL = "Marqo/nsfw-image-detection-384"
TAXONOMY = Taxonomy("marqo-nsfw", (UNSAFEBENCH.get("sexual"),))


class MarqoNsfw(Classifier):
    name = "marqo-nsfw"
    version = "1"
    taxonomy = TAXONOMY
    covers = frozenset({"sexual"})
    preferred_batch_size = 32

    def __init__(
        self, model: str = DEFAULT_MODEL, unsafe_label: str = "NSFW", threshold: float = 0.5, device: str | None = None
    ):
        import timm
        import torch

        ref = hub.resolve(model, "timm model")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        source = f"local-dir:{Path(ref.location).resolve()}" if ref.is_local else f"hf-hub:{ref.location}"
        try:
            self.model = timm.create_model(source, pretrained=True).to(self.device).eval()
        except (OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"cannot load the timm model {ref.location!r}: {type(exc).__name__}: {exc}") from None
        labels = [str(x) for x in self.model.pretrained_cfg.get("label_names") or []]
        if unsafe_label.lower() not in [x.lower() for x in labels]:
            raise ValueError(
                f"model {ref.location!r} has no label {unsafe_label!r}; its labels: "
                f"{', '.join(labels) or 'none recorded'}"
            )
        self.labels = labels
        self.unsafe_index = [x.lower() for x in labels].index(unsafe_label.lower())
        data_config = timm.data.resolve_model_data_config(self.model)
        self.transform = timm.data.create_transform(**data_config, is_training=False)
        self.threshold = float(threshold)
        self.weights = hub.identity_of(ref)
        self.config = {
            "model": ref.location,
            "weights": self.weights,
            "unsafe_label": labels[self.unsafe_index],
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
        }

    def prepare(self, image: Image.Image):
        """timm's evaluation transform (resize, centre crop, normalise), on the run's worker threads."""
        return self.transform(image.convert("RGB"))

    def probabilities(self, items: list) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.stack(items).to(self.device)).softmax(-1).float().cpu().numpy()

    def predict_prepared(self, items: list) -> list[Prediction]:
        if not items:
            return []
        out = []
        for probs in self.probabilities(items):
            score = float(probs[self.unsafe_index])
            raw = {"probabilities": {label: float(p) for label, p in zip(self.labels, probs)}}
            out.append(Prediction(score, decide(score, self.threshold), {"sexual": score}, raw))
        return out


def from_spec(
    arg: str | None, *, unsafe_label: str = "NSFW", threshold: float = 0.5, device: str | None = None
) -> MarqoNsfw:
    """`marqo-nsfw` (Marqo/nsfw-image-detection-384) or `marqo-nsfw:REPO_OR_FOLDER` (another timm checkpoint with
    labels)."""
    return MarqoNsfw(arg or DEFAULT_MODEL, unsafe_label, threshold, device)
