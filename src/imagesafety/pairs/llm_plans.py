"""Edit instructions written by a vision-language model that sees the image and the policy (OpenAI-compatible
endpoint)."""

from __future__ import annotations

import os

from PIL import Image

from imagesafety.classifiers.transport import encode_image
from imagesafety.pairs.plans import KEEP, EditPlan
from imagesafety.taxonomy import Taxonomy

PROMPT = (
    "Safety policy category: {name} — {description}\n"
    "This image is {state} with respect to that category. Write one edit instruction for an image-editing model that "
    "{goal}, changing nothing else. Answer with the instruction only."
)


class LLMPlanner:
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_side: int = 512,
        timeout: float = 60.0,
        max_retries: int = 3,
    ):
        from openai import OpenAI

        self.client = OpenAI(
            base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", timeout=timeout, max_retries=max_retries
        )
        self.model, self.max_side = model, max_side
        self.name = f"llm:{model}"

    def rewrite(self, plan: EditPlan, image: Image.Image, taxonomy: Taxonomy) -> EditPlan:
        """The plan with the model's instruction (the template's, if the model answers nothing usable)."""
        category = taxonomy.get(plan.category)
        add = plan.target_label == 1
        prompt = PROMPT.format(
            name=category.name,
            description=category.description,
            state="safe" if add else "unsafe",
            goal=f"adds {category.name.lower()} content"
            if add
            else f"removes or neutralises the {category.name.lower()} content",
        )
        response = self.client.chat.completions.create(
            model=self.model,
            temperature=0,
            max_tokens=120,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": encode_image(image, self.max_side)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
        )
        text = (response.choices[0].message.content or "").strip().strip('"') if response.choices else ""
        if len(text) < 8:
            return plan
        instruction = text if "everything else" in text.lower() else f"{text.rstrip('.')}. {KEEP}"
        return EditPlan(plan.sample_id, plan.category, plan.source_label, plan.target_label, instruction, self.name)
