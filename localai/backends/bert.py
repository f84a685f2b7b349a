"""The ``bert-embeddings`` backend: sentence embeddings on libbert (native/bert.cpp).

Requests are checked and tokenized in the caller's thread (the tokenizer is thread-safe and
releases the GIL), then handed to one encoder thread. Whatever requests are waiting when
the encoder becomes free are merged into one call, so eight clients sending 32 sentences
each are embedded in a few large forward passes instead of eight small ones; libbert packs
each call into as few passes as its token budget allows.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from localai.backends.embeddings import check_token_lists
from localai.bindings.bert import BertModel
from localai.errors import LocalAIError, ModelUnloaded

log = logging.getLogger("localai.bert")

_STOP = object()


@dataclass
class _Job:
    tokens: list[list[int]]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BertEngine:
    """A loaded embedding model: ``embed(inputs)`` from any thread."""

    def __init__(self, model_path: str, *, threads: int | None = None, n_batch: int = 0, name: str = "") -> None:
        self.name = name or model_path
        self.model = BertModel(model_path, n_threads=threads, n_batch=n_batch)
        self.dimensions = self.model.n_embd
        self.max_tokens = self.model.n_max_tokens
        # Merge at most this many tokens per encoder call, so one huge request cannot make
        # the requests behind it wait for much more than their own work.
        self._merge_budget = self.model.n_batch * self.model.n_workers * 8
        self._inbox: "queue.SimpleQueue[_Job | object]" = queue.SimpleQueue()
        self._closed = False
        self._submit_lock = threading.Lock()  # no job may enter the inbox after the stop marker
        self._thread = threading.Thread(target=self._run, name=f"bert-encoder:{self.name}", daemon=True)
        self._thread.start()

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """(L2-normalised embeddings [len(inputs), dimensions], prompt tokens) of texts or token lists.

        Token lists are embedded exactly as given; texts get the model's special tokens.
        """
        if self._closed:
            raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
        if len(inputs) == 0:
            return np.empty((0, self.dimensions), dtype=np.float32), 0
        if all(isinstance(x, str) for x in inputs):
            tokens = [self.model.tokenize(x) for x in inputs]
        else:
            tokens = [list(x) for x in inputs]
        check_token_lists(tokens, self.model.n_vocab, self.max_tokens)
        job = _Job(tokens)
        with self._submit_lock:
            if self._closed:
                raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
            self._inbox.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result, sum(len(t) for t in tokens)

    def close(self) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.put(_STOP)
        self._thread.join()
        self.model.close()

    # ---- encoder thread ----
    def _run(self) -> None:
        pending: list[_Job] = []
        stopping = False
        while not stopping or pending:  # jobs queued before close() are still served
            if not pending:
                item = self._inbox.get()
                if item is _STOP:
                    break
                pending.append(item)
            # Take everything that is waiting, up to the merge budget.
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                pending.append(item)
            batch, used = [], 0
            while pending and (not batch or used + sum(map(len, pending[0].tokens)) <= self._merge_budget):
                job = pending.pop(0)
                batch.append(job)
                used += sum(map(len, job.tokens))
            self._encode(batch)

    def _encode(self, jobs: list[_Job]) -> None:
        try:
            merged = [ids for job in jobs for ids in job.tokens]
            vectors = self.model.encode_tokens(merged)
            start = 0
            for job in jobs:
                job.result = vectors[start:start + len(job.tokens)]
                start += len(job.tokens)
        except Exception as exc:  # a native failure fails these requests, not the encoder thread
            if not isinstance(exc, LocalAIError):
                log.exception("embedding batch failed")
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done.set()


def load(config, settings, shared: object = None) -> BertEngine:
    """Backend factory: a ``BertEngine`` for a model config (see ``localai.backends``)."""
    path = config.model_path(settings.models_path)
    if path is None:
        from localai.errors import ConfigError

        raise ConfigError(f"{config.name}: parameters.model is not set")
    return BertEngine(str(path), threads=config.threads or settings.threads, name=config.name)
