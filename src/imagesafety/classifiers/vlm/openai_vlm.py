"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp) as a safety classifier.

Images go as base64 JPEG data URLs, resized to `max_side` in `prepare` (on the run's decoding threads). Requests
run concurrently through the shared transport; every answer is cached in the run's cache the moment it arrives,
so a crash or Ctrl-C loses nothing already answered, and --no-cache asks again.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from PIL import Image

from imagesafety.classifiers.base import Classifier, FatalModelError, ModelFailure, Prediction, config_hash
from imagesafety.classifiers.transport import OpenAITransport, api_key, encode_image
from imagesafety.classifiers.vlm.protocols import PromptProtocol
from imagesafety.classifiers.vlm.scoring import ProtocolScoring
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

if TYPE_CHECKING:
    from imagesafety.store import PredictionCache


class OpenAIVLMClassifier(ProtocolScoring, Classifier):
    """`vlm:openai/MODEL`: each prompt of the protocol is asked about each image; answers are parsed and voted."""

    concurrent_batches = 3  # requests to an endpoint: keep several batches in flight

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        protocol: str | PromptProtocol = "unsafebench",
        taxonomy: str | Taxonomy = UNSAFEBENCH,
        concurrency: int = 8,
        max_side: int = 768,
        timeout: float = 60.0,
        max_retries: int = 5,
        temperature: float = 0.0,
        max_tokens: int = 200,
        unsure: str = "unsafe",
        threshold: float = 0.5,
        price_per_1k_input: float = 0.0,
        price_per_1k_output: float = 0.0,
    ):
        import os

        self.setup_scoring(protocol, taxonomy, unsure, threshold, price_per_1k_input, price_per_1k_output)
        self.model, self.base_url = model, base_url or os.environ.get("OPENAI_BASE_URL")
        self.transport = OpenAITransport(
            self.base_url, api_key(api_key_env, self.base_url), concurrency, timeout, max_retries
        )
        self.max_side, self.max_retries = int(max_side), int(max_retries)
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.preferred_batch_size = max(16, int(concurrency))  # with 3 batches in flight, the endpoint stays busy
        self.name = f"vlm:openai/{model}"
        self.version = f"{self.protocol.name}-{self.protocol.version}"
        self.config = {
            "model": model,
            "base_url": self.base_url,
            "protocol": self.protocol.name,
            "prompts": self.protocol.fingerprint(self.taxonomy),
            "max_side": self.max_side,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "unsure": unsure,
            "taxonomy": self.taxonomy.keys,
        }
        self._answer_namespace = config_hash({k: v for k, v in self.config.items() if k != "unsure"})
        self._checked = False
        self._check_lock = threading.Lock()

    def attach_cache(self, cache: PredictionCache | None) -> None:
        """The run's cache for answers (None: ask the endpoint every time)."""
        self.transport.attach_cache(cache)

    async def _classify(self, data_url: str) -> Prediction | ModelFailure:
        ask = self.transport.chat
        try:
            answers = await asyncio.gather(
                *(
                    ask(
                        data_url,
                        p,
                        model=self.model,
                        temperature=self.temperature,
                        max_tokens=self.max_tokens,
                        namespace=self._answer_namespace,
                    )
                    for p in self.prompts
                )
            )
        except FatalModelError:
            raise
        except Exception as exc:
            return ModelFailure(
                f"{self.name}: request failed after {self.max_retries} retries: {type(exc).__name__}: {exc}"
            )
        return self.score_answers(answers)

    async def _classify_all(self, items: list[str]) -> list[Prediction | ModelFailure]:
        return await asyncio.gather(*(self._classify(item) for item in items))

    def prepare(self, image: Image.Image) -> str:
        return encode_image(image, self.max_side)

    def predict_prepared(self, items: list[str]) -> list[Prediction | ModelFailure]:
        if not self._checked and items:  # one request first: a misconfigured endpoint fails now, not after a thousand
            with self._check_lock:
                if not self._checked:
                    first = self.transport.run(self._classify_all(items[:1]))
                    self._checked = True
                    return first + self.predict_prepared(items[1:])
        return self.transport.run(self._classify_all(items))


def from_spec(arg: str | None, **options: Any) -> OpenAIVLMClassifier:
    return OpenAIVLMClassifier(arg or "", **options)
