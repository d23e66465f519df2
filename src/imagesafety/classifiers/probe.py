"""Probe classifiers: a small linear/MLP guard head over image embeddings, saved as safetensors + a JSON card.

Output 0 of the head is the overall unsafe logit; outputs 1.. are one logit per category of the card's
taxonomy. `guard train` writes this format; `probe:DIR` loads it for eval, robustness and serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from imagesafety.classifiers.base import EncoderInput, Prediction, decide
from imagesafety.taxonomy import Taxonomy

CARD_FILE = "guard.json"
WEIGHTS_FILE = "guard.safetensors"
CARD_FORMAT = "imagesafety-guard/1"
OVERALL = "unsafe"


def build_head(kind: str, embed_dim: int, outputs: int, hidden: int = 256):
    """A torch head: `linear` (one layer) or `mlp` (one hidden ReLU layer)."""
    from torch import nn

    if kind == "linear":
        return nn.Linear(embed_dim, outputs)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, outputs))
    raise ValueError(f"unknown head {kind!r}: use linear or mlp")


def save_guard(directory: str | Path, head, card: dict[str, Any]) -> Path:
    """Write the head's weights and its card (encoder, taxonomy, outputs, thresholds, ...) into `directory`."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    required = {"encoder", "head", "embed_dim", "outputs", "thresholds"}
    missing = required - card.keys()
    if missing:
        raise ValueError(f"guard card is missing {sorted(missing)}")
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(directory / WEIGHTS_FILE))
    (directory / CARD_FILE).write_text(json.dumps({"format": CARD_FORMAT, **card}, indent=2), encoding="utf-8")
    return directory


def load_guard(directory: str | Path):
    """(head module, card) from a saved guard folder, with clear errors for missing or mismatched files."""
    from safetensors.torch import load_file

    directory = Path(directory)
    card_path, weights_path = directory / CARD_FILE, directory / WEIGHTS_FILE
    for path in (card_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{directory}: not a saved guard (missing {path.name})")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{card_path}: unknown guard format {card.get('format')!r} (expected {CARD_FORMAT})")
    head = build_head(card["head"], int(card["embed_dim"]), len(card["outputs"]), int(card.get("hidden", 256)))
    state = load_file(str(weights_path))
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights_path}: weights do not match the card ({exc})") from exc
    return head.eval(), card


class ProbeClassifier(EncoderInput):
    """Encoder -> guard head -> sigmoid; overall decision at the card's `unsafe` threshold."""

    def __init__(self, path: str | Path, encoder: str | Any | None = None, threshold: float | None = None,
                 device: str | None = None, with_encoder: bool = True):
        """Load the guard in `path` and its encoder (the card's, unless `encoder` names another);
        `with_encoder=False` skips the encoder, for `predict_embeddings` on precomputed embeddings."""
        from imagesafety.encoders import load_encoder

        self.head, self.card = load_guard(path)
        spec = self.card["encoder"]
        self.encoder = None
        if with_encoder:
            self.encoder = load_encoder(encoder or spec, device) if encoder is None or isinstance(encoder, str) else encoder
            if self.encoder.embed_dim != int(self.card["embed_dim"]):
                raise ValueError(
                    f"guard {path} expects {self.card['embed_dim']}-d embeddings from {spec!r}, "
                    f"but encoder {self.encoder.name!r} gives {self.encoder.embed_dim}-d"
                )
            self.head = self.head.to(getattr(self.encoder, "device", "cpu"))
        self.outputs: list[str] = list(self.card["outputs"])
        if self.outputs[0] != OVERALL:
            raise ValueError(f"{path}: the first output of a guard must be {OVERALL!r}, got {self.outputs[0]!r}")
        taxonomy = self.card.get("taxonomy")
        self.taxonomy = Taxonomy.from_dict(taxonomy) if taxonomy else Taxonomy(self.card.get("name", "guard"), ())
        self.thresholds = {k: float(v) for k, v in self.card["thresholds"].items()}
        self.threshold = float(threshold) if threshold is not None else self.thresholds.get(OVERALL, 0.5)
        self.name = f"probe:{self.card.get('name') or Path(path).resolve().name}"
        self.version = str(self.card.get("weights_sha256", "1"))[:16]
        self.config = {"encoder": spec, "outputs": self.outputs, "head": self.card["head"]}

    def unsafe_logits(self, pixels):
        """Differentiable: [0, 1] pixels -> overall unsafe logit."""
        return self.head(self.encoder.image_features(pixels))[:, 0]

    def prepare(self, image: Image.Image):
        return self.encoder.prepare_pixels(image)

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
        return self.predict_prepared([self.prepare(img) for img in images])

    def predict_prepared(self, items: list) -> list[Prediction]:
        return self.predict_embeddings(self.encoder.encode_prepared(items))

    def predict_embeddings(self, embeddings) -> list[Prediction]:
        """Predictions from precomputed embeddings of this guard's encoder (n, d)."""
        import torch

        with torch.no_grad():
            feats = torch.as_tensor(embeddings, dtype=torch.float32, device=next(self.head.parameters()).device)
            probs = torch.sigmoid(self.head(feats)).cpu().numpy()
        out = []
        for row in probs:
            scores = {k: float(p) for k, p in zip(self.outputs[1:], row[1:])}
            score = float(row[0])
            flagged = sorted(k for k, p in scores.items() if p >= self.thresholds.get(k, 0.5))
            out.append(Prediction(score, decide(score, self.threshold), scores, {"categories_over_threshold": flagged}))
        return out


def from_spec(arg: str | None, **options: Any) -> ProbeClassifier:
    """`probe:DIR`: a guard folder written by `imagesafety guard train` (or `save_guard`)."""
    if not arg:
        raise ValueError("probe needs a guard folder: --classifier probe:PATH/TO/GUARD")
    return ProbeClassifier(arg, **options)
