"""The FastAPI app: moderation and classify endpoints over micro-batched classifiers, with auth, limits, metrics,
audit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from imagesafety.classifiers.base import Prediction, SafetyClassifier
from imagesafety.images import ImageDecodeError, sha256_bytes
from imagesafety.media import MediaBudgetError, Sampling, read_views
from imagesafety.net import FetchError, fetch_url
from imagesafety.run.views import Views, combine_predictions
from imagesafety.serve.audit import AuditLog, AuditRecord, AuditWriteError
from imagesafety.serve.auth import AuthGate, KeyChecker, TokenBucket
from imagesafety.serve.batcher import MicroBatcher, ModelError
from imagesafety.serve.config import ServeConfig, default_audit_url
from imagesafety.serve.errors import APIError, error_body, install_error_handlers
from imagesafety.serve.explain import check_budget, explain_file, explain_mode
from imagesafety.serve.fetch import FETCH_ERRORS, check_geometry, decode_data_url
from imagesafety.serve.known import KnownImages
from imagesafety.serve.openai_categories import moderation_result
from imagesafety.serve.prometheus import ServiceMetrics
from imagesafety.serve.schemas import ClassifyResponse, ImageInput, ModerationRequest, ModerationResponse, TextInput


class Abandoned(Exception):
    """An image skipped because another image of its request failed, or the request ran out of time."""


@dataclass
class Checked:
    """A request's file after its header checks: its bytes, what will be read of it, and its views (not yet decoded)."""

    where: str
    data: bytes
    sampling: Sampling
    views: Iterator


@dataclass
class Decision:
    """One file's answer: its digest, its prediction (over all its views) and the operator's decision on it."""

    sha256: str
    prediction: Prediction
    flagged: bool
    categories: set[str]


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


