"""Micro-batching: images from concurrent requests wait a few milliseconds to share one model call.

The model runs on one dedicated thread (off the event loop); a batch that fails is retried image
by image, so one bad image fails only its own request.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from imagesafety.classifiers.base import ModelFailure, Prediction, SafetyClassifier
from imagesafety.data.decoding import Prepared
from imagesafety.data.sample import Sample
from imagesafety.run.runner import compute_isolating_failures
from imagesafety.run.tasks import PredictionTask


class ModelError(RuntimeError):
    """The classifier raised on this image."""


@dataclass
class _Job:
    item: Any
    future: asyncio.Future


class MicroBatcher:
    """Collects prepared inputs for up to `window_ms` (or `max_batch` items) and predicts them together."""

    def __init__(self, classifier: SafetyClassifier, window_ms: float = 5.0, max_batch: int = 32, on_batch=None):
        self.task = PredictionTask(classifier)
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.on_batch = on_batch or (lambda size, seconds: None)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{classifier.name}")
        self.queue: asyncio.Queue[_Job] | None = None
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Finish queued work, then stop."""
        if self.queue is not None:
            await self.queue.join()
        if self.worker is not None:
            self.worker.cancel()
        self.model_thread.shutdown(wait=True)

    def prepare(self, image, name: str = "image") -> Any:
        return self.task.prepare(Prepared(Sample(name, b"")), image)

    async def predict(self, item: Any) -> Prediction:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.window
            while len(jobs) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            live = [j for j in jobs if not j.future.done()]  # requests that timed out or failed meanwhile are dropped
            try:
                if not live:
                    continue
                started = time.perf_counter()
                results = await loop.run_in_executor(self.model_thread, self._run, [j.item for j in live])
                self.on_batch(len(live), time.perf_counter() - started)
                for job, result in zip(live, results):
                    if job.future.done():
                        continue
                    if isinstance(result, Exception):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
            finally:
                for _ in jobs:
                    self.queue.task_done()

    def _run(self, items: list[Any]) -> list[Prediction | Exception]:
        try:
            results = compute_isolating_failures(self.task, items)
        except Exception as exc:  # the model cannot run at all: every request of this batch fails, the server lives on
            return [ModelError(f"classifier unavailable: {type(exc).__name__}: {exc}")] * len(items)
        return [
            ModelError(f"classifier failed on this image: {r}") if isinstance(r, ModelFailure) else r for r in results
        ]
