"""`llamaguard4[:REPO_OR_FOLDER]`: Meta's Llama Guard 4 (meta-llama/Llama-Guard-4-12B, gated) as its model card runs it:
`AutoProcessor` and `Llama4ForConditionalGeneration`, the prompt built by the processor's own chat template from a
user turn holding the image (and `text`, empty by default), `excluded_category_keys` passed through (`exclude`).

The answer is "safe", or "unsafe" and a line of S-codes (S1 Violent Crimes ... S13 Elections; S14 is offered only
without an image), greedy as the card decodes it. The unsafe score is P(unsafe) against P(safe) at the first answer
token (the first tokens of the two words, from the step where the answer starts), so it is a probability even when
the text cannot be parsed; the codes become the categories flagged. One conversation per image.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, ModelFailure, Prediction, decide
from imagesafety.classifiers.vlm.hf_vlm import first_token_ids
from imagesafety.taxonomy import Category, Taxonomy

DEFAULT_MODEL = "meta-llama/Llama-Guard-4-12B"
CATEGORIES = (
    ("violent_crimes", "Violent Crimes"),
    ("non_violent_crimes", "Non-Violent Crimes"),
    ("sex_crimes", "Sex Crimes"),
    ("child_exploitation", "Child Exploitation"),
    ("defamation", "Defamation"),
    ("specialized_advice", "Specialized Advice"),
    ("privacy", "Privacy"),
    ("intellectual_property", "Intellectual Property"),
    ("indiscriminate_weapons", "Indiscriminate Weapons"),
    ("hate", "Hate"),
    ("self_harm", "Self-Harm"),
    ("sexual_content", "Sexual Content"),
    ("elections", "Elections"),
)
TAXONOMY = Taxonomy(
    "llamaguard4", tuple(Category(key, name, code=f"S{i}") for i, (key, name) in enumerate(CATEGORIES, 1))
)
CODE = re.compile(r"\bS(\d{1,2})\b")


def parse_answer(text: str) -> tuple[str | None, list[str]]:
    """('safe' | 'unsafe' | None, the S-codes on the line after 'unsafe')."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or lines[0].lower() not in ("safe", "unsafe"):
        return None, []
    verdict = lines[0].lower()
    codes = [f"S{n}" for n in CODE.findall(lines[1])] if verdict == "unsafe" and len(lines) > 1 else []
    return verdict, codes


class LlamaGuard4(Classifier):
    name = "llamaguard4"
    version = "1"
    taxonomy = TAXONOMY
    preferred_batch_size = 4

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        exclude: list[str] | None = None,
        text: str = "",
        threshold: float = 0.5,
        max_new_tokens: int = 10,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoProcessor, Llama4ForConditionalGeneration

        known = {c.code for c in TAXONOMY}
        self.exclude = sorted(exclude or [])
        unknown = [c for c in self.exclude if c not in known]
        if unknown:
            raise ValueError(f"exclude: unknown category codes {unknown}; Llama Guard 4's are S1-S13")
        ref = hub.resolve(model, "Llama Guard 4")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(ref.location)
            self.model = Llama4ForConditionalGeneration.from_pretrained(ref.location, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load Llama Guard 4 from {ref.location!r}: {type(exc).__name__}: {exc}") from None
        self.model = self.model.to(self.device).eval()
        self.unsafe_id, self.safe_id = first_token_ids(self.processor.tokenizer, "unsafe", "safe")
        self.text = text
        self.threshold = float(threshold)
        self.max_new_tokens = int(max_new_tokens)
        self.covers = frozenset(c.key for c in TAXONOMY if c.code not in self.exclude)
        self.weights = hub.identity_of(ref)
        self.config = {
            "model": ref.location,
            "weights": self.weights,
            "exclude": self.exclude,
            "text": text,
            "max_new_tokens": self.max_new_tokens,
        }

    def prompt(self) -> str:
        """The chat template's text for one image (the processor's own template, categories excluded as asked)."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.text}]}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, excluded_category_keys=self.exclude
        )

    def answer(self, image: Image.Image) -> tuple[str, float | None]:
        """The greedy answer's text, and P(unsafe) against P(safe) where the answer's first word starts."""
        import torch

        inputs = self.processor(text=[self.prompt()], images=[image.convert("RGB")], return_tensors="pt")
        inputs = {k: (v.to(self.model.dtype) if k == "pixel_values" else v).to(self.device) for k, v in inputs.items()}
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, inputs["input_ids"].shape[1] :]
        tokenizer = self.processor.tokenizer
        score = None
        for step, token in enumerate(new.tolist()):
            if tokenizer.decode([token], skip_special_tokens=True).strip():
                logits = out.scores[step][0].float()
                pair = torch.stack([logits[self.unsafe_id], logits[self.safe_id]]).softmax(-1)
                score = float(pair[0])
                break
        return tokenizer.decode(new, skip_special_tokens=True), score

    def predict_prepared(self, items: list[Image.Image]) -> list[Prediction | ModelFailure]:
        out: list[Prediction | ModelFailure] = []
        for image in items:
            text, score = self.answer(image)
            if score is None:
                out.append(ModelFailure(f"{self.name}: no answer in {self.max_new_tokens} tokens ({text!r})"))
                continue
            verdict, codes = parse_answer(text)
            flagged = {c.key for c in TAXONOMY if c.code in codes}
            category_scores = {c.key: float(c.key in flagged) for c in TAXONOMY if c.key in self.covers}
            raw: dict[str, Any] = {"answer": text, "verdict": verdict, "codes": codes}
            out.append(Prediction(score, decide(score, self.threshold), category_scores, raw))
        return out


def from_spec(
    arg: str | None,
    *,
    exclude: list[str] | str | None = None,
    text: str = "",
    threshold: float = 0.5,
    max_new_tokens: int = 10,
    device: str | None = None,
) -> LlamaGuard4:
    """`llamaguard4` (meta-llama/Llama-Guard-4-12B) or `llamaguard4:REPO_OR_FOLDER`; `exclude=S5,S7` drops
    categories."""
    codes = [c.strip() for c in exclude.split(",") if c.strip()] if isinstance(exclude, str) else exclude
    return LlamaGuard4(arg or DEFAULT_MODEL, codes, text, threshold, max_new_tokens, device)


__all__ = ["LlamaGuard4", "parse_answer", "TAXONOMY", "from_spec"]
