"""The moderation service behind the routes: its state (the classifiers served, the audit log, the hash bank,
readiness) and what a request goes through (pick a model, check the files, classify, decide, audit)."""

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
from dataclasses import dataclass, field
from itertools import islice

from imagesafety.classifiers.base import Prediction, SafetyClassifier
from imagesafety.images import ImageDecodeError, sha256_bytes
from imagesafety.media import MediaBudgetError, Sampling, read_views
from imagesafety.net import FetchError, fetch_url
from imagesafety.run.views import Views, combine_predictions
from imagesafety.serve.audit import AuditLog, AuditRecord, AuditWriteError
from imagesafety.serve.auth import KeyChecker, TokenBucket
from imagesafety.serve.batcher import MicroBatcher, ModelError
from imagesafety.serve.config import ServeConfig, default_audit_url
from imagesafety.serve.errors import APIError
from imagesafety.serve.fetch import FETCH_ERRORS, check_geometry, decode_data_url
from imagesafety.serve.known import KnownImages
from imagesafety.serve.prometheus import ServiceMetrics

#: a file of a request: (where, its bytes, or None and its URL)
Item = tuple[str, bytes | None, str | None]


class Abandoned(Exception):
    """An image skipped because another image of its request failed, or the request ran out of time."""


@dataclass
class Checked:
    """A request's file after its header checks: its bytes, what will be read of it, and its views (not yet decoded)."""

    where: str
    data: bytes
    sampling: Sampling
    views: Iterator


@dataclass(frozen=True)
class Flags:
    """Whether a prediction is flagged under the operator's thresholds, and the categories that flag it."""

    flagged: bool
    categories: frozenset[str]


@dataclass
class Decision:
    """One file's answer: its digest, its prediction (over all its views) and the operator's decision on it."""

    sha256: str
    prediction: Prediction
    flagged: bool
    categories: set[str]


@dataclass
class Served:
    """A classifier being served, under the name clients use in `model`."""

    name: str
    classifier: SafetyClassifier
    batcher: MicroBatcher


@dataclass
class ServiceState:
    """What changes while the service runs."""

    served: dict[str, Served] = field(default_factory=dict)
    ready: bool = False
    audit: AuditLog | None = None
    bank: KnownImages | None = None


