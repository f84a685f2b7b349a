"""The continuous-batching scheduler: one thread per loaded model.

The thread owns one llama context with ``parallel`` sequence slots, each with its own KV
stream. Every step it builds ONE batch holding the next token of every generating sequence
plus a chunk of any prompt still being read, runs one ``llama_decode`` (the GIL is released
inside), then samples each sequence with its own sampler chain in C. New requests join
between steps; a cancelled one leaves at once.

Each slot keeps the tokens its KV cells hold after a request ends, and a new request is
given the slot sharing the longest prefix with its prompt, so a chat that grows by one
turn only processes the new turn. Beyond the slots, the host-RAM prompt cache
(``localai.prompt_cache``) keeps what a slot held when it is about to be overwritten; a
request whose prompt the cache holds a longer prefix of than any free slot gets that prefix
restored into a slot (a memory copy) and computes only the rest.

Requests arrive fully prepared (``LlamaEngine.generate``): tokens checked, sampler chain
built. The thread only schedules, decodes and samples.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from localai.backends.llama.text import TextAssembler
from localai.bindings import llama as L
from localai.capabilities import Delta, Event, Finished, TokenLogprob
from localai.errors import InvalidRequest, LocalAIError, ModelUnloaded, NativeError
from localai.prompt_cache import ModelPromptCache

log = logging.getLogger("localai.llama")


@dataclass
class Failed:
    """The request could not be completed; ``error`` says why."""

    error: Exception


class EventSink(Protocol):
    def put(self, event: Event | Failed) -> None: ...


@dataclass
class GenerationRequest:
    """One sequence to generate, as the scheduler runs it."""

    prompt: list[int]
    sampler: L.Sampler  # owned by the request until it finishes; the scheduler closes it
    events: EventSink
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # None: no logprobs; k: the chosen token plus k alternatives
    prompt_logprobs: bool = False  # also the prompt's tokens (OpenAI's echo + logprobs); needs logprobs
    reuse_prefix: bool = True  # False: compute the whole prompt, whatever the slots hold
    deadline: float | None = None  # time.monotonic() after which it stops with "length"
    scope: str = ""  # its cached prefix may be reused only by requests of the same scope (API key)
    submitted: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class _Slot:
    seq_id: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence
    request: GenerationRequest | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to decode
    batch_index: int = -1
    generated: int = 0
    cached_prompt: int = 0
    limit: int = 0
    text: TextAssembler | None = None
    last_used: int = 0
    scope: str = ""  # whose prompt the cache holds
    first_token_at: float | None = None
    scored_chunk: tuple[int, list[int]] | None = None  # (batch index, tokens) of a prompt chunk with all logits


_STOP = object()
# Below this many tokens a restore or a save is not worth its fixed cost (computing a token
# costs ~2 ms on two cores; restoring one ~5 us plus ~1 ms per restore).
MIN_RESTORE_GAIN = 8
MIN_SAVE = 8


class Scheduler:
    """Runs prepared requests on one llama context, ``parallel`` sequences at a time."""

    def __init__(self, model: L.Model, ctx: L.Context, *, context_size: int, parallel: int, name: str,
                 prompt_cache: ModelPromptCache | None = None, save_on_close: bool = False) -> None:
        self.model, self.ctx = model, ctx
        self.prompt_cache = prompt_cache
        self.save_on_close = save_on_close
        # One sequence state at a time passes through this buffer (saves and restores): reused,
        # its pages stay mapped, which makes a 500-token save or restore ~5x faster.
        self._scratch = np.empty(0, dtype=np.uint8)
        self.context_size = context_size
        self.parallel = parallel
        self.batch = L.Batch(ctx.n_batch)
        self.slots = [_Slot(seq_id=i) for i in range(parallel)]
        self.inbox: "queue.SimpleQueue[GenerationRequest | object]" = queue.SimpleQueue()
        self.waiting_list: list[GenerationRequest] = []
        self._clock = itertools.count(1)
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=f"llama-scheduler:{name}", daemon=True)
        self.thread.start()

    # ---- any thread ----
    def submit(self, request: GenerationRequest) -> None:
        if self._closed:
            raise ModelUnloaded("the model was unloaded (the server is shutting down)")
        self.inbox.put(request)

    def waiting(self) -> int:
        """Sequences waiting for a slot (approximate: read without a lock)."""
        return len(self.waiting_list) + self.inbox.qsize()

    def active(self) -> int:
        """Sequences in a slot (approximate: read without a lock)."""
        return sum(1 for s in self.slots if s.request is not None)

    def status(self) -> dict:
        """A snapshot for the monitor endpoint (read without locking: informational)."""
        status = {"active_sequences": self.active(),
                  "waiting": self.waiting(), "parallel": self.parallel,
                  "context_size": self.context_size,
                  "cached_tokens": [len(s.cache) for s in self.slots]}
        if self.prompt_cache is not None:
            stats = self.prompt_cache.stats()
            status["prompt_cache"] = {"bytes": stats.bytes, "tokens": stats.tokens, "restores": stats.restores,
                                      "restored_tokens": stats.restored_tokens, "stored_tokens": stats.stored_tokens,
                                      "evicted_tokens": stats.evicted_tokens,
                                      "limit_bytes": self.prompt_cache.cache.limit}
        return status

    def close(self) -> None:
        """Stop the thread, failing what is still queued or running; frees the batch."""
        if self._closed:
            return
        self._closed = True
        self.inbox.put(_STOP)
        self.thread.join()
        self.batch.close()

    # ---- the scheduler thread ----
    def _run(self) -> None:
        while True:
            busy = any(s.request for s in self.slots)
            if not self._take_new(block=not busy and not self.waiting_list):
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
        # shutting down: keep what idle slots hold (for a persisted cache), fail whatever is still waiting
        if self.save_on_close:
            for slot in self.slots:
                if slot.request is None:
                    self._save(slot)
        for request in self.waiting_list:
            request.sampler.close()
            request.events.put(Failed(ModelUnloaded("the model was unloaded (the server is shutting down)")))
        for slot in self.slots:
            if slot.request:
                self._finish(slot, error=ModelUnloaded("the model was unloaded (the server is shutting down)"))

    def _take_new(self, block: bool) -> bool:
        """Move requests from the inbox to the waiting list; False when asked to stop."""
        try:
            item = self.inbox.get(block=block)
            while True:
                if item is _STOP:
                    return False
                self.waiting_list.append(item)
                item = self.inbox.get_nowait()
        except queue.Empty:
            return True

    def _admit(self) -> None:
        """Give each waiting request the free slot whose cache shares the longest prefix."""
        still_waiting = []
        now = time.monotonic()
        for request in self.waiting_list:
            if request.cancelled.is_set() or (request.deadline is not None and now > request.deadline):
                request.sampler.close()
                request.events.put(Finished("stop" if request.cancelled.is_set() else "length", len(request.prompt), 0))
                continue
            free = [s for s in self.slots if s.request is None]
            if not free:
                still_waiting.append(request)
                continue
            if request.reuse_prefix:  # the longest shared prefix (of its own scope), else the least recently used
                slot = max(free, key=lambda s: (_shared(s, request), -s.last_used))
                if self.prompt_cache is not None and not request.prompt_logprobs:
                    slot = self._restore(free, slot, request) or slot
            else:  # nothing is reused: take the slot whose cache is worth least to others
                slot = min(free, key=lambda s: (len(s.cache) > 0, s.last_used))
            try:
                self._start(slot, request)
            except Exception as exc:
                request.sampler.close()
                request.events.put(Failed(exc))
        self.waiting_list = still_waiting

    def _start(self, slot: _Slot, request: GenerationRequest) -> None:
        prompt = request.prompt
        keep = min(_shared(slot, request), len(prompt) - 1)  # the last token must be decoded for logits
        if request.prompt_logprobs or not request.reuse_prefix:
            keep = 0  # every prompt token's logits are needed, and cached ones have none
        if self.prompt_cache is not None and len(slot.cache) - keep >= MIN_SAVE:
            self._save(slot)  # what is about to be overwritten goes to the host cache
        if not self.ctx.seq_remove(slot.seq_id, keep, -1):
            keep = 0
            self.ctx.seq_remove(slot.seq_id, -1, -1)
        slot.request = request
        slot.cache = prompt[:keep]
        slot.pending = prompt[keep:]
        slot.cached_prompt = keep
        slot.generated = 0
        room = self.context_size - len(prompt)
        slot.limit = room if request.max_tokens is None else min(room, request.max_tokens)
        slot.text = TextAssembler(request.stop)
        slot.last_used = next(self._clock)
        slot.scope = request.scope
        slot.first_token_at = None
        slot.scored_chunk = None

    def _save(self, slot: _Slot) -> None:
        """Keep a free slot's KV in the host cache (the part the cache lacks, if enough)."""
        tokens = slot.cache
        if len(tokens) < MIN_SAVE or len(tokens) - self.prompt_cache.held(slot.scope, tokens) < MIN_SAVE:
            return
        try:
            state = self.ctx.seq_state(slot.seq_id, self._scratch_for(len(tokens)))
            self.prompt_cache.store(slot.scope, tokens, state)
        except NativeError as exc:  # the cache is an optimisation: a failed save loses nothing else
            log.warning("could not save sequence %d to the prompt cache: %s", slot.seq_id, exc)

    def _scratch_for(self, tokens: int) -> np.ndarray:
        """The scratch buffer, grown (to twice what is needed) when a state of ``tokens`` cells
        would not fit."""
        layout = self.prompt_cache.cache.layout(self.prompt_cache.model)
        needed = 4096 + tokens * (layout.bytes_per_token + 12)
        if self._scratch.size < needed:
            self._scratch = np.empty(2 * needed, dtype=np.uint8)
        return self._scratch

    def _restore(self, free: list[_Slot], best: _Slot, request: GenerationRequest) -> _Slot | None:
        """When the host cache holds a longer prefix of the prompt than ``best`` (the free slot
        sharing the most), restore it into the least recently used free slot; that slot, or None."""
        limit = len(request.prompt) - 1  # the last prompt token is decoded for its logits
        have = min(_shared(best, request), limit)
        if self.prompt_cache.held(request.scope, request.prompt[:limit]) < have + MIN_RESTORE_GAIN:
            return None
        target = min(free, key=lambda s: s.last_used)
        self._save(target)
        n, state = self.prompt_cache.restore(request.scope, request.prompt, limit, target.seq_id,
                                             self._scratch_for(limit))
        if state is None:
            return None
        try:
            self.ctx.set_seq_state(target.seq_id, state)  # replaces whatever the slot held
        except NativeError as exc:
            log.warning("could not restore a cached prompt into sequence %d: %s", target.seq_id, exc)
            self.ctx.seq_remove(target.seq_id, -1, -1)
            target.cache = []
            return None
        target.cache = request.prompt[:n]
        target.scope = request.scope
        return target

    def _step(self) -> None:
        batch, budget = self.batch, self.ctx.n_batch
        batch.clear()
        now = time.monotonic()
        for slot in self.slots:  # generating sequences: one token each
            request = slot.request
            if request is None:
                continue
            if request.cancelled.is_set():
                self._finish(slot, reason="stop")
                continue
            if request.deadline is not None and now > request.deadline:
                log.warning("sequence %d reached the request time limit", slot.seq_id)
                self._finish(slot, reason="length")
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
            if slot.request is not None:
                self._after_decode(slot)

    def _after_decode(self, slot: _Slot) -> None:
        """Score, sample and emit for one sequence. Whatever fails here fails this sequence
        only: the others of the batch go on."""
        try:
            if slot.scored_chunk is not None:
                self._emit_prompt_logprobs(slot)
            if slot.pending or slot.batch_index < 0:
                return
            if slot.limit == 0:  # max_tokens 0: the prompt was all that was asked for
                self._finish(slot, reason="length")
                return
            self._emit(slot, slot.request.sampler.sample(self.ctx, slot.batch_index))
        except L.SamplingDone as done:
            if done.complete:  # the grammar's output is whole; only the banned EOG could follow
                self._finish(slot, reason="stop")
            else:
                self._finish(slot, error=InvalidRequest(
                    f"Sampling stopped: {done} (logit_bias, ignore_eos and the grammar together allow no token).",
                    param="logit_bias", code="no_candidate"))
        except Exception as exc:
            if not isinstance(exc, LocalAIError):
                log.exception("sequence %d failed", slot.seq_id)
            self._finish(slot, error=exc)

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
        if slot.first_token_at is None:
            slot.first_token_at = time.monotonic()
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
            final: list[Event | Failed] = [Failed(error)]
            # the KV of a failed sequence is suspect: forget it
            self.ctx.seq_remove(slot.seq_id, -1, -1)
            slot.cache = []
        else:
            rest = slot.text.flush() if flush else ""
            final = [Delta(rest, 0)] if rest else []
            first = None if slot.first_token_at is None else slot.first_token_at - request.submitted
            final.append(Finished(reason, len(request.prompt), slot.generated, slot.cached_prompt, first,
                                  slot.text.matched if slot.text is not None else None))
            # The last sampled token has no KV yet; keep the cache in step with the KV cells.
            if slot.cache and len(slot.cache) > self.ctx.seq_pos_max(slot.seq_id) + 1:
                slot.cache = slot.cache[: self.ctx.seq_pos_max(slot.seq_id) + 1]
        request.sampler.close()
        slot.request = None
        slot.pending = []
        slot.batch_index = -1
        slot.last_used = next(self._clock)
        for event in final:
            request.events.put(event)
        if self.prompt_cache is not None and error is None:
            # Saved now, after the answer is out, rather than when the slot is next taken: then
            # the copy would delay the request that takes it.
            self._save(slot)


def _shared(slot: _Slot, request: GenerationRequest) -> int:
    """How much of the request's prompt the slot's cache holds; nothing across scopes (so one API
    key cannot learn from cached_tokens what another sent)."""
    return _common_prefix(slot.cache, request.prompt) if slot.scope == request.scope else 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n and a[:n] == b[:n]:
        return n
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
