"""Run a model over samples: background decoding, batched inference, and a cache of results.

Worker threads read, hash, look up and decode images ahead of the model, so the model never waits
on I/O; results are committed to the cache batch by batch, so an interrupted run resumes. What is
computed (predictions, embeddings) is an `ImageTask`; the machinery is shared.
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
from typing import Any, Protocol

import pandas as pd
from PIL import Image

from imagesafety.bench.progress import progress_bar
from imagesafety.classifiers.base import FatalModelError, ModelFailure, Prediction, PreparesInput, SafetyClassifier, cache_key
from imagesafety.data.sample import Sample
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes
from imagesafety.store import PredictionCache


class ImageTask(Protocol):
    """What a run computes per image, and how its results are cached and tabulated."""

    name: str

    def lookup(self, sha256: str) -> Any | None: ...  # cached result (thread-safe), or None

    def store(self, items: list[tuple[str, Any]]) -> None: ...

    def prepare(self, image: Image.Image) -> Any: ...  # per-image CPU work, run on worker threads

    def compute(self, items: list[Any]) -> list[Any]: ...  # one batched model call

    def row(self, item: Prepared) -> dict: ...

    def frame(self, rows: list[dict]) -> pd.DataFrame: ...


def default_workers() -> int:
    """Decoding threads: one core is left to the model's own threads (1 on a 2-core machine, at most 4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(eq=False)
class Prepared:
    """A sample after the background stage: its hash, and a cached result, a prepared input or an error."""

    sample: Sample
    sha256: str | None = None
    result: Any = None
    image: Any = None  # the task's prepared input
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
    """Compute `task` for every sample once, through its cache; see `run`."""

    task: ImageTask
    batch_size: int = 16
    workers: int = field(default_factory=default_workers)
    prefetch_batches: int = 4
    show_progress: bool = True
    stats: RunStats = field(default_factory=RunStats)

    @classmethod
    def for_classifier(cls, classifier: SafetyClassifier, cache: PredictionCache | None = None, **options: Any) -> Runner:
        return cls(PredictionTask(classifier, cache), **options)

    def prepare(self, sample: Sample) -> Prepared:
        """Read and hash the image; use the cached result if there is one, else decode and prepare it."""
        item = Prepared(sample)
        try:
            data = sample.load_bytes()
            item.sha256 = sha256_bytes(data)
            item.result = self.task.lookup(item.sha256)
            if item.result is None:
                item.image = self.task.prepare(decode_image(data, name=sample.image_ref))
        except ImageDecodeError as exc:
            item.error = str(exc)
        except Exception as exc:  # a loader or preprocessor failing on one sample must not end the run
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

        threading.Thread(target=produce, name="prepare", daemon=True).start()
        while True:
            item = out.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item

    def _finish_batch(self, batch: list[Prepared]) -> list[dict]:
        self.stats.cached += sum(p.result is not None for p in batch)
        todo = [p for p in batch if p.image is not None]
        if todo:
            started = time.perf_counter()
            results = compute_isolating_failures(self.task, [p.image for p in todo])
            self.stats.model_seconds += time.perf_counter() - started
            fresh = []
            for p, result in zip(todo, results):
                if isinstance(result, ModelFailure):
                    p.error = str(result)
                else:
                    p.result = result
                    fresh.append((p.sha256, result))
                p.image = None  # free pixels early
            if fresh:
                self.task.store(fresh)
            self.stats.predicted += len(fresh)
        self.stats.errors += sum(p.error is not None for p in batch)
        self.stats.images += len(batch)
        return [self.task.row(p) for p in batch]

    def run(self, samples: Iterable[Sample], total: int | None = None, description: str = "eval") -> pd.DataFrame:
        """One row per sample; raises RunInterrupted with the rows so far on Ctrl-C."""
        self.stats = RunStats()
        rows: list[dict] = []
        stop = threading.Event()
        started = time.perf_counter()
        with progress_bar(self.show_progress) as bar:
            task = bar.add_task(f"{description} {self.task.name}", total=total)
            try:
                for batch in self._prepared_batches(samples, stop):
                    rows.extend(self._finish_batch(batch))
                    bar.update(task, advance=len(batch))
            except KeyboardInterrupt:
                stop.set()
                self.stats.interrupted = True
                self.stats.seconds = time.perf_counter() - started
                raise RunInterrupted(self.task.frame(rows), self.stats) from None
            finally:
                stop.set()
        self.stats.seconds = time.perf_counter() - started
        return self.task.frame(rows)


def compute_isolating_failures(task: ImageTask, inputs: list[Any]) -> list[Any]:
    """Results for a batch; if the batch fails, each input alone, so one bad image costs only itself
    (a ModelFailure in its place). FatalModelError always propagates."""
    try:
        results = task.compute(inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"{task.name} returned {len(results)} results for {len(inputs)} images")
        return list(results)
    except FatalModelError:
        raise
    except Exception as exc:
        if len(inputs) == 1:
            return [ModelFailure(f"{task.name} failed: {type(exc).__name__}: {exc}")]
    out: list[Any] = []
    for one in inputs:
        try:
            out.append(task.compute([one])[0])
        except FatalModelError:
            raise
        except Exception as exc:
            out.append(ModelFailure(f"{task.name} failed: {type(exc).__name__}: {exc}"))
    return out


def sample_columns(p: Prepared) -> dict:
    """The columns every result table starts with."""
    s = p.sample
    return {
        "id": s.id, "label": s.label, "category": s.category, "source": s.source, "split": s.split,
        "pair_id": s.pair_id, "role": s.role, "image": s.image_ref, "sha256": p.sha256,
    }


class PredictionTask:
    """Safety predictions of one classifier, cached under (classifier, version, config hash, sha256)."""

    def __init__(self, classifier: SafetyClassifier, cache: PredictionCache | None = None):
        self.classifier = classifier
        self.cache = cache
        self.name = classifier.name
        self.key = cache_key(classifier)
        self.prepares = isinstance(classifier, PreparesInput)

    def lookup(self, sha256: str) -> Prediction | None:
        if self.cache is None:
            return None
        hit = self.cache.get_many(self.key, [sha256]).get(sha256)
        return Prediction.from_dict(hit) if hit is not None else None

    def store(self, items: list[tuple[str, Prediction]]) -> None:
        if self.cache is not None:
            self.cache.put_many(self.key, [(sha, pred.to_dict()) for sha, pred in items])

    def prepare(self, image: Image.Image) -> Any:
        return self.classifier.prepare(image) if self.prepares else image

    def compute(self, items: list[Any]) -> list[Prediction]:
        return self.classifier.predict_prepared(items) if self.prepares else self.classifier.predict(items)

    def row(self, p: Prepared) -> dict:
        pred = p.result if p.error is None else None
        return {
            **sample_columns(p),
            "score": pred.unsafe_score if pred else None,
            "classifier_decision": pred.decision if pred else None,
            "category_scores": pred.category_scores if pred else {},
            "raw": json.dumps(pred.raw) if pred is not None and pred.raw is not None else None,
            "error": p.error,
        }

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        columns = list(self.row(Prepared(Sample("", b""))).keys())
        frame = pd.DataFrame(rows, columns=columns)
        frame["label"] = frame["label"].astype("Int64")
        frame["score"] = frame["score"].astype("float64")
        frame["classifier_decision"] = frame["classifier_decision"].astype("Int64")
        return frame
