"""One API call's sequences, their events merged into one queue (the ``Generation`` contract).

The scheduler thread puts each sequence's events on the shared queue tagged with its choice
index; the HTTP thread reads them in arrival order until every choice has finished.
"""

from __future__ import annotations

import queue
from typing import Any, Callable, Iterator

from localai.backends.polling import queued
from localai.backends.llama.scheduler import Failed, GenerationRequest, Scheduler
from localai.capabilities import Delta, Event, Finished, collect



class _Tagged:
    """The event sink of one sequence: its events go on the shared queue with its index."""

    def __init__(self, target: "queue.SimpleQueue[tuple[int, Any]]", index: int):
        self.target, self.index = target, index

    def put(self, event: Event | Failed) -> None:
        self.target.put((self.index, event))


class LlamaGeneration:
    """n choices per prompt; choice ``p * n + j`` is the j-th answer to prompt p."""

    def __init__(self, scheduler: Scheduler, n: int) -> None:
        self.scheduler = scheduler
        self.n = n
        self.requests: list[GenerationRequest] = []
        self.events: "queue.SimpleQueue[tuple[int, Any]]" = queue.SimpleQueue()

    def sink(self) -> _Tagged:
        """The event sink for the next request added."""
        return _Tagged(self.events, len(self.requests))

    @property
    def choices(self) -> int:
        return len(self.requests)

    def start(self) -> None:
        submitted = 0
        try:
            for request in self.requests:
                self.scheduler.submit(request)
                submitted += 1
        except Exception:
            self.cancel()
            self.discard(self.requests[submitted:])
            raise

    def discard(self, requests: list[GenerationRequest] | None = None) -> None:
        """Free the samplers of requests never submitted (a submitted one's is the scheduler's)."""
        for request in self.requests if requests is None else requests:
            request.sampler.close()

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()

    def has_pending(self) -> bool:
        return not self.events.empty()

    def __iter__(self) -> Iterator[tuple[int, Event]]:
        return self._events(None)

    def _events(self, abandoned: Callable[[], bool] | None) -> Iterator[tuple[int, Event]]:
        """(choice index, event) until every choice has finished; a failure raises. While it
        runs, ``abandoned`` is asked four times a second whether to cancel."""
        open_choices = len(self.requests)
        if not open_choices:
            return
        for index, event in queued(self.events, abandoned, self.cancel):
            if isinstance(event, Failed):
                self.cancel()
                raise event.error
            if isinstance(event, Finished):
                open_choices -= 1
            yield index, event
            if not open_choices:
                return

    def collect(self, abandoned: Callable[[], bool] | None = None) -> tuple[list[list[Delta]], dict[int, Finished]]:
        return collect(self._events(abandoned), self.choices)
