"""`moderation:BASE_URL`: any endpoint speaking OpenAI's /v1/moderations (OpenAI's omni-moderation, our server).

For images, OpenAI applies self-harm (three kinds), sexual, violence and violence/graphic; the unsafe
score is the largest category score and the decision is the endpoint's own `flagged`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from PIL import Image

from imagesafety.classifiers.base import FatalModelError, ModelFailure, Prediction
from imagesafety.classifiers.vlm.openai_vlm import _fatal, encode_image
from imagesafety.taxonomy import Category, Taxonomy

OPENAI_IMAGE_CATEGORIES = ("self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic")
TAXONOMY = Taxonomy("openai-moderation", tuple(Category(c.replace("/", "_").replace("-", "_"), c) for c in OPENAI_IMAGE_CATEGORIES))


class ModerationClassifier:
    def __init__(self, base_url: str, model: str = "omni-moderation-latest", api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, max_side: int = 1024, timeout: float = 60.0, max_retries: int = 5, threshold: float = 0.5):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.api_key = model, os.environ.get(api_key_env) or "EMPTY"
        self.concurrency, self.max_side, self.timeout, self.max_retries = int(concurrency), int(max_side), float(timeout), int(max_retries)
        self.threshold = float(threshold)
        self.taxonomy = TAXONOMY
        self.name, self.version = f"moderation:{self.base_url}", model
        self.config = {"base_url": self.base_url, "model": model, "max_side": self.max_side}
        self.preferred_batch_size = max(16, 2 * self.concurrency)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="moderation-client", daemon=True).start()
        self._client = None

    async def _one(self, data_url: str) -> Prediction | ModelFailure:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)
            self._semaphore = asyncio.Semaphore(self.concurrency)
        try:
            async with self._semaphore:
                response = await self._client.moderations.create(model=self.model, input=[{"type": "image_url", "image_url": {"url": data_url}}])
        except Exception as exc:
            fatal = _fatal(exc)
            if fatal:
                raise FatalModelError(fatal) from exc
            return ModelFailure(f"{self.name}: {type(exc).__name__}: {exc}")
        result = response.results[0]
        scores_raw = result.category_scores.model_dump(by_alias=True) if hasattr(result.category_scores, "model_dump") else dict(result.category_scores)
        scores = {c.key: float(scores_raw.get(c.name) or 0.0) for c in TAXONOMY}
        score = max(scores.values()) if scores else 0.0
        return Prediction(score, int(bool(result.flagged)), scores, {"flagged": bool(result.flagged), "category_scores": scores_raw})

    async def _all(self, items):
        return await asyncio.gather(*(self._one(i) for i in items))

    def prepare(self, image: Image.Image) -> str:
        return encode_image(image, self.max_side)

    def predict_prepared(self, items: list[str]):
        return asyncio.run_coroutine_threadsafe(self._all(items), self._loop).result()

    def predict(self, images: list[Image.Image]):
        return self.predict_prepared([self.prepare(img) for img in images])


def from_spec(arg: str | None, **options: Any) -> ModerationClassifier:
    if not arg:
        raise ValueError("moderation needs a base URL: --classifier moderation:https://api.openai.com/v1")
    return ModerationClassifier(arg, **options)