class ModerationService:
    """Checks, classifies, decides and audits the files of a request; `start` loads the classifiers (unless given
    ready-made), the audit log and the hash bank, `stop` drains them."""

    def __init__(self, config: ServeConfig, classifiers: dict[str, SafetyClassifier] | None = None):
        config.check()
        self.config = config
        self.classifiers = classifiers or {}
        self.metrics = ServiceMetrics()
        self.keys = KeyChecker(config.api_keys, required=config.auth)
        self.budgets = {
            "requests": TokenBucket(config.rate_limit_per_minute, "requests"),
            "images": TokenBucket(config.images_per_minute, "images"),
            "pixels": TokenBucket(config.pixels_per_minute, "pixels"),
        }
        self.decode_pool = ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="decode"
        )
        self.explaining = asyncio.Semaphore(1)  # one explanation at a time: it never crowds out classification
        self.audit_url = config.audit_url or default_audit_url()
        self.state = ServiceState()

    async def start(self) -> None:
        from imagesafety.classifiers import load_classifier

        config, loaded = self.config, dict(self.classifiers)
        if not loaded:
            for spec in config.classifiers:
                loaded[spec] = await asyncio.to_thread(load_classifier, spec, **config.classifier_options.get(spec, {}))
        for name, clf in loaded.items():
            batcher = MicroBatcher(
                clf,
                config.batch_window_ms,
                config.max_batch_size,
                on_batch=lambda size, seconds, n=clf.name: self.metrics.batch_size.labels(n).observe(size),
            )
            batcher.start()
            self.state.served[name] = Served(name, clf, batcher)
        self.state.audit = AuditLog(self.audit_url)
        if config.hash_bank:
            await self.reload_bank()
            with contextlib.suppress(ValueError):  # not in the main thread (tests): the admin endpoint still reloads
                signal.signal(signal.SIGHUP, lambda *_: setattr(self.state, "bank", KnownImages.load(config.hash_bank)))
        self.state.ready = True

    async def stop(self) -> None:
        self.state.ready = False
        for served in self.state.served.values():
            await served.batcher.stop()
        if self.state.audit is not None:
            self.state.audit.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def reload_bank(self) -> KnownImages:
        if not self.config.hash_bank:
            raise APIError(400, "this server has no hash bank (--hash-bank)", code="no_hash_bank")
        self.state.bank = await asyncio.to_thread(KnownImages.load, self.config.hash_bank)
        return self.state.bank

    def pick(self, model: str | None) -> Served:
        """The classifier a request names (the first one served when it names none)."""
        served = self.state.served
        if not self.state.ready:
            raise APIError(503, "the server is starting or stopping", "server_error", "not_ready")
        if model is None:
            return next(iter(served.values()))
        for s in served.values():
            if model in (s.name, s.classifier.name):
                return s
        raise APIError(
            404, f"unknown model {model!r}; served: {', '.join(served)}", code="model_not_found", param="model"
        )

    async def fetch(self, where: str, url: str) -> bytes:
        config = self.config
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

    async def check(self, key_id: str | None, items: list[Item]) -> list[Checked]:
        """Each file's bytes (data URL decoded, remote URL fetched) and header checked in turn: side lengths, aspect
        ratio, the frame budgets and the request's pixel budget (counting every frame that will be classified),
        stopping at the first file over one (later ones are never decoded or fetched); then the key's image and pixel
        budgets. No pixel data is decoded here."""
        config, loop = self.config, asyncio.get_running_loop()
        checked, total = [], 0
        for where, data, url in items:
            if data is None:
                assert url is not None
                data = (
                    decode_data_url(url, config.max_request_bytes, where)
                    if url.startswith("data:")
                    else await self.fetch(where, url)
                )
            try:
                sampling, views = await loop.run_in_executor(
                    self.decode_pool, read_views, data, config.frames, config.max_pixels, where
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
        self.budgets["images"].take(key_id, len(checked))
        self.budgets["pixels"].take(key_id, total)
        return checked

    async def classify(
        self, served: Served, item: Checked, cancelled: threading.Event, selected: list[str] | None
    ) -> Prediction:
        """One file's views decoded and prepared a model batch at a time on the shared decoding threads, each batch
        micro-batched with other requests; the views' predictions make the file's (a video under the early exit stops,
        decoding included, after the first batch with a view over the threshold)."""
        config, loop = self.config, asyncio.get_running_loop()

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
                chunk = await loop.run_in_executor(self.decode_pool, next_chunk)
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
            if early and any(self.decide(served, p, selected).flagged for p in preds):  # as the answer will be
                break
        if not preds:
            raise APIError(400, f"{item.where}: no frame could be read", code="invalid_image", param=item.where)
        return combine_predictions(views, preds, config.frames)

    def decide(self, served: Served, pred: Prediction, selected: list[str] | None) -> Flags:
        """Flagged or not under the operator's per-category thresholds and the request's selection of categories."""
        thresholds = self.config.thresholds
        default = float(thresholds.get("unsafe", served.classifier.threshold))
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
        flagged_cats = frozenset(c for c in wanted if scores[c] >= float(thresholds.get(c, default)))
        return Flags(bool(flagged_cats) if scores else pred.unsafe_score >= default, flagged_cats)

    async def run(
        self, endpoint: str, served: Served, key_id: str | None, items: list[Item], selected: list[str] | None
    ) -> tuple[str, list[Decision]]:
        """Classify every item (known images answered by the hash bank) and commit its audit rows before answering;
        errors become APIErrors. The whole request shares one deadline; when it passes, the work not yet done is
        dropped."""
        config, state = self.config, self.state
        started = time.perf_counter()
        request_id = f"modr-{uuid.uuid4().hex}"
        cancelled = threading.Event()

        async def work():
            checked = await self.check(key_id, items)
            loop = asyncio.get_running_loop()
            out = []
            for item in checked:
                known = None
                if state.bank is not None:
                    try:
                        known = await loop.run_in_executor(
                            self.decode_pool, state.bank.match, item.data, config.max_pixels, item.where
                        )
                    except ImageDecodeError as exc:
                        raise APIError(400, str(exc), code="invalid_image", param=item.where) from None
                pred = known if known is not None else await self.classify(served, item, cancelled, selected)
                out.append((item.data, pred))
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
            flags = (
                Flags(True, frozenset(c for c, v in pred.category_scores.items() if v))
                if known
                else self.decide(served, pred, selected)
            )
            decisions.append(Decision(sha256_bytes(data), pred, flags.flagged, set(flags.categories)))
            records.append(
                AuditRecord(
                    request_id,
                    key_id,
                    endpoint,
                    decisions[-1].sha256,
                    "hash-bank" if known else served.name,
                    state.bank.version if known and state.bank is not None else str(served.classifier.version),
                    pred.category_scores,
                    pred.unsafe_score,
                    flags.flagged,
                    None,
                    latency,
                    time.time(),
                    data if config.store_images and not known else None,  # a known image is never stored
                    pred.raw["hash_match"] if known else None,
                )
            )
        try:
            assert state.audit is not None, "the service has not started"
            await state.audit.commit(records)
        except AuditWriteError as exc:
            raise APIError(
                503, f"{exc}; the decision is withheld (retry later)", "server_error", "audit_unavailable"
            ) from None
        self.metrics.images.labels(served.name).inc(len(decisions))
        for d in decisions:
            for c in d.categories:
                self.metrics.flags.labels(served.name, c).inc()
        return request_id, decisions
