"""Reading samples: bytes read and hashed, images decoded, on worker threads ahead of the consumer (`decoded_samples`
for code that needs the pictures; the engine's `Runner` builds on the same pieces)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from PIL import Image

from imagesafety.data.sample import Sample
from imagesafety.images import decode_image, sha256_bytes
from imagesafety.media.policy import failure_line
from imagesafety.store import StoreError

T = TypeVar("T")


def default_workers() -> int:
    """Decoding threads: one core is left to the model's own threads (1 on a 2-core machine, at most 4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass(eq=False, slots=True)
class Prepared:
    """A sample after the background stage: its hash, and a cached result, a prepared input or an error."""

    sample: Sample
    sha256: str | None = None
    result: Any = None
    image: Any = None  # the task's prepared views (`Views`), or the decoded image for `decoded_samples`
    error: str | None = None
    fresh: bool = False  # its result was computed in this run (not from the cache)
    data: bytes | None = field(default=None, repr=False)


class errors_recorded_on:  # noqa: N801 (used as a function: `with errors_recorded_on(item):`)
    """One image's failure becomes its error row; a broken cache still ends the run. (A class, not a
    `contextlib.contextmanager`: entered for every image, the generator form cost as much as reading one.)"""

    __slots__ = ("item",)

    def __init__(self, item: Prepared):
        self.item = item

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, Exception):
            return False  # a broken cache, Ctrl-C and exits end the run
        self.item.error = failure_line(self.item.sample.image_ref, exc)  # one image's failure must not end the run
        return True


def in_slices(pool: ThreadPoolExecutor, fn: Callable[[T], Any], items: list[T], slices: int) -> None:
    """`fn` on every item, the items cut into at most `slices` contiguous slices, one task per slice (a task per
    item cost more than reading and hashing a small cached image; a few slices per thread keep the threads evenly
    loaded). `fn` records its own errors."""
    if not items:
        return
    size = -(-len(items) // max(1, min(slices, len(items))))
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    if len(parts) == 1:
        for item in parts[0]:
            fn(item)
        return
    for done in pool.map(lambda part: [fn(item) for item in part], parts):
        del done


def read_sample(item: Prepared) -> Prepared:
    """Read and hash one sample's bytes (errors recorded on the item)."""
    with errors_recorded_on(item):
        item.data = item.sample.load_bytes()
        item.sha256 = sha256_bytes(item.data)
    return item


def decode_item(item: Prepared, prepare: Callable[[Image.Image], Any]) -> Prepared:
    """Decode the item's bytes into one picture (the first frame, on white) through `prepare` (errors recorded on the
    item)."""
    with errors_recorded_on(item):
        if item.data is None:
            raise ValueError("decoded before it was read")
        item.image = prepare(decode_image(item.data, name=item.sample.image_ref))
    item.data = None
    return item


def read_ahead(
    batches: Iterator[T],
    prefetch: int,
    stop: threading.Event,
    weight: Callable[[T], int] | None = None,
    most: int = 0,
    name: str = "prepare",
) -> Iterator[T]:
    """Iterate `batches` on a thread, up to `prefetch` items ahead of the consumer; with `weight`, also at most
    `most` weight (bytes held, say) ahead, past which only one item at a time is waiting."""
    waiting: deque = deque()  # (item, weight), oldest first
    ready = threading.Condition()
    held = [0]
    done = object()

    def room(w: int) -> bool:
        return not waiting or (len(waiting) < prefetch and (weight is None or held[0] + w <= most))

    def put(item: Any, w: int = 0) -> None:
        with ready:
            waiting.append((item, w))
            held[0] += w
            ready.notify_all()

    def produce() -> None:
        try:
            for batch in batches:
                w = weight(batch) if weight is not None else 0
                with ready:
                    while not stop.is_set() and not room(w):
                        ready.wait(0.1)
                if stop.is_set():
                    break
                put(batch, w)
        except BaseException as exc:  # surfaced in the consumer
            put(exc)
        finally:
            put(done)

    threading.Thread(target=produce, name=name, daemon=True).start()
    while True:
        with ready:
            while not waiting:
                ready.wait()
            item, w = waiting.popleft()
            held[0] -= w
            ready.notify_all()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def decoded_samples(
    samples: Iterable[Sample],
    workers: int | None = None,
    batch_size: int = 16,
    prepare: Callable[[Image.Image], Any] = lambda image: image,
) -> Iterator[Prepared]:
    """Every sample read, hashed and decoded (`.image`, through `prepare`) on worker threads, in order; unreadable
    ones carry `.error`. The one decoding path for code that needs the images themselves."""
    stop = threading.Event()
    threads = workers or default_workers()
    slices = 4 * threads

    def produce() -> Iterator[list[Prepared]]:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
            for chunk in batched(samples, batch_size):
                items = [Prepared(s) for s in chunk]
                in_slices(pool, read_sample, items, slices)
                in_slices(pool, lambda p: decode_item(p, prepare), [p for p in items if p.error is None], slices)
                yield items

    try:
        for batch in read_ahead(produce(), 4, stop):
            yield from batch
    finally:
        stop.set()
