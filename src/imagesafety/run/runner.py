"""Run a model over samples: background reading and decoding, batched inference, and a cache of results.

Worker threads read and hash each batch's images, look the batches up in the cache together (`Lookups`), and decode
and prepare only what is missing, ahead of the model, so the model never waits on I/O; new results are stored
on their own thread, a commit a second, so an interrupted run resumes. What is computed (predictions, embeddings) is an
`ImageTask`; the machinery is shared, and `decoded_samples` is the same reading path for code that wants the
images themselves.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import pandas as pd
from PIL import Image

from imagesafety.classifiers.base import FatalModelError, ModelFailure
from imagesafety.data.batch import ReadsInBatches, SampleBatch, batches_of, rebatched
from imagesafety.data.decoding import (
    Prepared,
    batched,
    default_workers,
    errors_recorded_on,
    in_slices,
    read_ahead,
    read_sample,
)
from imagesafety.data.sample import Sample
from imagesafety.images import MAX_PIXELS, sha256_bytes
from imagesafety.media import FramePolicy, Sampling, ViewInfo
from imagesafety.run.lookups import LOOKUP_ROWS, Lookups
from imagesafety.run.progress import add_task, progress_bar
from imagesafety.run.still_processes import StillDecoders, default_processes
from imagesafety.run.views import Views, prepare_views, prepared_views
from imagesafety.store import StoreError, batch_digest

T = TypeVar("T")


class ImageTask(Protocol):
    """What a run computes per image, and how its results are cached and tabulated. An image is read as views
    (frames, backgrounds) under `frames`; each view is computed, and `combine` makes the image's one result."""

    name: str
    frames: FramePolicy

    def lookup(self, shas: list[str]) -> dict[str, Any]: ...  # cached results by image hash, as `combine` makes them

    def store(self, items: list[tuple[str, Any]]) -> None: ...

    def prepare(self, item: Prepared, image: Image.Image) -> Any: ...  # per-view CPU work, on worker threads

    def compute(self, items: list[Any]) -> list[Any]: ...  # one batched model call

    def combine(self, views: Views, results: list[Any]) -> Any: ...  # the image's result from its views' results

    def flags(self, result: Any) -> bool: ...  # one view's result is over the threshold (an early exit may stop there)

    concurrent: int  # batches that may be computed at once (1: one after another)

    def columns(self, rows: BatchRows) -> dict[str, list]: ...  # a batch's rows, column by column

    def frame(self, columns: dict[str, list]) -> pd.DataFrame: ...  # gathered columns as the task's typed table


@runtime_checkable
class KeepsBatches(Protocol):
    """A task whose cache also keeps each whole batch's results together, by the batch's digest (`batch_digest`), so
    that a re-run of the same batches reads each in one look-up (a batch the model worked on is kept whole once every
    row of it has a result)."""

    def lookup_batches(self, digests: list[str]) -> dict[str, list[Any]]: ...  # each found batch's results, in order

    def store_batches(self, items: list[tuple[str, list[Any]]]) -> None: ...


#: rows gathered before they become a typed frame (a run's rows are kept as a few frames, not a dict per row)
FRAME_ROWS = 16384
#: new results are stored at most this long after they are computed (a killed run loses at most this much work), or
#: as soon as this many are waiting: one commit per second instead of one per batch (a commit per 256 small images
#: cost more than the images: each writes every index page its random hashes touch)
STORE_SECONDS = 1.0
STORE_ROWS = 16384
#: images a run decodes on threads before it starts its still-decoding processes (a short run never pays their start)
PROCESSES_AFTER = 4096
#: batches and image bytes read ahead of decoding (a slow model's run downloads no more than this ahead); a batch of
#: images in memory smaller than `INLINE_HASH_BYTES` is hashed on the reading thread
READ_AHEAD_BATCHES, READ_AHEAD_BYTES, INLINE_HASH_BYTES = 32, 64 << 20, 1 << 20


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


