"""Classifiers by name (`nudenet`, `clip-zeroshot:ViT-L-14/openai`, `probe:DIR`), extensible by entry points.

A third-party package registers a factory under the `imagesafety.classifiers` entry-point group;
the factory is called as `factory(arg, **options)` where `arg` is what follows the first ':' of the spec.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from imagesafety.classifiers.base import SafetyClassifier

ENTRY_POINT_GROUP = "imagesafety.classifiers"


class MissingExtraError(ImportError):
    """A classifier needs packages from an extra that is not installed."""


@dataclass(frozen=True)
class ClassifierEntry:
    """How to build one kind of classifier, and what it needs installed."""

    name: str
    factory: str | Callable[..., SafetyClassifier]  # "module:function" (imported lazily) or a callable
    description: str
    example: str
    extra: str | None = None
    modules: tuple[str, ...] = field(default_factory=tuple)

    def missing_modules(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def build(self, arg: str | None, **options: Any) -> SafetyClassifier:
        missing = self.missing_modules()
        if missing:
            hint = f"pip install 'imagesafety[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"
            raise MissingExtraError(f"classifier {self.name!r} needs {', '.join(missing)}: {hint}")
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(arg, **options)


_BUILTIN = (
    ClassifierEntry(
        "nudenet",
        "imagesafety.classifiers.nudenet:from_spec",
        "NudeNet 3 detector (ONNX weights ship in its wheel); exposed body parts -> Sexual score",
        "nudenet",
        modules=("onnxruntime", "cv2", "nudenet"),
    ),
    ClassifierEntry(
        "clip-zeroshot",
        "imagesafety.classifiers.clip_zeroshot:from_spec",
        "CLIP/SigLIP zero-shot: a safe/unsafe prompt pair per category (open_clip or transformers)",
        "clip-zeroshot:ViT-L-14/openai | clip-zeroshot:hf:openai/clip-vit-large-patch14 | clip-zeroshot:PATH",
        extra="clip",
        modules=("torch", "transformers"),
    ),
    ClassifierEntry(
        "probe",
        "imagesafety.classifiers.probe:from_spec",
        "a saved linear/MLP guard head over image embeddings (the format `guard train` writes)",
        "probe:PATH/TO/GUARD_DIR",
        extra="clip",
        modules=("torch", "safetensors"),
    ),
    ClassifierEntry(
        "vlm",
        "imagesafety.classifiers.vlm.openai_vlm:from_spec",
        "a vision-language model behind an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp) with a prompt protocol",
        "vlm:openai/gpt-4o (--base-url http://localhost:8000/v1 for vLLM) | vlm:hf/llava-hf/llava-1.5-7b-hf",
        extra="vlm",
        modules=("openai",),
    ),
    ClassifierEntry(
        "moderation",
        "imagesafety.classifiers.moderation:from_spec",
        "any endpoint speaking OpenAI's /v1/moderations (omni-moderation, imagesafety serve)",
        "moderation:https://api.openai.com/v1",
        extra="vlm",
        modules=("openai",),
    ),
    ClassifierEntry(
        "hysac",
        "imagesafety.classifiers.hysac:from_spec",
        "HySAC hyperbolic CLIP: unsafe when the image lies far from the origin (threshold calibrated)",
        "hysac:PATH/TO/MODEL_DIR",
        extra="hyperbolic",
        modules=("torch", "safetensors"),
    ),
)


def classifier_entries() -> dict[str, ClassifierEntry]:
    """Built-in classifiers plus those registered by installed packages through entry points."""
    entries = {e.name: e for e in _BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in entries:
            entries[ep.name] = ClassifierEntry(ep.name, ep.load(), f"plug-in from {ep.value}", ep.name)
    return entries


def load_classifier(spec: str, **options: Any) -> SafetyClassifier:
    """Build a classifier from a spec such as `nudenet` or `clip-zeroshot:ViT-B-32/openai`."""
    name, _, arg = spec.partition(":")
    entries = classifier_entries()
    if name not in entries:
        raise ValueError(f"unknown classifier {name!r}; registered: {', '.join(sorted(entries))} (see `imagesafety models`)")
    return entries[name].build(arg or None, **options)
