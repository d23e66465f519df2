"""Work handed to one thread through a queue, taken together: whatever is already waiting when the thread gets to it
(a run's cache look-ups, the service's audit records), so a slower consumer does fewer, larger pieces of work."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def take_waiting(waiting: queue.Queue | queue.SimpleQueue, size: Callable[[T], int], most: int) -> tuple[list[T], bool]:
    """Block for the next item, then take the items already waiting until their sizes reach `most`; returns them and
    whether the stop sentinel (None) was met (nothing is taken after it)."""
    first = waiting.get()
    if first is None:
        return [], True
    items, total = [first], size(first)
    while total < most:
        try:
            item = waiting.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return items, True
        items.append(item)
        total += size(item)
    return items, False
