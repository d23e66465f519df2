"""The FastAPI app: moderation and classify endpoints over micro-batched classifiers, with auth, limits, metrics, audit."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from imagesafety.classifiers.base import Prediction, SafetyClassifier
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes
from imagesafety.serve.audit import AuditLog, AuditRecord
from imagesafety.serve.auth import KeyChecker, RateLimiter
from imagesafety.serve.batcher import MicroBatcher, ModelError
from imagesafety.serve.config import ServeConfig
from imagesafety.serve.errors import APIError, error_body, install_error_handlers
from imagesafety.serve.fetch import decode_data_url, fetch_image_url
from imagesafety.serve.metrics import ServiceMetrics
from imagesafety.serve.openai_categories import moderation_result
from imagesafety.serve.schemas import ClassifyResponse, ModerationRequest, ModerationResponse, TextInput


@dataclass
class Served:
    """A classifier being served, under the name clients use in `model`."""

    name: str
    classifier: SafetyClassifier
    batcher: MicroBatcher


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes (by Content-Length, or while streaming)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise APIError(413, f"request body exceeds {self.limit} bytes", code="request_too_large")
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, send):
        response = JSONResponse(error_body(f"request body exceeds {self.limit} bytes", "invalid_request_error", "request_too_large"), 413)
        await response({"type": "http", "headers": []}, None, send)


def create_app(config: ServeConfig, classifiers: dict[str, SafetyClassifier] | None = None) -> FastAPI:
    """The app; classifiers are loaded at start-up from `config.classifiers` unless given ready-made."""
    metrics = ServiceMetrics()
    keys = KeyChecker(config.api_keys)
    limiter = RateLimiter(config.rate_limit_per_minute)
    state: dict = {"served": {}, "ready": False, "audit": None}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from imagesafety.classifiers import load_classifier

        loaded = classifiers or {}
        if not loaded:
            for spec in config.classifiers:
                loaded[spec] = await asyncio.to_thread(load_classifier, spec, **config.classifier_options.get(spec, {}))
        for name, clf in loaded.items():
            batcher = MicroBatcher(clf, config.batch_window_ms, config.max_batch_size,
                                   on_batch=lambda size, seconds, n=clf.name: metrics.batch_size.labels(n).observe(size))
            batcher.start()
            state["served"][name] = Served(name, clf, batcher)
        state["audit"] = AuditLog(config.audit_url)
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            for served in state["served"].values():
                await served.batcher.stop()
            state["audit"].close()

    app = FastAPI(title="imagesafety moderation", version="1", lifespan=lifespan,
                  description="Self-hosted image moderation, compatible with OpenAI's /v1/moderations for images.")
    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
    install_error_handlers(app)
    app.state.imagesafety = state

    def pick(model: str | None) -> Served:
        served = state["served"]
        if not state["ready"]:
            raise APIError(503, "the server is starting or stopping", "server_error", "not_ready")
        if model is None:
            return next(iter(served.values()))
        for s in served.values():
            if model in (s.name, s.classifier.name):
                return s
        raise APIError(404, f"unknown model {model!r}; served: {', '.join(served)}", code="model_not_found", param="model")

    def authorise(authorization: str | None) -> str | None:
        key_id = keys.identify(authorization)
        limiter.check(key_id)
        return key_id

    async def classify_bytes(served: Served, data: bytes, where: str) -> tuple[str, Prediction]:
        sha = sha256_bytes(data)
        try:
            prepared = await asyncio.to_thread(lambda: served.batcher.prepare(decode_image(data, config.max_pixels, name=where)))
        except ImageDecodeError as exc:
            raise APIError(400, str(exc), code="invalid_image", param=where) from None
        try:
            return sha, await served.batcher.predict(prepared)
        except ModelError as exc:
            raise APIError(500, f"{where}: {exc}", "server_error", "model_error") from None

    def decide(served: Served, pred: Prediction, selected: list[str] | None) -> tuple[bool, set[str]]:
        """(flagged, flagged categories) under the operator's per-category thresholds and the request's selection."""
        default = float(config.thresholds.get("unsafe", served.classifier.threshold))
        scores = pred.category_scores
        if selected:
            unknown = [c for c in selected if c not in scores]
            if unknown:
                raise APIError(400, f"categories {unknown} are not scored by {served.name}; it scores {sorted(scores)}", param="categories")
        wanted = set(selected) if selected else set(scores)
        flagged_cats = {c for c in wanted if scores[c] >= float(config.thresholds.get(c, default))}
        flagged = bool(flagged_cats) if scores else pred.unsafe_score >= default
        return flagged, flagged_cats

    async def run(endpoint: str, served: Served, key_id: str | None, items: list[tuple[str, bytes | None, str | None]],
                  selected: list[str] | None):
        """Classify every (label, bytes, url) item; audit every decision; errors become APIErrors."""
        started = time.perf_counter()
        request_id = f"modr-{uuid.uuid4().hex}"

        async def one(where: str, data: bytes | None, url: str | None):
            if data is None:
                data = await fetch_image_url(url, config.allow_url_hosts, config.max_request_bytes, config.url_timeout_s)
            return (data,) + await classify_bytes(served, data, where)

        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*(one(*item) for item in items)), config.request_timeout_s)
        except asyncio.TimeoutError:
            raise APIError(504, f"classification took longer than {config.request_timeout_s}s", "server_error", "timeout") from None
        latency = (time.perf_counter() - started) * 1000
        decisions = []
        for data, sha, pred in outcomes:
            flagged, cats = decide(served, pred, selected)
            decisions.append((sha, pred, flagged, cats))
            metrics.images.labels(served.name).inc()
            for c in cats:
                metrics.flags.labels(served.name, c).inc()
            state["audit"].record(AuditRecord(
                request_id, key_id, endpoint, sha, served.name, str(served.classifier.version), pred.category_scores,
                pred.unsafe_score, flagged, None, latency, time.time(), data if config.store_images else None))
        return request_id, decisions

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.post("/v1/moderations", response_model=ModerationResponse, summary="Moderate images (OpenAI-compatible)")
    async def moderations(body: ModerationRequest, authorization: str | None = Header(default=None)):
        key_id = authorise(authorization)
        served = pick(body.model)
        inputs = body.input if isinstance(body.input, list) else [body.input]
        if not inputs:
            raise APIError(400, "input is empty", param="input")
        if len(inputs) > config.max_images_per_request:
            raise APIError(400, f"at most {config.max_images_per_request} images per request", param="input")
        items = []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, TextInput)):
                raise APIError(400, f"input[{i}]: this server moderates images only; send {{'type': 'image_url', ...}}", param=f"input[{i}]")
            url = item.image_url.url
            data = decode_data_url(url, config.max_request_bytes) if url.startswith("data:") else None
            items.append((f"input[{i}]", data, url))
        request_id, decisions = await run("moderations", served, key_id, items, body.categories)
        results = []
        for sha, pred, flagged, cats in decisions:
            result = moderation_result(pred.category_scores, cats)
            results.append({"flagged": flagged, **result, "imagesafety": {
                "unsafe_score": pred.unsafe_score, "decision": pred.decision, "image_sha256": sha, "scores": pred.category_scores}})
        return {"id": request_id, "model": served.name, "results": results}

    @app.post("/v1/classify", response_model=ClassifyResponse, summary="Classify uploaded images (multipart)")
    async def classify(files: list[UploadFile] = File(...), model: str | None = Form(default=None),
                       categories: str | None = Form(default=None, description="comma-separated categories that can flag"),
                       authorization: str | None = Header(default=None)):
        key_id = authorise(authorization)
        served = pick(model)
        if len(files) > config.max_images_per_request:
            raise APIError(400, f"at most {config.max_images_per_request} images per request", param="files")
        items = [(f.filename or f"files[{i}]", await f.read(), None) for i, f in enumerate(files)]
        selected = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
        request_id, decisions = await run("classify", served, key_id, items, selected)
        results = [
            {"filename": f.filename, "image_sha256": sha, "unsafe_score": pred.unsafe_score, "decision": pred.decision,
             "flagged": flagged, "flagged_categories": sorted(cats), "category_scores": pred.category_scores, "raw": pred.raw}
            for f, (sha, pred, flagged, cats) in zip(files, decisions)
        ]
        return {"id": request_id, "model": served.name, "model_version": str(served.classifier.version),
                "taxonomy": served.classifier.taxonomy.to_dict(), "results": results}

    @app.get("/v1/models", summary="Classifiers served")
    async def models(authorization: str | None = Header(default=None)):
        authorise(authorization)
        return {"object": "list", "data": [
            {"id": s.name, "object": "model", "classifier": s.classifier.name, "version": str(s.classifier.version),
             "threshold": s.classifier.threshold, "categories": s.classifier.taxonomy.keys} for s in state["served"].values()]}

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready", "models": list(state["served"])}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app under uvicorn until interrupted; in-flight requests finish and the audit log is flushed."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
