"""Run a classifier over samples: background decoding, batched inference, and the prediction cache.

Worker threads read, hash, look up and decode images ahead of the model, so the model never waits
on I/O; predictions are committed to the cache batch by batch, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import pandas as pd
from PIL import Image

from imagesafety.bench.progress import progress_bar
from imagesafety.classifiers.base import Prediction, PreparesInput, SafetyClassifier, cache_key
from imagesafety.data.sample import Sample
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes
from imagesafety.store import PredictionCache


def default_workers() -> int:
    """Decoding threads: one core is left to the model's own threads (1 on a 2-core machine, at most 4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(eq=False)
class Prepared:
    """A sample after the background stage: its hash, and a cached prediction, a decoded image or an error."""

    sample: Sample
    sha256: str | None = None
    cached: Prediction | None = None
    image: Image.Image | Any = None  # decoded image, or the classifier's prepared input
    error: str | None = None


@dataclass
class RunStats:
    """What a run did: how many images came from the cache, went through the model, or failed."""

    images: int = 0
    cached: int = 0
    predicted: int = 0
    errors: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; carries the rows finished so far (all of them are also in the cache)."""

    def __init__(self, rows: pd.DataFrame, stats: RunStats):
        super().__init__("interrupted")
        self.rows = rows
        self.stats = stats


@dataclass
class Runner:
    """Predict every sample once, through the cache; see `run`."""

    classifier: SafetyClassifier
    cache: PredictionCache | None = None
    batch_size: int = 16
    workers: int = field(default_factory=lambda: default_workers())
    prefetch_batches: int = 4
    show_progress: bool = True
    stats: RunStats = field(default_factory=RunStats)

    def __post_init__(self) -> None:
        self.key = cache_key(self.classifier)
        self.prepares = isinstance(self.classifier, PreparesInput)

    def prepare(self, sample: Sample) -> Prepared:
        """Read and hash the image; use the cached prediction if there is one, else decode it."""
        item = Prepared(sample)
        try:
            data = sample.load_bytes()
            item.sha256 = sha256_bytes(data)
            if self.cache is not None:
                hit = self.cache.get_many(self.key, [item.sha256]).get(item.sha256)
                if hit is not None:
                    item.cached = Prediction.from_dict(hit)
                    return item
            image = decode_image(data, name=sample.image_ref)
            item.image = self.classifier.prepare(image) if self.prepares else image
        except ImageDecodeError as exc:
            item.error = str(exc)
        except Exception as exc:  # a loader failing on one sample must not end the run
            item.error = f"{sample.image_ref}: {type(exc).__name__}: {exc}"
        return item

    def _prepared_batches(self, samples: Iterable[Sample], stop: threading.Event) -> Iterator[list[Prepared]]:
        """Batches prepared by worker threads, `prefetch_batches` ahead of the consumer."""
        out: queue.Queue = queue.Queue(maxsize=self.prefetch_batches)
        done = object()

        def produce() -> None:
            try:
                with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode") as pool:
                    it = iter(samples)
                    while not stop.is_set():
                        chunk = list(islice(it, self.batch_size))
                        if not chunk:
                            break
                        prepared = list(pool.map(self.prepare, chunk))
                        while not stop.is_set():
                            try:
                                out.put(prepared, timeout=0.1)
                                break
                            except queue.Full:
                                continue
            except BaseException as exc:  # surfaced in the consumer
                out.put(exc)
            finally:
                out.put(done)

        thread = threading.Thread(target=produce, name="prepare", daemon=True)
        thread.start()
        while True:
            item = out.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item

    def _predict_batch(self, images: list[Any]) -> list[Prediction]:
        if self.prepares:
            return self.classifier.predict_prepared(images)
        return self.classifier.predict(images)

    def _predict(self, images: list[Any]) -> list[Prediction | str]:
        """Predictions for a batch; if the batch fails, each image alone, so one bad image costs only itself."""
        try:
            preds = self._predict_batch(images)
            if len(preds) != len(images):
                raise RuntimeError(f"classifier returned {len(preds)} predictions for {len(images)} images")
            return list(preds)
        except Exception:
            if len(images) == 1:
                raise
        results: list[Prediction | str] = []
        for img in images:
            try:
                results.append(self._predict_batch([img])[0])
            except Exception as exc:
                results.append(f"classifier {self.classifier.name} failed: {type(exc).__name__}: {exc}")
        return results

    def _finish_batch(self, batch: list[Prepared]) -> list[dict]:
        self.stats.cached += sum(p.cached is not None for p in batch)
        todo = [p for p in batch if p.image is not None]
        if todo:
            started = time.perf_counter()
            try:
                results = self._predict([p.image for p in todo])
            except Exception as exc:
                results = [f"classifier {self.classifier.name} failed: {type(exc).__name__}: {exc}"] * len(todo)
            self.stats.model_seconds += time.perf_counter() - started
            fresh = []
            for p, result in zip(todo, results):
                if isinstance(result, str):
                    p.error = result
                else:
                    p.cached = result
                    fresh.append((p.sha256, result.to_dict()))
                p.image = None  # free pixels early
            if self.cache is not None and fresh:
                self.cache.put_many(self.key, fresh)
            self.stats.predicted += len(fresh)
        rows = []
        for p in batch:
            self.stats.errors += p.error is not None
            rows.append(prediction_row(p))
        self.stats.images += len(batch)
        return rows

    def run(self, samples: Iterable[Sample], total: int | None = None, description: str = "eval") -> pd.DataFrame:
        """One row per sample (see `prediction_row`); raises RunInterrupted with the rows so far on Ctrl-C."""
        self.stats = RunStats()
        rows: list[dict] = []
        stop = threading.Event()
        started = time.perf_counter()
        with progress_bar(self.show_progress) as bar:
            task = bar.add_task(f"{description} {self.classifier.name}", total=total)
            try:
                for batch in self._prepared_batches(samples, stop):
                    rows.extend(self._finish_batch(batch))
                    bar.update(task, advance=len(batch))
            except KeyboardInterrupt:
                stop.set()
                self.stats.interrupted = True
                self.stats.seconds = time.perf_counter() - started
                raise RunInterrupted(rows_frame(rows), self.stats) from None
            finally:
                stop.set()
        self.stats.seconds = time.perf_counter() - started
        return rows_frame(rows)


def prediction_row(p: Prepared) -> dict:
    s, pred = p.sample, p.cached
    return {
        "id": s.id,
        "label": s.label,
        "category": s.category,
        "source": s.source,
        "split": s.split,
        "pair_id": s.pair_id,
        "role": s.role,
        "image": s.image_ref,
        "sha256": p.sha256,
        "score": pred.unsafe_score if pred and p.error is None else None,
        "classifier_decision": pred.decision if pred and p.error is None else None,
        "category_scores": pred.category_scores if pred and p.error is None else {},
        "raw": json.dumps(pred.raw) if pred is not None and p.error is None and pred.raw is not None else None,
        "error": p.error,
    }


ROW_COLUMNS = list(prediction_row(Prepared(Sample("", b""))).keys())


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    frame["label"] = frame["label"].astype("Int64")
    frame["score"] = frame["score"].astype("float64")
    frame["classifier_decision"] = frame["classifier_decision"].astype("Int64")
    return frame
