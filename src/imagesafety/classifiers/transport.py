"""One OpenAI-compatible transport for every endpoint client (VLM classifier, moderation classifier, pair planner):
an AsyncOpenAI client on its own background event loop, bounded concurrency, the client's retries with backoff
on 429/5xx and timeouts, errors that mean no request can succeed mapped to `FatalModelError`, and an answer
cache that the run hands in (none with --no-cache)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from imagesafety.classifiers.base import FatalModelError

if TYPE_CHECKING:
    from imagesafety.store import PredictionCache

T = TypeVar("T")


def encode_image(image: Image.Image, max_side: int, quality: int = 90) -> str:
    """A JPEG data URL of the image, its long side at most `max_side` (per-image CPU work: run it in `prepare`)."""
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def fatal_message(exc: BaseException) -> str | None:
    """A message when the error means no request can succeed (bad key, unknown model, images refused)."""
    import openai

    if isinstance(exc, openai.AuthenticationError):
        return f"the endpoint refused the API key: {exc}"
    if isinstance(exc, openai.NotFoundError):
        return f"the endpoint does not know this model: {exc}"
    if isinstance(exc, openai.BadRequestError):
        return f"the endpoint rejected an image request (does this model accept images?): {exc}"
    return None


def api_key(env: str, base_url: str | None) -> str:
    """The key from `env`; local servers (a base URL) accept any key."""
    key = os.environ.get(env) or ("EMPTY" if base_url else None)
    if not key:
        raise ValueError(f"no API key: set ${env} (local servers accept any key: pass --base-url)")
    return key


class OpenAITransport:
    """Requests to one OpenAI-compatible endpoint from synchronous code, run concurrently on a background loop."""

    def __init__(
        self, base_url: str | None, key: str, concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5
    ):
        self.base_url, self.key = base_url, key
        self.concurrency, self.timeout, self.max_retries = int(concurrency), float(timeout), int(max_retries)
        self.cache: PredictionCache | None = None
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="openai-transport", daemon=True).start()
        self._client = None
        self._semaphore: asyncio.Semaphore | None = None

    def attach_cache(self, cache: PredictionCache | None) -> None:
        self.cache = cache

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run a coroutine on the transport's loop and wait for its result (FatalModelError propagates)."""
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()

    async def client(self):
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                base_url=self.base_url, api_key=self.key, timeout=self.timeout, max_retries=self.max_retries
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

    async def call(self, request) -> Any:
        """`await request(client)` under the concurrency limit; fatal endpoint errors become FatalModelError."""
        client = await self.client()
        try:
            async with self._semaphore:
                return await request(client)
        except Exception as exc:
            fatal = fatal_message(exc)
            if fatal:
                raise FatalModelError(fatal) from exc
            raise

    async def chat(
        self,
        data_url: str,
        prompt: str,
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int = 200,
        namespace: str = "",
    ) -> dict[str, Any]:
        """One chat completion about one image: {text, prompt_tokens, completion_tokens}, cached by
        (namespace, prompt, image) when the run has a cache."""
        key = hashlib.sha256(
            f"{namespace}|{prompt}|{hashlib.sha256(data_url.encode()).hexdigest()}".encode()
        ).hexdigest()
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get_answer, key)
            if hit is not None:
                return hit | {"cached": True}
        messages = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": prompt}],
            }
        ]
        response = await self.call(
            lambda client: client.chat.completions.create(
                model=model, temperature=temperature, max_tokens=max_tokens, messages=messages
            )
        )
        text = response.choices[0].message.content if response.choices else None
        usage = response.usage
        answer = {
            "text": text,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
        }
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put_answer, key, answer)
        return answer

    async def moderate(self, data_url: str, model: str):
        """One /v1/moderations request for one image; the result object."""
        response = await self.call(
            lambda client: client.moderations.create(
                model=model, input=[{"type": "image_url", "image_url": {"url": data_url}}]
            )
        )
        return response.results[0]
