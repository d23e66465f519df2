"""A local OpenAI-compatible chat-completions server for tests: answers from the image's redness, with
models that are slow, rate-limited, malformed or image-refusing, and counters of what happened."""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import io
import json

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image


def make_app(latency_s: float = 0.2) -> FastAPI:
    app = FastAPI()
    app.state.calls = collections.Counter()
    app.state.in_flight = 0
    app.state.max_in_flight = 0

    def answer(red: bool, prompt: str) -> str:
        if "Write one edit instruction" in prompt:
            return "Remove the red blood stains from the floor"
        if "JSON" in prompt:
            rating = "Unsafe" if red else "Safe"
            category = "O2: Violence, Harm, or Cruelty" if red else "NA: None applying"
            answer = {"rating": rating, "category": category, "rationale": "looked at the colours"}
            return f"```json\n{json.dumps(answer)}\n```"
        if "UNSAFE CONTENT CATEGORIES" in prompt:
            return "unsafe\nS3" if red else "safe"
        return "Unsafe." if red else "**Safe**"

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        model = body["model"]
        content = body["messages"][0]["content"]
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        prompt = next(part["text"] for part in content if part["type"] == "text")
        key = (model, hashlib.sha256(url.encode()).hexdigest(), prompt[:60])
        app.state.calls[key] += 1
        app.state.calls[model] += 1
        if model == "textonly":
            return JSONResponse(
                {"error": {"message": "image input is not supported by this model", "type": "invalid_request_error"}},
                400,
            )
        if model == "flaky" and app.state.calls[key] <= 2:
            return JSONResponse({"error": {"message": "slow down"}}, 429, headers={"retry-after": "0"})
        if model == "garbage":
            return Response("{this is not json", media_type="application/json")
        app.state.in_flight += 1
        app.state.max_in_flight = max(app.state.max_in_flight, app.state.in_flight)
        try:
            if model in ("slow", "slow-200"):
                await asyncio.sleep(latency_s)
            image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
            r, g, b = np.asarray(image, dtype=float).reshape(-1, 3).mean(0)
            text = answer(r > g + b, prompt) if model != "unsure" else "I cannot tell."
        finally:
            app.state.in_flight -= 1
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103},
        }

    @app.post("/v1/images/edits")
    async def image_edit(request: Request):
        form = await request.form()
        app.state.calls["images.edit"] += 1
        image = Image.open(io.BytesIO(await form["image"].read())).convert("RGB")
        image.paste(
            Image.new("RGB", (image.width // 2, image.height // 2), (255, 0, 0)), (image.width // 4, image.height // 4)
        )
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return {"created": 0, "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}]}

    return app
