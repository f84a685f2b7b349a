"""Text generation on llama.cpp with continuous batching.

One scheduler thread per loaded model owns one llama context with ``parallel`` sequence
slots over a unified KV cache. Every step it builds ONE batch holding the next token of
every generating sequence plus a chunk of any prompt still being read, runs one
``llama_decode`` (the GIL is released inside), then samples each sequence with its own
sampler chain in C. New requests join between steps; a cancelled one leaves at once.

Each slot keeps the tokens its KV cells hold after a request ends, and a new request is
given the slot sharing the longest prefix with its prompt, so a chat that grows by one
turn only processes the new turn.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from localai.bindings import llama as L
from localai.errors import ContextLengthExceeded, InvalidRequest, LocalAIError, NativeError

log = logging.getLogger("localai.llama")


# ---- what flows between the API layer and the scheduler -----------------------------------

@dataclass
class TokenLogprob:
    token: str
    bytes: list[int]
    logprob: float | None  # None: a prompt's first token, which nothing predicts
    top: list[tuple[str, list[int], float]] | None


@dataclass
class Delta:
    """New text of one sequence (complete UTF-8 characters only, stop strings withheld)."""

    text: str
    n_tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Finished:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass
class Failed:
    error: Exception


Event = Delta | Finished | Failed


@dataclass
class GenerationRequest:
    prompt: list[int]
    sampling: L.SamplingParams = field(default_factory=L.SamplingParams)
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # None: no logprobs; k: the chosen token plus k alternatives
    prompt_logprobs: bool = False  # also the prompt's tokens (OpenAI's echo + logprobs); needs logprobs
    events: "queue.SimpleQueue[Event]" = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()

    def stream(self) -> Iterator[Event]:
        """Events until (and including) Finished or Failed."""
        while True:
            event = self.events.get()
            yield event
            if not isinstance(event, Delta):
                return


# ---- text assembly: UTF-8 safe, stop strings withheld until decided --------------------------

class TextAssembler:
    """Turns token bytes into text deltas, never splitting a character or leaking a stop string."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.text_len = 0

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was reached)."""
        text = self.held + self.decoder.decode(piece)
        if not self.stop:
            self.held = ""
            return text, False
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.held = ""
            return text[:cut], True
        keep = self._partial_stop_len(text)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self) -> str:
        """What is left at the end; bytes of a character cut off by max_tokens are dropped, not
        turned into U+FFFD."""
        text = self.held
        self.held = ""
        self.decoder.reset()
        return text

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best


# ---- the scheduler ----------------------------------------------------------------------------

@dataclass
class _Slot:
    seq_id: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence
    request: GenerationRequest | None = None
    sampler: L.Sampler | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to decode
    batch_index: int = -1
    generated: int = 0
    cached_prompt: int = 0
    limit: int = 0
    text: TextAssembler | None = None
    last_used: int = 0
    scored_chunk: tuple[int, list[int]] | None = None  # (batch index, tokens) of a prompt chunk with all logits


_STOP = object()


class LlamaEngine:
    """A loaded GGUF model serving generation requests through one batching scheduler."""

    def __init__(self, model_path: str, *, context_size: int | None = None, parallel: int = 4,
                 threads: int | None = None, batch_size: int = 512, use_mmap: bool = True,
                 use_mlock: bool = False, name: str = "") -> None:
        self.name = name or model_path
        self.model = L.Model(model_path, use_mmap=use_mmap, use_mlock=use_mlock)
        try:
            train = self.model.n_ctx_train or 2048
            self.context_size = min(context_size or min(train, 4096), train)
            self.parallel = max(1, parallel)
            # One KV stream of context_size cells per sequence slot.
            self.ctx = L.Context(self.model, n_ctx=self.context_size * self.parallel, n_batch=batch_size,
                                 n_seq_max=self.parallel, n_threads=threads)
        except Exception:
            self.model.close()
            raise
        self.batch = L.Batch(self.ctx.n_batch)
        self.slots = [_Slot(seq_id=i) for i in range(self.parallel)]
        self.inbox: "queue.SimpleQueue[GenerationRequest | object]" = queue.SimpleQueue()
        self.waiting: list[GenerationRequest] = []
        self._eog_bias: dict[int, float] | None = None
        self._clock = itertools.count(1)
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=f"llama-scheduler:{self.name}", daemon=True)
        self.thread.start()

    # ---- public API (any thread) ----
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=True)

    def detokenize(self, tokens: list[int]) -> str:
        return self.model.detokenize(tokens)

    def embed(self, inputs: list[str] | list[list[int]]) -> tuple[np.ndarray, int]:
        """(embeddings [n, dim], prompt tokens) from a second context on this model, made on first use."""
        from localai.backends.llama_embeddings import embedder_for

        return embedder_for(self).embed(inputs)

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        if self._closed:
            raise NativeError(f"model {self.name} is unloaded")
        n_prompt = len(request.prompt)
        if n_prompt == 0:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if n_prompt >= self.context_size:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_size} tokens. However, your messages "
                f"resulted in {n_prompt} tokens. Please reduce the length of the messages.", param="messages")
        if request.max_tokens is not None and n_prompt + request.max_tokens > self.context_size:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_size} tokens. However, you requested "
                f"{n_prompt + request.max_tokens} tokens ({n_prompt} in the messages, {request.max_tokens} in "
                f"the completion). Please reduce the length of the messages or completion.", param="max_tokens")
        self.inbox.put(request)
        return request

    def status(self) -> dict:
        """A snapshot for the monitor endpoint (read without locking: informational)."""
        return {"active_sequences": sum(1 for s in self.slots if s.request is not None),
                "waiting": len(self.waiting) + self.inbox.qsize(), "parallel": self.parallel,
                "context_size": self.context_size,
                "cached_tokens": [len(s.cache) for s in self.slots]}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.inbox.put(_STOP)
        self.thread.join()
        for slot in self.slots:
            if slot.sampler:
                slot.sampler.close()
        self.batch.close()
        self.ctx.close()
        self.model.close()

    # ---- scheduler thread ----
    def _run(self) -> None:
        L.backend_init()
        while True:
            busy = any(s.request for s in self.slots)
            if not self._take_new(block=not busy and not self.waiting):
                break
            self._admit()
            if not any(s.request for s in self.slots):
                continue
            try:
                self._step()
            except Exception as exc:  # a native failure ends the requests in flight, not the server
                log.exception("decode step failed")
                for slot in self.slots:
                    if slot.request:
                        self._finish(slot, error=exc)
        # shutting down: fail whatever is still waiting
        for request in self.waiting:
            request.events.put(Failed(NativeError("the model was unloaded")))
        for slot in self.slots:
            if slot.request:
                self._finish(slot, error=NativeError("the model was unloaded"))

    def _take_new(self, block: bool) -> bool:
        """Move requests from the inbox to the waiting list; False when asked to stop."""
        try:
            item = self.inbox.get(block=block)
            while True:
                if item is _STOP:
                    return False
                self.waiting.append(item)
                item = self.inbox.get_nowait()
        except queue.Empty:
            return True

    def _admit(self) -> None:
        """Give each waiting request the free slot whose cache shares the longest prefix."""
        still_waiting = []
        for request in self.waiting:
            if request.cancelled.is_set():
                request.events.put(Finished("stop", len(request.prompt), 0))
                continue
            free = [s for s in self.slots if s.request is None]
            if not free:
                still_waiting.append(request)
                continue
            slot = max(free, key=lambda s: (_common_prefix(s.cache, request.prompt), -s.last_used))
            try:
                self._start(slot, request)
            except Exception as exc:
                request.events.put(Failed(exc))
        self.waiting = still_waiting

    def _start(self, slot: _Slot, request: GenerationRequest) -> None:
        prompt = request.prompt
        keep = min(_common_prefix(slot.cache, prompt), len(prompt) - 1)  # the last token must be decoded for logits
        if request.prompt_logprobs:
            keep = 0  # every prompt token's logits are needed, and cached ones have none
        if not self.ctx.seq_remove(slot.seq_id, keep, -1):
            keep = 0
            self.ctx.seq_remove(slot.seq_id, -1, -1)
        sampling = request.sampling
        if request.ignore_eos:
            bias = dict(sampling.logit_bias)
            bias.update(self._eog_biases())
            sampling = L.SamplingParams(**{**sampling.__dict__, "logit_bias": bias})
        slot.sampler = L.Sampler(self.model, sampling)
        slot.request = request
        slot.cache = prompt[:keep]
        slot.pending = prompt[keep:]
        slot.cached_prompt = keep
        slot.generated = 0
        room = self.context_size - len(prompt)
        slot.limit = room if request.max_tokens is None else min(room, request.max_tokens)
        slot.text = TextAssembler(request.stop)
        slot.last_used = next(self._clock)
        slot.scored_chunk = None

    def _eog_biases(self) -> dict[int, float]:
        if self._eog_bias is None:
            self._eog_bias = {t: float("-inf") for t in range(self.model.n_vocab) if self.model.is_eog(t)}
        return self._eog_bias

    def _step(self) -> None:
        batch, budget = self.batch, self.ctx.n_batch
        batch.clear()
        for slot in self.slots:  # generating sequences: one token each
            request = slot.request
            if request is None:
                continue
            if request.cancelled.is_set():
                self._finish(slot, reason="stop")
                continue
            if not slot.pending:
                slot.batch_index = batch.add([slot.cache[-1]], len(slot.cache) - 1, slot.seq_id, True)
                budget -= 1
        for slot in self.slots:  # prompts: as much as the batch has room for
            if slot.request is None or not slot.pending or budget <= 0:
                if slot.request is not None and slot.pending:
                    slot.batch_index = -1
                continue
            chunk = slot.pending[:budget]
            last = len(chunk) == len(slot.pending)
            scored = slot.request.prompt_logprobs and slot.request.logprobs is not None
            index = batch.add(chunk, len(slot.cache), slot.seq_id, last, logits_all=scored)
            slot.batch_index = index if last else -1
            slot.scored_chunk = (index - len(chunk) + 1, chunk) if scored else None
            slot.cache.extend(chunk)
            slot.pending = slot.pending[len(chunk):]
            budget -= len(chunk)
        if batch.n_tokens == 0:
            return
        self.ctx.decode(batch)
        for slot in self.slots:
            if slot.request is not None and slot.scored_chunk is not None:
                self._emit_prompt_logprobs(slot)
            if slot.request is None or slot.pending or slot.batch_index < 0:
                continue
            if slot.limit == 0:  # max_tokens 0: the prompt was all that was asked for
                self._finish(slot, reason="length")
                continue
            self._emit(slot, slot.sampler.sample(self.ctx, slot.batch_index))

    def _emit_prompt_logprobs(self, slot: _Slot) -> None:
        """Logprobs of the prompt tokens a chunk predicts: token k+1 from the logits at k, and the
        next chunk's first token from this chunk's last (the prompt's first token has none)."""
        first_index, chunk = slot.scored_chunk
        slot.scored_chunk = None
        start = len(slot.cache) - len(chunk)  # position of the chunk's first token
        following = chunk[1:] + slot.pending[:1]
        entries = []
        if start == 0:
            piece = self.model.token_to_piece(chunk[0])
            entries.append(TokenLogprob(piece.decode(errors="replace"), list(piece), None, None))
        for k, token in enumerate(following):
            entries.append(self._logprob(first_index + k, token, slot.request.logprobs))
        slot.request.events.put(Delta("", 0, entries))

    def _emit(self, slot: _Slot, token: int) -> None:
        request = slot.request
        logprobs = None
        if request.logprobs is not None:
            logprobs = [self._logprob(slot.batch_index, token, request.logprobs)]
        if self.model.is_eog(token) and not request.ignore_eos:
            self._finish(slot, reason="stop")
            return
        slot.generated += 1
        slot.cache.append(token)  # its KV is written when it is decoded next step
        text, stopped = slot.text.feed(self.model.token_to_piece(token))
        if text or logprobs:
            request.events.put(Delta(text, 1, logprobs))
        if stopped:
            self._finish(slot, reason="stop", flush=False)
        elif slot.generated >= slot.limit:
            self._finish(slot, reason="length")

    def _logprob(self, index: int, token: int, top: int) -> TokenLogprob:
        logits = self.ctx.logits(index).astype(np.float64)
        peak = logits.max()
        logz = peak + np.log(np.exp(logits - peak).sum())
        alternatives = []
        if top > 0:
            best = np.argpartition(-logits, top)[:top]
            best = best[np.argsort(-logits[best])]
            for t in best:
                piece = self.model.token_to_piece(int(t))
                alternatives.append((piece.decode(errors="replace"), list(piece), float(logits[t] - logz)))
        piece = self.model.token_to_piece(token)
        return TokenLogprob(piece.decode(errors="replace"), list(piece), float(logits[token] - logz), alternatives)

    def _finish(self, slot: _Slot, *, reason: str = "stop", error: Exception | None = None, flush: bool = True) -> None:
        request = slot.request
        # The slot is released before the request hears it has finished: a client that gets
        # its answer and at once asks /backend/monitor must see the sequence gone.
        if error is not None:
            final: list[Event] = [Failed(error)]
            # the KV of a failed sequence is suspect: forget it
            self.ctx.seq_remove(slot.seq_id, -1, -1)
            slot.cache = []
        else:
            rest = slot.text.flush() if flush else ""
            final = [Delta(rest, 0)] if rest else []
            final.append(Finished(reason, len(request.prompt), slot.generated, slot.cached_prompt))
            # The last sampled token has no KV yet; keep the cache in step with the KV cells.
            if slot.cache and len(slot.cache) > self.ctx.seq_pos_max(slot.seq_id) + 1:
                slot.cache = slot.cache[: self.ctx.seq_pos_max(slot.seq_id) + 1]
        if slot.sampler:
            slot.sampler.close()
        slot.sampler = None
        slot.request = None
        slot.pending = []
        slot.batch_index = -1
        slot.last_used = next(self._clock)
        for event in final:
            request.events.put(event)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n and a[:n] == b[:n]:
        return n
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def generate_text(engine: LlamaEngine, request: GenerationRequest) -> tuple[str, Finished]:
    """Run one request to the end (for non-streaming callers)."""
    parts = []
    engine.submit(request)
    for event in request.stream():
        if isinstance(event, Delta):
            parts.append(event.text)
        elif isinstance(event, Failed):
            raise event.error if isinstance(event.error, LocalAIError) else NativeError(str(event.error))
        else:
            return "".join(parts), event
    raise NativeError("generation ended without a result")


def load(config, settings) -> LlamaEngine:
    """Backend factory: a ``LlamaEngine`` for a model config (see ``localai.backends``)."""
    path = config.model_path(settings.models_path)
    return LlamaEngine(
        str(path),
        context_size=config.context_size or settings.context_size,
        parallel=config.parallel or settings.parallel,
        threads=config.threads or settings.threads,
        use_mmap=config.mmap,
        use_mlock=config.mlock,
        name=config.name,
    )
