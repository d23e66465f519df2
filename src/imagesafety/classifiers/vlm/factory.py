"""`vlm:openai/MODEL` (an OpenAI-compatible endpoint) or `vlm:hf/MODEL_OR_PATH` (a local transformers model)."""

from __future__ import annotations

from typing import Any

from imagesafety.registry import Entry


def from_spec(arg: str | None, **options: Any):
    """Dispatch on the prefix; options are checked against the chosen classifier's own."""
    if arg and arg.startswith("hf/") and len(arg) > 3:
        for endpoint_only in ("base_url", "concurrency"):
            options.pop(endpoint_only, None)
        return _checked("hf", "imagesafety.classifiers.vlm.hf_vlm:HFVLMClassifier", arg[3:], options)
    if not arg or not arg.startswith("openai/") or len(arg) <= len("openai/"):
        raise ValueError(
            "VLM classifiers are vlm:openai/MODEL (an OpenAI-compatible endpoint; --base-url for vLLM/Ollama) "
            "or vlm:hf/MODEL_OR_PATH (local transformers)"
        )
    return _checked(
        "openai", "imagesafety.classifiers.vlm.openai_vlm:OpenAIVLMClassifier", arg[len("openai/") :], options
    )


def _checked(kind: str, target: str, model: str, options: dict[str, Any]):
    entry = Entry("classifier", f"vlm:{kind}", target)
    return entry.build(model, **options)
