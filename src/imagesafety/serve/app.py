"""The FastAPI app: moderation and classify endpoints over micro-batched classifiers, with auth, limits, metrics,
audit."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from imagesafety.classifiers.base import SafetyClassifier
from imagesafety.serve.auth import AuthGate
from imagesafety.serve.config import ServeConfig
from imagesafety.serve.errors import APIError, error_body, install_error_handlers
from imagesafety.serve.explain import check_budget, explain_file, explain_mode
from imagesafety.serve.openai_categories import moderation_result
from imagesafety.serve.schemas import ClassifyResponse, ImageInput, ModerationRequest, ModerationResponse, TextInput
from imagesafety.serve.service import Decision, ModerationService


def one_verdict(decisions: list[Decision]) -> dict:
    """OpenAI's result for one input whose images share a verdict: each category's score the maximum over the images,
    a category flagged if it is flagged on any image, the input flagged if any image is."""
    scores: dict[str, float] = {}
    for d in decisions:
        for key, value in d.prediction.category_scores.items():
            scores[key] = max(scores.get(key, 0.0), float(value))
    flagged_categories = set().union(*(d.categories for d in decisions))
    return {"flagged": any(d.flagged for d in decisions), **moderation_result(scores, flagged_categories)}


def image_details(where: str, d: Decision) -> dict:
    """What the `imagesafety` field says of one image of an input."""
    return {
        "input": where,
        "image_sha256": d.sha256,
        "unsafe_score": d.prediction.unsafe_score,
        "decision": d.prediction.decision,
        "flagged": d.flagged,
        "scores": d.prediction.category_scores,
        "views": d.prediction.views.to_dict() if d.prediction.views is not None else None,
        "grades": d.prediction.raw.get("grades") if isinstance(d.prediction.raw, dict) else None,
        "hash_match": d.prediction.raw.get("hash_match") if isinstance(d.prediction.raw, dict) else None,
    }


class BodyLimit:
    """ASGI middleware: the body is read here, up to `limit` bytes, before the app sees it; a larger body (by
    Content-Length or while streaming, chunked included) gets 413 at once and is never parsed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse(
            error_body(f"request body exceeds {self.limit} bytes", "invalid_request_error", "request_too_large"),
            413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def create_app(config: ServeConfig, classifiers: dict[str, SafetyClassifier] | None = None) -> FastAPI:
    """The app: thin routes over one `ModerationService` (its classifiers loaded at start-up from
    `config.classifiers` unless given ready-made)."""
    service = ModerationService(config, classifiers)
    metrics = service.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="imagesafety moderation",
        version="1",
        lifespan=lifespan,
        description="Self-hosted image moderation, compatible with OpenAI's /v1/moderations for images.",
    )
    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
    app.add_middleware(
        AuthGate,
        keys=service.keys,
        requests=service.budgets["requests"],
        failed_per_minute=config.failed_auth_per_minute,
    )
    install_error_handlers(app)
    app.state.imagesafety = service

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.post("/v1/moderations", response_model=ModerationResponse, summary="Moderate images (OpenAI-compatible)")
    async def moderations(body: ModerationRequest, request: Request):
        """One result per input as OpenAI defines inputs: a multi-modal array is one submission, so its images share
        one verdict (each category's score the maximum over the images, flagged if any image is)."""
        key_id = request.state.key_id
        served = service.pick(body.model)
        if isinstance(body.input, str) or (body.input and all(isinstance(x, str) for x in body.input)):
            raise APIError(
                400,
                "input is text: this server moderates images only; send a multi-modal array with "
                "{'type': 'image_url', ...} parts",
                code="text_not_supported",
                param="input",
            )
        parts = list(body.input)
        images = [
            (f"input[{i}]", None, part.image_url.url) for i, part in enumerate(parts) if isinstance(part, ImageInput)
        ]
        texts = [i for i, part in enumerate(parts) if isinstance(part, TextInput)]
        if texts and config.text_parts == "refuse":
            raise APIError(
                400,
                f"input[{texts[0]}] is a text part: this server moderates images only and refuses text parts "
                "rather than leave them unmoderated (the operator can accept them with --text-parts ignore, which "
                "scores only the images and says so)",
                code="text_not_supported",
                param=f"input[{texts[0]}]",
            )
        if not images:
            raise APIError(400, "input has no image to moderate", param="input")
        if len(images) > config.max_images_per_input:
            raise APIError(
                400,
                f"input holds {len(images)} images; this server takes at most {config.max_images_per_input} per input",
                code="too_many_images",
                param="input",
            )
        if len(images) > config.max_images_per_request:
            raise APIError(
                400,
                f"at most {config.max_images_per_request} images per request",
                code="too_many_images",
                param="input",
            )
        request_id, decisions = await service.run("moderations", served, key_id, images, body.categories)
        verdict = one_verdict(decisions)
        details = {
            "category_applied_input_types": verdict.pop("applied_input_types"),
            "unsafe_score": max(d.prediction.unsafe_score for d in decisions),
            "decision": max(d.prediction.decision for d in decisions),
            "images": [image_details(where, d) for (where, _, _), d in zip(images, decisions)],
            "text_parts_ignored": len(texts),
        }
        return {"id": request_id, "model": served.name, "results": [{**verdict, "imagesafety": details}]}

    @app.post("/v1/classify", response_model=ClassifyResponse, summary="Classify uploaded images (multipart)")
    async def classify(
        request: Request,
        files: list[UploadFile] = File(...),
        model: str | None = Form(default=None),
        categories: str | None = Form(default=None, description="comma-separated categories that can flag"),
        explain: str | None = Form(
            default=None,
            description="true or boxes: the top evidence boxes per file; heatmap: also a small PNG of the map",
        ),
    ):
        key_id = request.state.key_id
        served = service.pick(model)
        mode = explain_mode(explain)
        if len(files) > config.max_images_per_request:
            raise APIError(400, f"at most {config.max_images_per_request} images per request", param="files")
        items = [(f.filename or f"files[{i}]", await f.read(), None) for i, f in enumerate(files)]
        if mode is not None:
            await asyncio.to_thread(
                check_budget, [(w, d) for w, d, _ in items], config.frames, config.max_pixels, config.max_explain_calls
            )
        selected = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
        request_id, decisions = await service.run("classify", served, key_id, items, selected)
        explanations = [None] * len(decisions)
        if mode is not None:
            async with service.explaining:
                try:
                    explanations = await asyncio.wait_for(
                        asyncio.gather(
                            *(
                                asyncio.to_thread(
                                    explain_file, served.classifier, data, d.prediction, mode, config.max_pixels, where
                                )
                                for (where, data, _), d in zip(items, decisions)
                            )
                        ),
                        config.request_timeout_s,
                    )
                except asyncio.TimeoutError:
                    raise APIError(
                        504, f"explaining took longer than {config.request_timeout_s}s", "server_error", "timeout"
                    ) from None
        results = [
            {
                "filename": f.filename,
                "image_sha256": d.sha256,
                "unsafe_score": d.prediction.unsafe_score,
                "decision": d.prediction.decision,
                "flagged": d.flagged,
                "flagged_categories": sorted(d.categories),
                "category_scores": d.prediction.category_scores,
                "raw": d.prediction.raw,
                "views": d.prediction.views.to_dict() if d.prediction.views is not None else None,
                "explanation": e,
            }
            for f, d, e in zip(files, decisions, explanations)
        ]
        return {
            "id": request_id,
            "model": served.name,
            "model_version": str(served.classifier.version),
            "taxonomy": served.classifier.taxonomy.to_dict(),
            "results": results,
        }

    @app.post("/v1/admin/reload-hash-bank", summary="Reload the hash bank from its folder (behind the API key)")
    async def reload_bank(request: Request):
        bank = await service.reload_bank()
        return {"entries": len(bank.bank), "version": bank.version}

    @app.get("/v1/models", summary="Classifiers served")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": s.name,
                    "object": "model",
                    "classifier": s.classifier.name,
                    "version": str(s.classifier.version),
                    "threshold": s.classifier.threshold,
                    "categories": s.classifier.taxonomy.keys,
                }
                for s in service.state.served.values()
            ],
        }

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        if not service.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready", "models": list(service.state.served)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", say=print) -> None:
    """Run the app under uvicorn until interrupted; in-flight requests finish and every answered decision is in the
    audit log (`say` reports where it is, and when authentication is off)."""
    import uvicorn

    app = create_app(config)
    say(f"audit log: {app.state.imagesafety.audit_url}")
    if not config.auth:
        say(
            "WARNING: serving WITHOUT authentication (--no-auth): anyone who can reach "
            f"{host}:{port} can use this service"
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
