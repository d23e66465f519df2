"""`shieldgemma2[:MODEL_OR_FOLDER]`: Google's ShieldGemma 2 (google/shieldgemma-2-4b-it) as it was trained to be asked:
transformers' own `ShieldGemma2Processor` builds one chat prompt per (image, policy) with the policy's text, and
`ShieldGemma2ForImageClassification` answers P(Yes) / P(No) for the next token. "Yes" means the image violates the
policy: it is index 0 of the model's `probabilities` (the class's own code selects [yes, no]; its docstring's
`probabilities[:, 1]` would read the probability of compliance).

Policies: the processor's defaults (`dangerous`, `sexual`, `violence`, from the model's processor config) plus any in
`policy_file=` (YAML: key -> policy text, overriding a default of the same key); `policies=` picks some. Each policy's
P(Yes) is a category score (`sexual` and `violence` are UnsafeBench's categories; `dangerous` is ShieldGemma's own);
the unsafe score is the highest of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.taxonomy import UNSAFEBENCH, Category, Taxonomy

DEFAULT_MODEL = "google/shieldgemma-2-4b-it"
YES = 0  # index of "Yes" (violates) in ShieldGemma2ForImageClassification's probabilities
TAXONOMY = Taxonomy(
    "shieldgemma2",
    (
        UNSAFEBENCH.get("sexual"),
        UNSAFEBENCH.get("violence"),
        Category(
            "dangerous",
            "Dangerous content",
            "Content that facilitates or encourages activities that could cause real-world harm.",
        ),
    ),
)


def read_policy_file(path: str | Path) -> dict[str, str]:
    """A YAML mapping of policy key -> policy text."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"policy file {path}: {' '.join(str(exc).split())}") from None
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items())
    ):
        raise ValueError(f"policy file {path}: write a mapping of policy key -> policy text")
    return {k.strip(): v.strip() for k, v in data.items()}


def choose_policies(wanted: str | list[str] | None, available: dict[str, str]) -> list[str]:
    names = [p.strip() for p in (wanted.split(",") if isinstance(wanted, str) else wanted or []) if p.strip()] or list(
        available
    )
    unknown = [p for p in names if p not in available]
    if unknown:
        raise ValueError(
            f"ShieldGemma 2 has no policy {', '.join(unknown)}; its policies: {', '.join(available)} "
            "(add your own with --option policy_file=YAML)"
        )
    return names


class ShieldGemma2Classifier(Classifier):
    name = "shieldgemma2"
    version = "1"
    taxonomy = TAXONOMY
    preferred_batch_size = 4

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        policies: str | list[str] | None = None,
        policy_file: str | None = None,
        threshold: float = 0.5,
        device: str | None = None,
        dtype: str = "auto",
    ):
        import torch
        from transformers import AutoProcessor, ShieldGemma2ForImageClassification

        ref = hub.resolve(model, "ShieldGemma 2 model", cache_file="preprocessor_config.json")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = AutoProcessor.from_pretrained(ref.location)
            self.model = (
                ShieldGemma2ForImageClassification.from_pretrained(ref.location, dtype=dtype).to(self.device).eval()
            )
        except OSError as exc:
            raise ValueError(f"cannot load ShieldGemma 2 from {ref.location!r}: {exc}") from None
        self.custom = read_policy_file(policy_file) if policy_file else {}
        texts = {**self.processor.policy_definitions, **self.custom}
        self.policies = choose_policies(policies, texts)
        self.threshold = float(threshold)
        self.covers = frozenset(p for p in self.policies if p in UNSAFEBENCH.keys)
        self.weights = hub.identity_of(ref, "preprocessor_config.json")
        self.config = {
            "model": ref.location,
            "weights": self.weights,
            "policies": {p: texts[p] for p in self.policies},
        }

    def prepare(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def violation_probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(images, policies) P(Yes: the image violates the policy)."""
        import torch

        inputs = self.processor(
            images=images, policies=self.policies, custom_policies=self.custom, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            probabilities = self.model(**inputs).probabilities[:, YES]
        return probabilities.float().cpu().numpy().reshape(len(images), len(self.policies))

    def predict_prepared(self, items: list[Image.Image]) -> list[Prediction]:
        if not items:
            return []
        out = []
        for row in self.violation_probabilities(items):
            scores: dict[str, Any] = {p: float(v) for p, v in zip(self.policies, row)}
            score = float(row.max())
            out.append(Prediction(score, decide(score, self.threshold), scores, {"p_yes": scores}))
        return out


def from_spec(
    arg: str | None,
    *,
    policies: str | list[str] | None = None,
    policy_file: str | None = None,
    threshold: float = 0.5,
    device: str | None = None,
    dtype: str = "auto",
) -> ShieldGemma2Classifier:
    """`shieldgemma2` (google/shieldgemma-2-4b-it) or `shieldgemma2:MODEL_OR_FOLDER`."""
    return ShieldGemma2Classifier(arg or DEFAULT_MODEL, policies, policy_file, threshold, device, dtype)
