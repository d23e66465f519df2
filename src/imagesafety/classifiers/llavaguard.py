"""`llavaguard[:REPO_OR_FOLDER]` and `qwenguard[:REPO_OR_FOLDER]`: LlavaGuard v1.2 (LLaVA-OneVision,
AIML-TUDA/LlavaGuard-v1.2-7B-OV-hf) and QwenGuard v1.2 (Qwen2.5-VL, AIML-TUDA/QwenGuard-v1.2-7B) as their model
cards run them: the processor's chat template over one user turn holding the image and then the authors' v1.2
policy (`policies/llavaguard_v1.2.txt`, their published default, byte for byte), greedy decoding.

The answer is the policy's JSON (rating, category O1-O9 or "NA: None applying", rationale). The unsafe score is
P(Unsafe) against P(Safe) at the token where the rating's value starts (the first tokens of the two words), so it
is a probability and not a 0/1 vote; the category becomes the category flagged. `policy=FILE` replaces the policy
text (LlavaGuard is trained to follow edited policies, e.g. a category declared allowed); `max_new_tokens` can be
lowered to stop after the category (the rationale is then cut, and the answer is still read).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, ModelFailure, Prediction, decide
from imagesafety.classifiers.vlm.hf_vlm import first_token_ids
from imagesafety.taxonomy import LLAVAGUARD

MODELS = {"llavaguard": "AIML-TUDA/LlavaGuard-v1.2-7B-OV-hf", "qwenguard": "AIML-TUDA/QwenGuard-v1.2-7B"}
RATING_VALUE = re.compile(r'"rating"\s*:\s*"$')
_FIELD = r'"{}"\s*:\s*"([^"]*)'


def default_policy() -> str:
    """The authors' LlavaGuard / QwenGuard v1.2 default policy prompt."""
    return resources.files("imagesafety.classifiers").joinpath("policies/llavaguard_v1.2.txt").read_text("utf-8")


def parse_answer(text: str) -> tuple[str | None, str | None, str | None]:
    """(rating 'Safe' | 'Unsafe' | None, the category's code such as 'O3' or None, the rationale or None) from the
    JSON answer, also when it was cut short."""

    def field(name: str) -> str | None:
        match = re.search(_FIELD.format(name), text)
        return match.group(1) if match else None

    rating = field("rating")
    rating = rating if rating in ("Safe", "Unsafe") else None
    category = field("category")
    code = category.split(":")[0].strip() if category else None
    return rating, (code if code in {c.code for c in LLAVAGUARD} else None), field("rationale")


class PolicyGuard(Classifier):
    """A LlavaGuard-family model: one policy prompt per image, a JSON answer."""

    taxonomy = LLAVAGUARD
    version = "1.2"
    preferred_batch_size = 4

    def __init__(
        self,
        name: str,
        model: str,
        policy: str | None = None,
        threshold: float = 0.5,
        max_new_tokens: int = 200,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from imagesafety.encoders.inference_mode import prepare_for_inference

        if policy is not None and not Path(policy).is_file():
            raise ValueError(f"policy={policy}: no such file (a text file holding the policy prompt)")
        self.policy = Path(policy).read_text(encoding="utf-8") if policy else default_policy()
        ref = hub.resolve(model, name)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = AutoProcessor.from_pretrained(ref.location)
            self.model = AutoModelForImageTextToText.from_pretrained(ref.location, dtype="auto").to(self.device)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load {name} from {ref.location!r}: {type(exc).__name__}: {exc}") from None
        prepare_for_inference(self.model, self.device)
        self.processor.tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        self.unsafe_id, self.safe_id = first_token_ids(self.processor.tokenizer, "Unsafe", "Safe")
        self.name, self.threshold, self.max_new_tokens = name, float(threshold), int(max_new_tokens)
        self.weights = hub.identity_of(ref)
        self.config = {
            "model": ref.location,
            "weights": self.weights,
            "policy": "sha256:" + hashlib.sha256(self.policy.encode()).hexdigest(),
            "max_new_tokens": self.max_new_tokens,
        }

    def prompt(self) -> str:
        """The chat template's text: one user turn, the image and then the policy, as the model cards build it."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.policy}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    def prepare(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def answers(self, images: list[Image.Image]) -> list[tuple[str, float | None]]:
        """Each image's greedy answer, and P(Unsafe) against P(Safe) where the rating's value starts (None when the
        answer never reached it)."""
        import torch

        inputs = self.processor(
            images=images, text=[self.prompt()] * len(images), return_tensors="pt", padding=True
        ).to(self.device)
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                output_logits=True,  # the model's own logits, before any logits processor
                return_dict_in_generate=True,
            )
        tokenizer = self.processor.tokenizer
        results = []
        for row, sequence in enumerate(out.sequences[:, inputs["input_ids"].shape[1] :].tolist()):
            score = None
            for step in range(len(sequence)):
                if RATING_VALUE.search(tokenizer.decode(sequence[:step], skip_special_tokens=True)):
                    logits = out.logits[step][row].float()
                    score = float(torch.stack([logits[self.unsafe_id], logits[self.safe_id]]).softmax(-1)[0])
                    break
            results.append((tokenizer.decode(sequence, skip_special_tokens=True), score))
        return results

    def predict_prepared(self, items: list[Image.Image]) -> list[Prediction | ModelFailure]:
        out: list[Prediction | ModelFailure] = []
        for text, score in self.answers(items):
            if score is None:
                out.append(ModelFailure(f"{self.name}: no rating in {self.max_new_tokens} tokens ({text[:80]!r})"))
                continue
            rating, code, rationale = parse_answer(text)
            category_scores = {c.key: float(c.code == code and rating == "Unsafe") for c in LLAVAGUARD}
            raw: dict[str, Any] = {"answer": text, "rating": rating, "category": code, "rationale": rationale}
            out.append(Prediction(score, decide(score, self.threshold), category_scores, raw))
        return out


def _factory(name: str):
    def from_spec(
        arg: str | None,
        *,
        policy: str | None = None,
        threshold: float = 0.5,
        max_new_tokens: int = 200,
        device: str | None = None,
    ) -> PolicyGuard:
        return PolicyGuard(name, arg or MODELS[name], policy, threshold, max_new_tokens, device)

    from_spec.__doc__ = f"`{name}` ({MODELS[name]}) or `{name}:REPO_OR_FOLDER`; `policy=FILE` for your policy text."
    return from_spec


llavaguard = _factory("llavaguard")
qwenguard = _factory("qwenguard")


__all__ = ["PolicyGuard", "default_policy", "parse_answer", "llavaguard", "qwenguard"]
