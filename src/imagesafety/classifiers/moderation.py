"""`moderation:BASE_URL`: any endpoint speaking OpenAI's /v1/moderations (OpenAI's omni-moderation, our server).

For images, OpenAI applies self-harm (three kinds), sexual, violence and violence/graphic; the unsafe
score is the largest category score and the decision is the endpoint's own `flagged`.
"""

from __future__ import annotations

import asyncio

from PIL import Image

from imagesafety.classifiers.base import Classifier, FatalModelError, ModelFailure, Prediction
from imagesafety.classifiers.transport import OpenAITransport, api_key, encode_image
from imagesafety.taxonomy import Category, Taxonomy

OPENAI_IMAGE_CATEGORIES = (
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "violence",
    "violence/graphic",
)
TAXONOMY = Taxonomy(
    "openai-moderation", tuple(Category(c.replace("/", "_").replace("-", "_"), c) for c in OPENAI_IMAGE_CATEGORIES)
)


class ModerationClassifier(Classifier):
    concurrent_batches = 3  # requests to an endpoint: keep several batches in flight

    def __init__(
        self,
        base_url: str,
        model: str = "omni-moderation-latest",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_side: int = 1024,
        timeout: float = 60.0,
        max_retries: int = 5,
        threshold: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.transport = OpenAITransport(
            self.base_url, api_key(api_key_env, self.base_url), concurrency, timeout, max_retries
        )
        self.max_side = int(max_side)
        self.threshold = float(threshold)
        self.taxonomy = TAXONOMY
        self.name, self.version = f"moderation:{self.base_url}", model
        self.config = {"base_url": self.base_url, "model": model, "max_side": self.max_side}
        self.preferred_batch_size = max(16, int(concurrency))  # with 3 batches in flight, the endpoint stays busy

    async def _one(self, data_url: str) -> Prediction | ModelFailure:
        try:
            result = await self.transport.moderate(data_url, self.model)
        except FatalModelError:
            raise
        except Exception as exc:
            return ModelFailure(f"{self.name}: {type(exc).__name__}: {exc}")
        scores_raw = result.category_scores.model_dump(by_alias=True)
        scores = {c.key: float(scores_raw.get(c.name) or 0.0) for c in TAXONOMY}
        score = max(scores.values()) if scores else 0.0
        return Prediction(
            score, int(bool(result.flagged)), scores, {"flagged": bool(result.flagged), "category_scores": scores_raw}
        )

    async def _all(self, items: list[str]):
        return await asyncio.gather(*(self._one(i) for i in items))

    def prepare(self, image: Image.Image) -> str:
        return encode_image(image, self.max_side)

    def predict_prepared(self, items: list[str]):
        return self.transport.run(self._all(items))


def from_spec(
    arg: str | None,
    *,
    model: str = "omni-moderation-latest",
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    max_side: int = 1024,
    timeout: float = 60.0,
    max_retries: int = 5,
    threshold: float = 0.5,
) -> ModerationClassifier:
    if not arg:
        raise ValueError("moderation needs a base URL: --classifier moderation:https://api.openai.com/v1")
    return ModerationClassifier(arg, model, api_key_env, concurrency, max_side, timeout, max_retries, threshold)
