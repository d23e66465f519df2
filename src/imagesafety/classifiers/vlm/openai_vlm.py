"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp) as a safety classifier.

Images go as base64 JPEG data URLs, resized to `max_side`. Requests run concurrently (`concurrency`) on
one background event loop, with the client's retries and backoff on 429/5xx and a timeout; every
answer is cached the moment it arrives, so a crash or Ctrl-C loses nothing already answered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import threading
from typing import Any

from PIL import Image

from imagesafety.classifiers.base import FatalModelError, ModelFailure, Prediction, config_hash
from imagesafety.classifiers.vlm.protocols import PromptProtocol
from imagesafety.classifiers.vlm.scoring import ProtocolScoring
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy


def encode_image(image: Image.Image, max_side: int, quality: int = 90) -> str:
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIVLMClassifier(ProtocolScoring):
    """`vlm:openai/MODEL`: each prompt of the protocol is asked about each image; answers are parsed and voted."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 protocol: str | PromptProtocol = "unsafebench", taxonomy: str | Taxonomy = UNSAFEBENCH,
                 concurrency: int = 8, max_side: int = 768, timeout: float = 60.0, max_retries: int = 5,
                 temperature: float = 0.0, max_tokens: int = 200, unsure: str = "unsafe", threshold: float = 0.5,
                 price_per_1k_input: float = 0.0, price_per_1k_output: float = 0.0, cache: Any = "default"):
        self.setup_scoring(protocol, taxonomy, unsure, threshold, price_per_1k_input, price_per_1k_output)
        self.model, self.base_url = model, base_url or os.environ.get("OPENAI_BASE_URL")
        self.api_key = os.environ.get(api_key_env) or ("EMPTY" if self.base_url else None)
        if not self.api_key:
            raise ValueError(f"no API key: set ${api_key_env} (local servers accept any key: pass --base-url)")
        self.concurrency, self.max_side, self.timeout, self.max_retries = int(concurrency), int(max_side), float(timeout), int(max_retries)
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.preferred_batch_size = max(16, 2 * self.concurrency)
        self.name = f"vlm:openai/{model}"
        self.version = f"{self.protocol.name}-{self.protocol.version}"
        self.config = {"model": model, "base_url": self.base_url, "protocol": self.protocol.name, "prompts": self.protocol.fingerprint(self.taxonomy),
                       "max_side": self.max_side, "temperature": self.temperature, "max_tokens": self.max_tokens, "unsure": unsure,
                       "taxonomy": self.taxonomy.keys}
        self._answer_namespace = config_hash({k: v for k, v in self.config.items() if k != "unsure"})
        from imagesafety.bench.evaluate import open_cache

        self.cache = open_cache(cache)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="vlm-client", daemon=True).start()
        self._client = None
        self._checked = False

    # -- requests ---------------------------------------------------------------------------
    async def _client_instance(self):
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

    async def _ask(self, data_url: str, prompt: str) -> dict:
        key = hashlib.sha256(f"{self._answer_namespace}|{prompt}|{hashlib.sha256(data_url.encode()).hexdigest()}".encode()).hexdigest()
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get_answer, key)
            if hit is not None:
                return hit | {"cached": True}
        client = await self._client_instance()
        async with self._semaphore:
            response = await client.chat.completions.create(
                model=self.model, temperature=self.temperature, max_tokens=self.max_tokens,
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                                       {"type": "text", "text": prompt}]}])
        text = response.choices[0].message.content if response.choices else None
        usage = getattr(response, "usage", None)
        answer = {"text": text, "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                  "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put_answer, key, answer)
        return answer

    async def _classify(self, data_url: str) -> Prediction | ModelFailure:
        try:
            answers = await asyncio.gather(*(self._ask(data_url, p) for p in self.prompts))
        except Exception as exc:
            fatal = _fatal(exc)
            if fatal:
                raise FatalModelError(fatal) from exc
            return ModelFailure(f"{self.name}: request failed after {self.max_retries} retries: {type(exc).__name__}: {exc}")
        return self.score_answers(answers)

    async def _classify_all(self, items: list[str]) -> list[Prediction | ModelFailure]:
        return await asyncio.gather(*(self._classify(item) for item in items))

    # -- classifier interface ----------------------------------------------------------------
    def prepare(self, image: Image.Image) -> str:
        return encode_image(image, self.max_side)

    def predict_prepared(self, items: list[str]) -> list[Prediction | ModelFailure]:
        if not self._checked and items:  # one request first: a misconfigured endpoint fails now, not after a thousand
            first = asyncio.run_coroutine_threadsafe(self._classify_all(items[:1]), self._loop).result()
            self._checked = True
            return first + self.predict_prepared(items[1:])
        return asyncio.run_coroutine_threadsafe(self._classify_all(items), self._loop).result()

    def predict(self, images: list[Image.Image]) -> list[Prediction | ModelFailure]:
        return self.predict_prepared([self.prepare(img) for img in images])


def _fatal(exc: Exception) -> str | None:
    """A message when the error means no request can succeed (bad key, unknown model, images refused)."""
    try:
        import openai
    except ImportError:
        return None
    if isinstance(exc, openai.AuthenticationError):
        return f"the endpoint refused the API key: {exc}"
    if isinstance(exc, openai.NotFoundError):
        return f"the endpoint does not know this model: {exc}"
    if isinstance(exc, openai.BadRequestError):
        return f"the endpoint rejected an image request (does this model accept images?): {exc}"
    return None


def from_spec(arg: str | None, **options: Any):
    """`vlm:openai/MODEL` (an OpenAI-compatible endpoint; options base_url, concurrency, protocol, taxonomy, max_side,
    unsure, api_key_env, ...) or `vlm:hf/MODEL_OR_PATH` (a local transformers model)."""
    if arg and arg.startswith("hf/") and len(arg) > 3:
        from imagesafety.classifiers.vlm.hf_vlm import HFVLMClassifier

        for endpoint_only in ("base_url", "concurrency", "api_key_env"):
            options.pop(endpoint_only, None)
        return HFVLMClassifier(arg[3:], **options)
    if not arg or not arg.startswith("openai/") or len(arg) <= len("openai/"):
        raise ValueError("VLM classifiers are vlm:openai/MODEL (an OpenAI-compatible endpoint; --base-url for vLLM/Ollama) "
                         "or vlm:hf/MODEL_OR_PATH (local transformers)")
    return OpenAIVLMClassifier(arg[len("openai/"):], **options)