@dataclass(eq=False)
class BatchRows:
    """A batch on its way through a run: its samples (as columns), each row's hash, result (None: none) and error; the
    rows the model computes (`missing`: row number and Prepared item), and each row's bytes until it is looked up."""

    samples: SampleBatch
    shas: list[str | None]
    results: list[Any]
    errors: list[str | None]
    data: list[bytes | None] | None = None
    missing: list[tuple[int, Prepared]] = field(default_factory=list)
    digest: str | None = None  # the batch's identity, where the cache keeps whole batches (`KeepsBatches`)

    def __len__(self) -> int:
        return len(self.shas)

    @classmethod
    def empty(cls) -> BatchRows:
        return cls(SampleBatch.joined([]), [], [], [])


def decode_views(item: Prepared, prepare: Callable[[Image.Image], Any], frames: FramePolicy) -> Prepared:
    """Decode every view of the item's bytes under `frames` and run `prepare` on each (errors recorded on the item)."""
    with errors_recorded_on(item):
        item.image = prepared_views(item.data, frames, MAX_PIXELS, item.sample.image_ref, prepare)
    item.data = None
    return item


@dataclass
class Runner:
    """Compute `task` for every sample once, through its cache; see `run`."""

    task: ImageTask
    batch_size: int = 16
    workers: int = field(default_factory=default_workers)
    prefetch_batches: int = 4
    show_progress: bool = True
    stats: RunStats = field(default_factory=RunStats)
    processes: int = field(default_factory=default_processes)  # still-decoding processes for a long run (0: none)

    def _prepared_batches(
        self, samples: Iterable[Sample] | ReadsInBatches, stop: threading.Event, keeps: KeepsBatches | None
    ) -> Iterator[BatchRows]:
        """Batches read, looked up and prepared by worker threads, `prefetch_batches` ahead of the consumer. One
        thread reads and hashes batches and asks for their look-ups, up to `LOOKUP_ROWS` rows, `READ_AHEAD_BATCHES`
        batches and `READ_AHEAD_BYTES` of images ahead of the one that decodes what the cache does not hold: the
        look-ups asked for while one runs are answered together, and reading goes on while the model's queue is
        full."""

        def produce() -> Iterator[BatchRows]:
            with (
                ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode") as pool,
                Lookups(self.task.lookup, keeps.lookup_batches if keeps is not None else None) as lookups,
                StillDecoders(self.processes, PROCESSES_AFTER) as stills,
            ):
                read = self._read_batches(samples, pool, lookups, keeps is not None)
                ahead = max(2, min(READ_AHEAD_BATCHES, LOOKUP_ROWS // self.batch_size))
                for rows, looked_up, _ in read_ahead(read, ahead, stop, lambda b: b[2], READ_AHEAD_BYTES, "read"):
                    yield self._decode_missing(rows, looked_up, pool, stills)

        return read_ahead(produce(), self.prefetch_batches, stop)

    def _read_batches(
        self, samples: Iterable[Sample] | ReadsInBatches, pool: ThreadPoolExecutor, lookups: Lookups, whole: bool
    ) -> Iterator[tuple[BatchRows, Future, int]]:
        """Each batch read and hashed, with its look-up asked for (with `whole`, by its digest too) and the bytes it
        holds."""
        for part in rebatched(batches_of(samples), self.batch_size):
            rows = self._read(part, pool)
            size = sum(map(len, filter(None, rows.data))) if rows.data is not None else 0
            if whole and None not in rows.shas:
                rows.digest = batch_digest(rows.shas)
            yield rows, lookups.submit([sha for sha in rows.shas if sha is not None], rows.digest), size

    def _read(self, samples: SampleBatch, pool: ThreadPoolExecutor) -> BatchRows:
        """Read and hash a batch: here when its images are already in memory and small (hashing a small image holds
        the interpreter lock: threads would only pass it back and forth, and no Sample is built), else on the worker
        threads."""
        n, images = len(samples), samples.images
        if all(type(image) is bytes for image in images) and sum(map(len, images)) < INLINE_HASH_BYTES:
            return BatchRows(samples, [sha256_bytes(image) for image in images], [None] * n, [None] * n, list(images))
        items = [Prepared(samples.sample(i)) for i in range(n)]
        in_slices(pool, read_sample, items, 4 * self.workers)
        return BatchRows(
            samples, [p.sha256 for p in items], [None] * n, [p.error for p in items], [p.data for p in items]
        )

    def _decode_missing(
        self, rows: BatchRows, looked_up: Future, pool: ThreadPoolExecutor, stills: StillDecoders
    ) -> BatchRows:
        """Cached results onto the rows that have one; the others decoded and prepared as Prepared items."""
        cached, data = looked_up.result(), rows.data or []
        rows.results = [cached.get(sha) if sha is not None else None for sha in rows.shas]
        rows.missing = [
            (i, Prepared(rows.samples.sample(i), sha256=rows.shas[i], data=data[i]))
            for i, (result, error) in enumerate(zip(rows.results, rows.errors))
            if result is None and error is None
        ]
        rows.data = None
        missing = [p for _, p in rows.missing]
        if missing and stills.ready(len(missing)):
            missing = self._decode_stills(missing, stills, pool)
        in_slices(pool, self._decode, missing, 4 * self.workers)
        return rows

    def _decode_stills(self, items: list[Prepared], stills: StillDecoders, pool: ThreadPoolExecutor) -> list[Prepared]:
        """Stills decoded by the worker processes (a slice each) and prepared here on the threads; returns what is left
        to the threads (animations, videos; everything if a worker failed)."""
        size = -(-len(items) // stills.processes)
        parts = [items[i : i + size] for i in range(0, len(items), size)]
        answers = stills.decode(
            [[(p.data, p.sample.image_ref) for p in part] for part in parts], self.task.frames, MAX_PIXELS
        )
        if answers is None:
            return items
        rest, decoded = [], []
        for part, answer in zip(parts, answers):
            for p, views in zip(part, answer):
                if views is None:
                    rest.append(p)
                elif isinstance(views, str):
                    p.error, p.data = views, None
                else:
                    decoded.append((p, views))
        in_slices(pool, self._prepare_still, decoded, 4 * self.workers)
        return rest

    def _prepare_still(self, decoded: tuple[Prepared, tuple[Sampling, list[tuple[Image.Image, ViewInfo]]]]) -> None:
        p, (sampling, views) = decoded
        with errors_recorded_on(p):
            p.image = prepare_views(sampling, views, lambda image: self.task.prepare(p, image))
        p.data = None

    def _decode(self, p: Prepared) -> Prepared:
        return decode_views(p, lambda image: self.task.prepare(p, image), self.task.frames)

    def _compute(self, rows: BatchRows) -> BatchRows:
        """The model's work for a batch's uncached rows: their views in shared model batches (a video under an early
        exit view by view in time order), then each row's result from its views; a view that fails fails its row."""
        self._compute_items([p for _, p in rows.missing])
        for i, p in rows.missing:
            rows.results[i], rows.errors[i] = (p.result if p.error is None else None), p.error
        return rows

    def _compute_items(self, items: list[Prepared]) -> None:
        todo = [p for p in items if p.image is not None]
        if not todo:
            return
        started = time.perf_counter()
        early = [p for p in todo if self.task.frames.early_exit and p.image.sampling.kind == "video"]
        shared = [p for p in todo if p not in early] if early else todo  # Prepared compares by identity
        flat = [x for p in shared for x in p.image.inputs]
        results: list[Any] = []
        for chunk in batched(flat, self.batch_size):
            results.extend(compute_isolating_failures(self.task, chunk))
        offset = 0
        for p in shared:
            n = len(p.image.inputs)
            self._settle(p, results[offset : offset + n])
            offset += n
        for p in early:
            self._settle(p, self._until_flagged(p.image))
        self.stats.model_seconds += time.perf_counter() - started

    def _until_flagged(self, views: Views) -> list[Any]:
        """A video's views in order, a model batch at a time, stopping after the batch where one is over the
        threshold."""
        out: list[Any] = []
        for chunk in batched(views.inputs, self.batch_size):
            out.extend(compute_isolating_failures(self.task, chunk))
            if any(not isinstance(r, ModelFailure) and self.task.flags(r) for r in out):
                break
        return out

    def _settle(self, p: Prepared, results: list[Any]) -> None:
        failed = next((r for r in results if isinstance(r, ModelFailure)), None)
        if failed is not None:
            p.error = str(failed)
        else:
            p.result = self.task.combine(p.image, results)
            p.fresh = True
        p.image = None  # free pixels early

    def _record(self, rows: BatchRows, store: ResultWriter) -> dict[str, list]:
        """Queue the batch's new results for the cache, count it, and turn it into rows, as columns (in the order the
        samples came)."""
        fresh = [(p.sha256, p.result) for _, p in rows.missing if p.fresh]
        answered = sum(result is not None for result in rows.results)  # by identity: results may be arrays
        # a batch the model worked on, complete, is kept whole for a re-run; one the cache answered image by image is
        # not (serialising every batch of a re-run cut another way cost that run more than its look-ups)
        whole = (rows.digest, rows.results) if rows.digest is not None and fresh and answered == len(rows) else None
        store.add(fresh, whole)
        self.stats.cached += answered - len(fresh)
        self.stats.predicted += len(fresh)
        self.stats.errors += len(rows) - rows.errors.count(None)
        self.stats.images += len(rows)
        return self.task.columns(rows)

    def _rows(self, batches: Iterator[BatchRows], store: ResultWriter, advance) -> Iterator[dict[str, list]]:
        """Rows batch by batch; with a task that computes concurrently, several batches are in flight at once."""
        if self.task.concurrent <= 1:
            for batch in batches:
                yield self._record(self._compute(batch), store)
                advance(len(batch))
            return
        with ThreadPoolExecutor(max_workers=self.task.concurrent, thread_name_prefix="compute") as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append(pool.submit(self._compute, batch))
                while len(pending) >= self.task.concurrent or (pending and pending[0].done()):
                    done = pending.popleft().result()
                    yield self._record(done, store)
                    advance(len(done))
            while pending:
                done = pending.popleft().result()
                yield self._record(done, store)
                advance(len(done))

    def run(
        self, samples: Iterable[Sample] | ReadsInBatches, total: int | None = None, description: str | None = None
    ) -> pd.DataFrame:
        """One row per sample; raises RunInterrupted with the rows so far on Ctrl-C. Rows are gathered as columns
        and kept as typed frames of `FRAME_ROWS` rows (never a dict per row), so memory grows by the columns' size
        only. A source that reads in batches (`ReadsInBatches`: Parquet, a selection of it) is read as columns: a
        row the cache answers never becomes a Sample."""
        self.stats = RunStats()
        parts: list[pd.DataFrame] = []
        gathered: dict[str, list] = self.task.columns(BatchRows.empty())
        stop = threading.Event()
        started = time.perf_counter()

        def gathered_rows() -> int:
            return len(next(iter(gathered.values()), []))

        def table() -> pd.DataFrame:
            tail = [self.task.frame(gathered)] if gathered_rows() or not parts else []
            return parts[0] if len(parts) == 1 and not tail else pd.concat(parts + tail, ignore_index=True)

        keeps = self.task if isinstance(self.task, KeepsBatches) else None
        writer = ResultWriter(self.task.store, keeps.store_batches if keeps is not None else None)
        with progress_bar(self.show_progress) as bar, writer as store, fewer_collections():
            task = add_task(bar, description or f"eval {self.task.name}", total=total)
            try:
                for columns in self._rows(
                    self._prepared_batches(samples, stop, keeps), store, lambda n: bar.update(task, advance=n)
                ):
                    for name, values in columns.items():
                        gathered[name].extend(values)
                    if gathered_rows() >= FRAME_ROWS:
                        parts.append(self.task.frame(gathered))
                        gathered = self.task.columns(BatchRows.empty())
            except KeyboardInterrupt:
                stop.set()
                store.close()  # what finished is in the cache before the run says it stopped
                self.stats.interrupted = True
                self.stats.seconds = time.perf_counter() - started
                raise RunInterrupted(table(), self.stats) from None
            finally:
                stop.set()
        self.stats.seconds = time.perf_counter() - started
        return table()


#: objects allocated between two young-generation garbage collections during a run (Python's default: 700)
RUN_GC_THRESHOLD = 100_000


_collecting_less = {"runs": 0, "threshold": gc.get_threshold()}  # runs going on; the threshold before the first
_collection_lock = threading.Lock()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage less often while a run allocates its few objects per image: with hundreds of thousands of live
    rows, the default threshold ran a collection every few batches and cost a fifth of a cached run. The threshold
    is restored when the last of the runs going on (in any thread) ends."""
    with _collection_lock:
        if _collecting_less["runs"] == 0:
            _collecting_less["threshold"] = gc.get_threshold()
            gc.set_threshold(RUN_GC_THRESHOLD, *gc.get_threshold()[1:])
        _collecting_less["runs"] += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collecting_less["runs"] -= 1
            if _collecting_less["runs"] == 0:
                gc.set_threshold(*_collecting_less["threshold"])


class ResultWriter:
    """A run's new results (and whole batches to keep together, with `store_batches`), stored in order on one
    background thread, a commit per `STORE_SECONDS` or `STORE_ROWS` results; `close` stores the rest and waits. A store
    that fails (a broken cache) fails the run at the next call."""

    def __init__(
        self,
        store: Callable[[list[tuple[str, Any]]], None],
        store_batches: Callable[[list[tuple[str, list[Any]]]], None] | None = None,
    ):
        self.store = store
        self.store_batches = store_batches
        self.waiting: list[tuple[str, Any]] = []
        self.batches: list[tuple[str, list[Any]]] = []  # whole batches, by digest, each with new results among them
        self.since = time.monotonic()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.writes: deque = deque()

    def add(self, items: list[tuple[str, Any]], batch: tuple[str, list[Any]] | None = None) -> None:
        """New results by hash, and the whole batch they belong to (by its digest) to keep together."""
        self.waiting.extend(items)
        if batch is not None:
            if self.store_batches is None:
                raise TypeError("this writer keeps no whole batches")
            self.batches.append(batch)
        while self.writes and (self.writes[0].done() or len(self.writes) > 2):  # a slow disk slows the run down
            self.writes.popleft().result()
        if len(self.waiting) >= STORE_ROWS or (self.waiting and time.monotonic() - self.since >= STORE_SECONDS):
            self._submit()

    def _submit(self) -> None:
        if self.waiting or self.batches:
            self.writes.append(self.pool.submit(self._store, self.waiting, self.batches))
            self.waiting, self.batches = [], []
        self.since = time.monotonic()

    def _store(self, items: list[tuple[str, Any]], batches: list[tuple[str, list[Any]]]) -> None:
        if items:
            self.store(items)
        if batches and self.store_batches is not None:
            self.store_batches(batches)

    def close(self) -> None:
        """Store everything still waiting and wait for it (raises what a store raised)."""
        self._submit()
        try:
            while self.writes:
                self.writes.popleft().result()
        finally:
            self.pool.shutdown(wait=True)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            self.close()


def compute_isolating_failures(task: ImageTask, inputs: list[Any]) -> list[Any]:
    """Results for a batch; if the batch fails, each input alone, so one bad image costs only itself
    (a ModelFailure in its place). FatalModelError and a broken cache always propagate."""
    try:
        results = task.compute(inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"{task.name} returned {len(results)} results for {len(inputs)} images")
        return list(results)
    except (FatalModelError, StoreError):
        raise
    except Exception as exc:
        if len(inputs) == 1:
            return [ModelFailure(f"{task.name} failed: {type(exc).__name__}: {exc}")]
    out: list[Any] = []
    for one in inputs:
        try:
            out.append(task.compute([one])[0])
        except (FatalModelError, StoreError):
            raise
        except Exception as exc:
            out.append(ModelFailure(f"{task.name} failed: {type(exc).__name__}: {exc}"))
    return out