@dataclass
class Served:
    """A classifier being served, under the name clients use in `model`."""

    name: str
    classifier: SafetyClassifier
    batcher: MicroBatcher


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
    """The app; classifiers are loaded at start-up from `config.classifiers` unless given ready-made."""
    config.check()
    metrics = ServiceMetrics()
    keys = KeyChecker(config.api_keys, required=config.auth)
    budgets = {
        "requests": TokenBucket(config.rate_limit_per_minute, "requests"),
        "images": TokenBucket(config.images_per_minute, "images"),
        "pixels": TokenBucket(config.pixels_per_minute, "pixels"),
    }
    decode_pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="decode")
    explaining = asyncio.Semaphore(1)  # one explanation at a time: its many model calls never crowd out classification
    state: dict = {
        "served": {},
        "ready": False,
        "audit": None,
        "bank": None,
        "audit_url": config.audit_url or default_audit_url(),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from imagesafety.classifiers import load_classifier

        loaded = classifiers or {}
        if not loaded:
            for spec in config.classifiers:
                loaded[spec] = await asyncio.to_thread(load_classifier, spec, **config.classifier_options.get(spec, {}))
        for name, clf in loaded.items():
            batcher = MicroBatcher(
                clf,
                config.batch_window_ms,
                config.max_batch_size,
                on_batch=lambda size, seconds, n=clf.name: metrics.batch_size.labels(n).observe(size),
            )
            batcher.start()
            state["served"][name] = Served(name, clf, batcher)
        state["audit"] = AuditLog(state["audit_url"])
        if config.hash_bank:
            state["bank"] = await asyncio.to_thread(KnownImages.load, config.hash_bank)
            with contextlib.suppress(ValueError):  # not in the main thread (tests): the admin endpoint still reloads
                signal.signal(signal.SIGHUP, lambda *_: state.update(bank=KnownImages.load(config.hash_bank)))
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            for served in state["served"].values():
                await served.batcher.stop()
            state["audit"].close()
            decode_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="imagesafety moderation",
        version="1",
        lifespan=lifespan,
        description="Self-hosted image moderation, compatible with OpenAI's /v1/moderations for images.",
    )
    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
    app.add_middleware(
        AuthGate, keys=keys, requests=budgets["requests"], failed_per_minute=config.failed_auth_per_minute
    )
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
        raise APIError(
            404, f"unknown model {model!r}; served: {', '.join(served)}", code="model_not_found", param="model"
        )

    async def fetch(where: str, url: str) -> bytes:
        if not config.allow_url_hosts:
            raise APIError(
                400,
                f"{where}: this server accepts only data URLs (the operator has not enabled remote URLs)",
                code="url_not_allowed",
                param=where,
            )
        try:
            return await asyncio.to_thread(
                fetch_url,
                url,
                allow_hosts=config.allow_url_hosts,
                require_allowed=True,
                max_bytes=config.max_request_bytes,
                timeout_s=config.url_timeout_s,
            )
        except FetchError as exc:
            status, code = FETCH_ERRORS[exc.reason]
            raise APIError(status, f"{where}: {exc}", code=code, param=where) from None

    async def checked_images(key_id: str | None, items: list[tuple[str, bytes | None, str | None]]) -> list[Checked]:
        """Each file's bytes (data URL decoded, remote URL fetched) and header checked in turn: side lengths, aspect
        ratio, the frame budgets and the request's pixel budget (counting every frame that will be classified),
        stopping at the first file over one (later ones are never decoded or fetched); then the key's image and pixel
        budgets. No pixel data is decoded here."""
        loop = asyncio.get_running_loop()
        checked, total = [], 0
        for where, data, url in items:
            if data is None:
                data = (
                    decode_data_url(url, config.max_request_bytes, where)
                    if url.startswith("data:")
                    else await fetch(where, url)
                )
            try:
                sampling, views = await loop.run_in_executor(
                    decode_pool, read_views, data, config.frames, config.max_pixels, where
                )
            except MediaBudgetError as exc:
                raise APIError(413, str(exc), code="media_budget_exceeded", param=where) from None
            except ImageDecodeError as exc:
                raise APIError(400, str(exc), code="invalid_image", param=where) from None
            check_geometry(where, sampling.width, sampling.height, config)
            total += sampling.pixels
            if total > config.max_request_pixels:
                raise APIError(
                    413,
                    f"the request's images hold {total} pixels or more together (every frame classified counts), "
                    f"over this server's limit of {config.max_request_pixels} per request",
                    code="request_too_large",
                )
            checked.append(Checked(where, data, sampling, views))
        budgets["images"].take(key_id, len(checked))
        budgets["pixels"].take(key_id, total)
        return checked

    async def classify_one(
        served: Served, item: Checked, cancelled: threading.Event, selected: list[str] | None
    ) -> Prediction:
        """One file's views decoded and prepared a model batch at a time on the shared decoding threads, each batch
        micro-batched with other requests; the views' predictions make the file's (a video under the early exit stops,
        decoding included, after the first batch with a view over the threshold)."""
        loop = asyncio.get_running_loop()

        def next_chunk():
            if cancelled.is_set():
                raise Abandoned()
            return [
                (served.batcher.prepare(image, item.where), info)
                for image, info in islice(item.views, config.max_batch_size)
            ]

        views, preds = Views(item.sampling), []
        early = config.frames.early_exit and item.sampling.kind == "video"
        while True:
            try:
                chunk = await loop.run_in_executor(decode_pool, next_chunk)
            except MediaBudgetError as exc:
                raise APIError(413, str(exc), code="media_budget_exceeded", param=item.where) from None
            except ImageDecodeError as exc:
                raise APIError(400, str(exc), code="invalid_image", param=item.where) from None
            except Abandoned:
                raise APIError(
                    504, f"classification took longer than {config.request_timeout_s}s", "server_error", "timeout"
                ) from None
            except Exception as exc:
                raise APIError(
                    400,
                    f"{item.where}: cannot prepare the image: {type(exc).__name__}: {exc}",
                    code="invalid_image",
                    param=item.where,
                ) from None
            if not chunk:
                break
            views.inputs.extend(x for x, _ in chunk)
            views.info.extend(info for _, info in chunk)
            try:
                preds.extend(await asyncio.gather(*(served.batcher.predict(x) for x, _ in chunk)))
            except ModelError as exc:
                raise APIError(500, f"{exc}", "server_error", "model_error") from None
            if early and any(
                decide(served, p, selected)[0] for p in preds
            ):  # flagged as the answer will be: never earlier
                break
        if not preds:
            raise APIError(400, f"{item.where}: no frame could be read", code="invalid_image", param=item.where)
        return combine_predictions(views, preds, config.frames)

    def decide(served: Served, pred: Prediction, selected: list[str] | None) -> tuple[bool, set[str]]:
        """(flagged, flagged categories) under the operator's per-category thresholds and the request's selection."""
        default = float(config.thresholds.get("unsafe", served.classifier.threshold))
        scores = pred.category_scores
        if selected:
            unknown = [c for c in selected if c not in scores]
            if unknown:
                raise APIError(
                    400,
                    f"categories {unknown} are not scored by {served.name}; it scores {sorted(scores)}",
                    param="categories",
                )
        wanted = set(selected) if selected else set(scores)
        flagged_cats = {c for c in wanted if scores[c] >= float(config.thresholds.get(c, default))}
        flagged = bool(flagged_cats) if scores else pred.unsafe_score >= default
        return flagged, flagged_cats

    async def run(
        endpoint: str,
        served: Served,
        key_id: str | None,
        items: list[tuple[str, bytes | None, str | None]],
        selected: list[str] | None,
    ) -> tuple[str, list[Decision]]:
        """Classify every (label, bytes, url) item and commit its audit rows before answering; errors become APIErrors.
        The whole request shares one deadline; when it passes, the work not yet done is dropped."""
        started = time.perf_counter()
        request_id = f"modr-{uuid.uuid4().hex}"
        cancelled = threading.Event()

        async def work():
            checked = await checked_images(key_id, items)
            loop = asyncio.get_running_loop()
            out = []
            for item in checked:
                known = None
                if state["bank"] is not None:
                    try:
                        known = await loop.run_in_executor(
                            decode_pool, state["bank"].match, item.data, config.max_pixels, item.where
                        )
                    except ImageDecodeError as exc:
                        raise APIError(400, str(exc), code="invalid_image", param=item.where) from None
                out.append(
                    (item.data, known if known is not None else await classify_one(served, item, cancelled, selected))
                )
            return out

        try:
            outcomes = await asyncio.wait_for(work(), config.request_timeout_s)
        except asyncio.TimeoutError:
            cancelled.set()
            raise APIError(
                504, f"classification took longer than {config.request_timeout_s}s", "server_error", "timeout"
            ) from None
        finally:
            cancelled.set()
        latency = (time.perf_counter() - started) * 1000
        decisions, records = [], []
        for data, pred in outcomes:
            known = isinstance(pred.raw, dict) and "hash_match" in pred.raw
            flagged, cats = (
                (True, {c for c, v in pred.category_scores.items() if v}) if known else decide(served, pred, selected)
            )
            decisions.append(Decision(sha256_bytes(data), pred, flagged, cats))
            records.append(
                AuditRecord(
                    request_id,
                    key_id,
                    endpoint,
                    decisions[-1].sha256,
                    "hash-bank" if known else served.name,
                    state["bank"].version if known else str(served.classifier.version),
                    pred.category_scores,
                    pred.unsafe_score,
                    flagged,
                    None,
                    latency,
                    time.time(),
                    data if config.store_images and not known else None,  # a known image is never stored
                    pred.raw["hash_match"] if known else None,
                )
            )
        try:
            await state["audit"].commit(records)
        except AuditWriteError as exc:
            raise APIError(
                503, f"{exc}; the decision is withheld (retry later)", "server_error", "audit_unavailable"
            ) from None
        metrics.images.labels(served.name).inc(len(decisions))
        for d in decisions:
            for c in d.categories:
                metrics.flags.labels(served.name, c).inc()
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
    async def moderations(body: ModerationRequest, request: Request):
        """One result per input as OpenAI defines inputs: a multi-modal array is one submission, so its images share
        one verdict (each category's score the maximum over the images, flagged if any image is)."""
        key_id = request.state.key_id
        served = pick(body.model)
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
        request_id, decisions = await run("moderations", served, key_id, images, body.categories)
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
        served = pick(model)
        mode = explain_mode(explain)
        if len(files) > config.max_images_per_request:
            raise APIError(400, f"at most {config.max_images_per_request} images per request", param="files")
        items = [(f.filename or f"files[{i}]", await f.read(), None) for i, f in enumerate(files)]
        if mode is not None:
            await asyncio.to_thread(
                check_budget, [(w, d) for w, d, _ in items], config.frames, config.max_pixels, config.max_explain_calls
            )
        selected = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
        request_id, decisions = await run("classify", served, key_id, items, selected)
        explanations = [None] * len(decisions)
        if mode is not None:
            async with explaining:
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
        if not config.hash_bank:
            raise APIError(400, "this server has no hash bank (--hash-bank)", code="no_hash_bank")
        state["bank"] = await asyncio.to_thread(KnownImages.load, config.hash_bank)
        return {"entries": len(state["bank"].bank), "version": state["bank"].version}

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
                for s in state["served"].values()
            ],
        }

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


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", say=print) -> None:
    """Run the app under uvicorn until interrupted; in-flight requests finish and every answered decision is in the
    audit log (`say` reports where it is, and when authentication is off)."""
    import uvicorn

    app = create_app(config)
    say(f"audit log: {app.state.imagesafety['audit_url']}")
    if not config.auth:
        say(
            "WARNING: serving WITHOUT authentication (--no-auth): anyone who can reach "
            f"{host}:{port} can use this service"
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
