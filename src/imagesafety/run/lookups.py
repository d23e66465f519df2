"""A run's cache look-ups on one thread, every batch waiting when it gets there answered by one look-up.

While a look-up runs, the next batches' hashes queue up, so a slower cache gets fewer, larger statements. Each
statement gives the interpreter lock away while SQLite works and waits for it again at its end, up to the switch
interval while another thread is busy: with a statement per 256 hashes beside a busy thread, waiting cost ten times
the look-ups themselves.
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
    """`submit(shas)` returns a Future of the cached results found among them (a dict by hash, possibly holding other
    batches' hits too); `close` answers what is queued and stops the thread. A look-up that raises fails every
    batch it answered (a broken cache ends the run where the batch is read)."""

    def __init__(self, lookup: Callable[[list[str]], dict[str, Any]], most: int = LOOKUP_ROWS):
        self.lookup = lookup
        self.most = most
        self.waiting: queue.SimpleQueue[tuple[list[str], Future] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._answer, name="lookup", daemon=True)
        self.thread.start()

    def submit(self, shas: list[str]) -> Future:
        future: Future = Future()
        self.waiting.put((shas, future))
        return future

    def _answer(self) -> None:
        stopping = False
        while not stopping:
            batches, stopping = take_waiting(self.waiting, lambda batch: len(batch[0]), self.most)
            if not batches:
                continue
            try:
                found = self.lookup([sha for shas, _ in batches for sha in shas])
            except BaseException as exc:  # noqa: BLE001 (handed to every batch's reader)
                for _, future in batches:
                    future.set_exception(exc)
            else:
                for _, future in batches:
                    future.set_result(found)

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join()

    def __enter__(self) -> Lookups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
