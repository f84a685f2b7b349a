"""Waiting on an engine's event queue while watching for a client that went away."""

from __future__ import annotations

import queue
import time
from typing import Any, Callable, Iterator

POLL_SECONDS = 0.25  # how often a waiting reader asks whether its client is still there


def queued(events: "queue.SimpleQueue[Any]", abandoned: Callable[[], bool] | None,
           cancel: Callable[[], None]) -> Iterator[Any]:
    """The items of ``events`` as they arrive, endlessly (the caller stops at its last one).
    While it waits, ``abandoned`` is asked four times a second whether to ``cancel``; once it
    has said so, no more: cancelled work still finishes, and its items keep coming."""
    next_check = time.monotonic() + POLL_SECONDS
    while True:
        try:
            item = events.get(timeout=None if abandoned is None else POLL_SECONDS)
            arrived = True
        except queue.Empty:
            arrived = False
        if abandoned is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + POLL_SECONDS
            if abandoned():
                cancel()
                abandoned = None
        if arrived:
            yield item
