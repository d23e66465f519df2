"""A run's cache look-ups on one thread, every batch waiting when it gets there answered by one look-up.

While a look-up runs, the next batches' hashes queue up, so a slower cache gets fewer, larger statements. Each
statement gives the interpreter lock away while SQLite works and waits for it again at its end, up to the switch
interval while another thread is busy: with a statement per 256 hashes beside a busy thread, waiting cost ten times
the look-ups themselves. Where the cache keeps whole batches together (`whole`: by the batch's digest), the batches
are looked up whole first, and only the others image by image: a re-run of the same batches finds each in one step
instead of one search per image (SQLite's search, about two microseconds, cost more than reading a small image).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from imagesafety.queues import take_waiting

#: hashes answered by one look-up at most (the batches waiting are taken until this many)
LOOKUP_ROWS = 8192


class Lookups:
    """`submit(shas, digest)` returns a Future of the cached results found among the batch's hashes (a dict by hash,
    possibly holding other batches' hits too); `close` answers what is queued and stops the thread. `whole` looks
    batches up by digest (a dict of each found batch's results, in order); a batch without a digest, or not found
    whole, is looked up image by image. A look-up that raises fails every batch it answered (a broken cache ends the
    run where the batch is read)."""

    def __init__(
        self,
        lookup: Callable[[list[str]], dict[str, Any]],
        whole: Callable[[list[str]], dict[str, list[Any]]] | None = None,
        most: int = LOOKUP_ROWS,
    ):
        self.lookup = lookup
        self.whole = whole
        self.most = most
        self.waiting: queue.SimpleQueue[tuple[list[str], str | None, Future] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._answer, name="lookup", daemon=True)
        self.thread.start()

    def submit(self, shas: list[str], digest: str | None = None) -> Future:
        future: Future = Future()
        self.waiting.put((shas, digest, future))
        return future

    def _answer(self) -> None:
        stopping = False
        while not stopping:
            batches, stopping = take_waiting(self.waiting, lambda batch: len(batch[0]), self.most)
            if not batches:
                continue
            try:
                answers = self._found(batches)
            except BaseException as exc:  # noqa: BLE001 (handed to every batch's reader)
                for _, _, future in batches:
                    future.set_exception(exc)
            else:
                for (_, _, future), answer in zip(batches, answers):
                    future.set_result(answer)

    def _found(self, batches: list[tuple[list[str], str | None, Future]]) -> list[dict[str, Any]]:
        digests = [digest for _, digest, _ in batches if digest is not None]
        kept = self.whole(digests) if self.whole is not None and digests else {}
        answers: list[dict[str, Any] | None] = [
            dict(zip(shas, kept[digest])) if digest in kept and len(kept[digest]) == len(shas) else None
            for shas, digest, _ in batches
        ]
        rest = [sha for (shas, _, _), answer in zip(batches, answers) if answer is None for sha in shas]
        found = self.lookup(rest) if rest else {}
        return [found if answer is None else answer for answer in answers]

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join()

    def __enter__(self) -> Lookups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
