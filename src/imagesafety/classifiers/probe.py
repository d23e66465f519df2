"""Probe classifiers: a small linear/MLP guard head over image embeddings, saved as safetensors + a JSON card.

Output 0 of the head is the overall unsafe logit; outputs 1.. are one logit per category of the card's
taxonomy. `guard train` writes this format; `probe:DIR` loads it for eval, robustness and serving. The card
records its encoder's spec and content identity: a guard refuses an encoder whose weights changed since it
was trained (unless `allow_encoder_change`), and lists its training images so evaluations can warn on overlap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagesafety.classifiers.base import Prediction, TorchClassifier, decide
from imagesafety.model_card import (
    CardError,
    load_weights,
    read_card,
    read_training_hashes,
    read_training_images,
    save_model,
)
from imagesafety.records.cards import GuardCard
from imagesafety.taxonomy import Taxonomy

CARD_FILE = "guard.json"
WEIGHTS_FILE = "guard.safetensors"
CARD_FORMAT = GuardCard.FORMATS[0]
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
    required = {"encoder", "head", "embed_dim", "outputs", "thresholds"}
    missing = required - card.keys()
    if missing:
        raise ValueError(f"guard card is missing {sorted(missing)}")
    return save_model(
        directory, head.state_dict(), card, fmt=CARD_FORMAT, card_file=CARD_FILE, weights_file=WEIGHTS_FILE
    )


def load_guard(directory: str | Path):
    """(head module, card) from a saved guard folder, with clear errors for missing or mismatched files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such guard folder")
    if not (directory / CARD_FILE).is_file():
        raise ValueError(f"{directory}: not a saved guard (missing {CARD_FILE})")
    try:
        card = read_card(directory, CARD_FILE, GuardCard)
    except CardError as exc:
        raise ValueError(f"{directory}: not a saved guard ({exc})") from None
    weights = card.weights_file or WEIGHTS_FILE
    if not (directory / weights).is_file():
        raise ValueError(f"{directory}: not a saved guard (missing {weights})")
    head = build_head(card.head, card.embed_dim, len(card.outputs), card.hidden)
    try:
        head.load_state_dict(load_weights(directory, weights))
    except RuntimeError as exc:
        raise ValueError(f"{directory / weights}: weights do not match the card ({exc})") from exc
    return head.eval(), card


class ProbeClassifier(TorchClassifier):
    """Encoder -> guard head -> sigmoid; overall decision at the card's `unsafe` threshold."""

    def __init__(
        self,
        path: str | Path,
        encoder: str | Any | None = None,
        threshold: float | None = None,
        device: str | None = None,
        with_encoder: bool = True,
        allow_encoder_change: bool = False,
    ):
        """Load the guard in `path` and its encoder (the card's, unless `encoder` names another);
        `with_encoder=False` skips the encoder, for `predict_embeddings` on precomputed embeddings."""
        from imagesafety.encoders import load_encoder

        self.path = Path(path).expanduser().resolve()
        self.head, self.card = load_guard(self.path)
        spec = self.card.encoder
        self.encoder = None
        if with_encoder:
            self.encoder = (
                load_encoder(encoder or spec, device) if encoder is None or isinstance(encoder, str) else encoder
            )
            if self.encoder.embed_dim != self.card.embed_dim:
                raise ValueError(
                    f"guard {path} expects {self.card.embed_dim}-d embeddings from {spec!r}, "
                    f"but encoder {self.encoder.name!r} gives {self.encoder.embed_dim}-d"
                )
            trained_with = self.card.encoder_identity
            if trained_with and self.encoder.identity != trained_with and not allow_encoder_change:
                raise ValueError(
                    f"guard {path} was trained on encoder {spec} with weights {trained_with[:23]}..., but that encoder "
                    f"now has {self.encoder.identity[:23]}... (its weights changed): retrain the guard, or pass "
                    "--option allow_encoder_change=true to use it anyway"
                )
            self.pixel_spec, self.device = self.encoder.pixel_spec, self.encoder.device
            self.head = self.head.to(self.device)
        self.outputs: list[str] = list(self.card.outputs)
        if self.outputs[0] != OVERALL:
            raise ValueError(f"{path}: the first output of a guard must be {OVERALL!r}, got {self.outputs[0]!r}")
        taxonomy = self.card.taxonomy
        self.taxonomy = Taxonomy.from_dict(taxonomy) if taxonomy else Taxonomy(self.card.name, ())
        self.thresholds = dict(self.card.thresholds)
        self.threshold = float(threshold) if threshold is not None else self.thresholds.get(OVERALL, 0.5)
        self.name = f"probe:{self.card.name or self.path.name}"
        self.version = str(self.card.weights_sha256 or "1")[:16]
        from imagesafety.identity import path_digest

        self.weights = path_digest(self.path)
        self.config = {
            "encoder": spec,
            "encoder_weights": self.encoder.identity if self.encoder else None,
            "outputs": self.outputs,
            "head": self.card.head,
            "weights": self.weights,
        }

    def training_images(self) -> frozenset[str]:
        return read_training_images(self.path)

    def training_hashes(self):
        return read_training_hashes(self.path)

    def unsafe_logits(self, pixels):
        """Differentiable: [0, 1] pixels -> overall unsafe logit."""
        return self.head(self.encoder.image_features(pixels))[:, 0]

    def prepare(self, image):
        return self.encoder.prepare(image)

    def predict_prepared(self, items: list) -> list[Prediction]:
        return self.predict_embeddings(self.encoder.encode_prepared(items))

    def predict_embeddings(self, embeddings) -> list[Prediction]:
        """Predictions from precomputed embeddings of this guard's encoder (n, d)."""
        import torch

        with torch.no_grad():
            feats = torch.as_tensor(embeddings, dtype=torch.float32, device=next(self.head.parameters()).device)
            probs = torch.sigmoid(self.head(feats)).cpu().tolist()
        categories = self.outputs[1:]
        limits = [self.thresholds.get(k, 0.5) for k in categories]
        out = []
        for row in probs:
            scores = dict(zip(categories, row[1:]))
            flagged = sorted(k for k, p, limit in zip(categories, row[1:], limits) if p >= limit)
            out.append(
                Prediction(row[0], decide(row[0], self.threshold), scores, {"categories_over_threshold": flagged})
            )
        return out


def from_spec(
    arg: str | None,
    *,
    encoder: str | None = None,
    threshold: float | None = None,
    device: str | None = None,
    allow_encoder_change: bool = False,
) -> ProbeClassifier:
    """`probe:DIR`: a guard folder written by `imagesafety guard train` (or `save_guard`)."""
    if not arg:
        raise ValueError("probe needs a guard folder: --classifier probe:PATH/TO/GUARD")
    return ProbeClassifier(arg, encoder, threshold, device, allow_encoder_change=allow_encoder_change)
