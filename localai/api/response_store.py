"""Stored responses of the Responses API (``store: true``): bounded, least recently used out,
kept apart per API key when keys are set."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class StoredResponse:
    response: dict  # the response object as it was sent
    input_items: list[dict]  # this request's input items (with ids)
    history: list[dict] = field(default_factory=list)  # every item before this response's output, in order


class ResponseStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._items: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, scope: str, stored: StoredResponse) -> None:
        if self.capacity == 0:
            return
        key = (scope, stored.response["id"])
        with self._lock:
            self._items[key] = stored
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, scope: str, response_id: str) -> StoredResponse | None:
        with self._lock:
            stored = self._items.get((scope, response_id))
            if stored is not None:
                self._items.move_to_end((scope, response_id))
            return stored

    def delete(self, scope: str, response_id: str) -> bool:
        with self._lock:
            return self._items.pop((scope, response_id), None) is not None

    def __len__(self) -> int:
        return len(self._items)
