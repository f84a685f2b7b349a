"""``LlamaEngine``: a loaded GGUF model serving text generation, tokenizing and embeddings.

Everything a request brings is checked and converted here, in the caller's thread, before
the scheduler sees it: prompts are tokenized (one BOS, fill-in-the-middle layout), token ids
and lengths checked against the vocabulary and the context, and each sequence's sampler
chain built in C. A bad request is refused whole, before any of it runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from localai.backends.llama.embedder import LlamaEmbedder
from localai.backends.llama.generation import LlamaGeneration
from localai.backends.llama.scheduler import GenerationRequest, Scheduler
from localai.backends.llama.text import fim_prompt
from localai.bindings import llama as L
from localai.capabilities import GenerationOptions, PromptInfo
from localai.errors import ContextLengthExceeded, InvalidRequest, ModelUnloaded, TooManyRequests
from localai.prompt_cache import ModelPromptCache, PromptCache, model_identity, parse_state
from localai.sampling import SamplingParams

log = logging.getLogger("localai.llama")

# OpenAI's logit_bias: -100 bans a token, which llama.cpp spells -inf
BAN_BIAS = -100.0


class LlamaEngine:
    """A GGUF model on one context with ``parallel`` sequence slots and a batching scheduler."""

    def __init__(self, model_path: str, *, context_size: int | None = None, parallel: int = 4,
                 threads: int | None = None, batch_size: int = 512, use_mmap: bool = True,
                 use_mlock: bool = False, name: str = "", max_queue: int = 64,
                 prompt_cache: PromptCache | None = None, prompt_cache_dir: Path | None = None,
                 split: L.Split | None = None) -> None:
        self.name = name or model_path
        self.max_queue = max_queue
        self.model = L.Model(model_path, use_mmap=use_mmap, use_mlock=use_mlock, split=split)
        # where its layers are: this process's CPU, and the RPC workers of a split
        self.devices = ["CPU", *(f"RPC {endpoint}" for endpoint in (split.endpoints if split else ()))]
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
        self.prompt_cache_dir = Path(prompt_cache_dir) if prompt_cache_dir else None
        self.host_cache = self._attach_cache(prompt_cache, model_path)
        self.scheduler = Scheduler(self.model, self.ctx, context_size=self.context_size, parallel=self.parallel,
                                   name=self.name, prompt_cache=self.host_cache,
                                   save_on_close=self.host_cache is not None and self.prompt_cache_dir is not None)
        self._embedder: LlamaEmbedder | None = None
        self._lock = threading.Lock()  # embedder creation and close
        self._admission = threading.Lock()
        self._closed = False

    # ---- the host-RAM prompt cache ----
    def _attach_cache(self, cache: PromptCache | None, model_path: str) -> ModelPromptCache | None:
        """This model's view of the shared prompt cache, when its KV can be cut at any position
        and its sequence states are a layout we split (a one-token probe tells); else None."""
        if cache is None or not cache.enabled:
            return None
        if self.model.n_swa > 0 or self.model.is_recurrent:
            log.info("model %s: no host prompt cache (its %s memory cannot be restored by prefix)", self.name,
                     "sliding-window" if self.model.n_swa > 0 else "recurrent")
            return None
        with L.Batch(1) as batch:
            batch.add([max(self.model.bos, 0)], 0, 0, False)
            self.ctx.decode(batch)
        layout = getattr(parse_state(self.ctx.seq_state(0)), "layout", None)
        self.ctx.seq_remove(0, -1, -1)
        if layout is None:
            log.info("model %s: no host prompt cache (a KV layout we do not split)", self.name)
            return None
        self._identity = model_identity(model_path)
        self._cache_key = f"{self.name}@{self._identity}"
        view = ModelPromptCache(cache, self._cache_key, layout)
        if self.prompt_cache_dir is not None:
            loaded = cache.load(self._cache_key, self._cache_file(), self._identity)
            if loaded:
                log.info("model %s: loaded %d cached prompt tokens from %s", self.name, loaded, self._cache_file())
        return view

    def _cache_file(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.name)[:80]
        return self.prompt_cache_dir / f"{safe}-{hashlib.sha256(self.name.encode()).hexdigest()[:12]}.promptcache"

    def _release_cache(self) -> None:
        """On close: write this model's cache (with --prompt-cache-dir), then free its memory."""
        if self.host_cache is None:
            return
        cache = self.host_cache.cache
        if self.prompt_cache_dir is not None:
            try:
                written = cache.save(self._cache_key, self._cache_file(), self._identity)
                log.info("model %s: saved %d cached prompt tokens to %s", self.name, written, self._cache_file())
            except OSError as exc:
                log.warning("model %s: could not save the prompt cache: %s", self.name, exc)
        cache.drop(self._cache_key)

    # ---- what templating needs ----
    def prompt_info(self) -> PromptInfo:
        model = self.model
        return PromptInfo(chat_template=model.chat_template(),
                          bos_text=model.token_text(model.bos) if model.bos >= 0 else "",
                          eos_text=model.token_text(model.eos) if model.eos >= 0 else "",
                          context_size=self.context_size, fill_in_middle=min(model.fim) >= 0,
                          control_texts=model.control_texts)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.model.detokenize(tokens)

    # ---- generation ----
    def generate(self, prompts: Sequence[str | list[int]], options: GenerationOptions, *,
                 n: int = 1) -> LlamaGeneration:
        if self._closed:
            raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
        token_lists = [self._prompt_tokens(prompt, options) for prompt in prompts]  # all checked before any runs
        self._check_budget(token_lists, options, n)
        sampling = self._sampling(options)
        generation = LlamaGeneration(self.scheduler, n)
        try:
            for tokens in token_lists:
                for j in range(n):
                    # answer j of every prompt: the same as that prompt alone with seed + j
                    params = sampling if j == 0 or sampling.seed is None else sampling.with_seed(sampling.seed + j)
                    sampler = L.Sampler(self.model, params, context_size=self.context_size)
                    if params.uses_penalties:  # as llama-server: the penalties count the prompt too
                        window = self.context_size if params.repeat_last_n < 0 else params.repeat_last_n
                        sampler.prime(tokens[len(tokens) - window:] if window else [])
                    generation.requests.append(GenerationRequest(
                        prompt=tokens, sampler=sampler, events=generation.sink(),
                        max_tokens=options.max_tokens, stop=options.stop, ignore_eos=options.ignore_eos,
                        logprobs=options.logprobs, prompt_logprobs=options.prompt_logprobs,
                        reuse_prefix=options.cache_prompt, deadline=options.deadline, scope=options.cache_scope))
        except Exception:
            generation.discard()
            raise
        with self._admission:  # the queue is counted and joined in one step
            free_slots = self.parallel - self.scheduler.active()
            if self.scheduler.waiting() + len(generation.requests) - free_slots > self.max_queue:
                generation.discard()
                raise TooManyRequests(f"The model `{self.name}` has {self.scheduler.waiting()} sequences waiting "
                                      f"for a slot; at most {self.max_queue} may wait (--max-queue). Try again "
                                      "shortly.", retry_after=2)
            generation.start()  # on a failure part way, it cancels what it submitted and discards the rest
        return generation

    def _prompt_tokens(self, prompt: str | list[int], options: GenerationOptions) -> list[int]:
        model = self.model
        if options.suffix:
            if min(model.fim) < 0:
                raise InvalidRequest(f"The model `{self.name}` does not support suffix: it has no fill-in-the-middle "
                                     "tokens.", param="suffix")
            prefix = self.tokenize(prompt, add_special=False) if isinstance(prompt, str) else list(prompt)
            tokens = fim_prompt(prefix, self.tokenize(options.suffix, add_special=False), model.fim)
        elif isinstance(prompt, str):
            tokens = self.tokenize(prompt)
            if len(tokens) >= 2 and tokens[0] == tokens[1] == model.bos:
                tokens = tokens[1:]  # the template wrote BOS and the tokenizer added another
        else:
            tokens = list(prompt)
        for t in tokens:
            if not 0 <= t < model.n_vocab:
                raise InvalidRequest(f"Token id {t} is outside the vocabulary.", param="prompt")
        n_prompt = len(tokens)
        if n_prompt == 0:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if n_prompt >= self.context_size:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_size} tokens. However, your messages "
                f"resulted in {n_prompt} tokens. Please reduce the length of the messages.", param="messages")
        if options.max_tokens is not None and n_prompt + options.max_tokens > self.context_size:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_size} tokens. However, you requested "
                f"{n_prompt + options.max_tokens} tokens ({n_prompt} in the messages, {options.max_tokens} in "
                f"the completion). Please reduce the length of the messages or completion.", param="max_tokens")
        return tokens

    def _check_budget(self, token_lists: list[list[int]], options: GenerationOptions, n: int) -> None:
        """Refuse a request that may generate more tokens, all its choices together, than its budget."""
        if options.token_budget is None:
            return
        asked = sum(min(options.max_tokens if options.max_tokens is not None else self.context_size,
                        self.context_size - len(tokens)) for tokens in token_lists) * n
        if asked > options.token_budget:
            raise InvalidRequest(f"This request may generate up to {asked} tokens ({len(token_lists)} prompts x {n} "
                                 f"choices); at most {options.token_budget} are allowed per request. Set max_tokens "
                                 "or ask for fewer choices.", param="max_tokens", code="request_too_large")

    def _sampling(self, options: GenerationOptions) -> SamplingParams:
        """The request's sampling with our policy applied: bounds that depend on this model,
        biases on real token ids, -100 as a ban, end-of-generation tokens banned under ignore_eos."""
        sampling = options.sampling
        if sampling.top_k > self.model.n_vocab:
            raise InvalidRequest(f"top_k {sampling.top_k} is larger than the vocabulary ({self.model.n_vocab} "
                                 "tokens).", param="top_k")
        if sampling.repeat_last_n > self.context_size:
            raise InvalidRequest(f"repeat_last_n {sampling.repeat_last_n} is larger than the context "
                                 f"({self.context_size} tokens).", param="repeat_last_n")
        bias: dict[int, float] = {}
        for token, value in sampling.logit_bias.items():
            if not 0 <= token < self.model.n_vocab:
                raise InvalidRequest(f"logit_bias token {token} is outside the vocabulary.", param="logit_bias")
            bias[token] = float("-inf") if value <= BAN_BIAS else float(value)
        if options.ignore_eos:
            bias.update(self._eog_biases())
        return dataclasses.replace(sampling, logit_bias=bias)

    def _eog_biases(self) -> dict[int, float]:
        return {t: float("-inf") for t in self.model.eog_tokens}

    # ---- embeddings ----
    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """(embeddings [n, dim], prompt tokens) from a second context on this model, made on first use."""
        return self._embedder_instance().embed(inputs)

    def _embedder_instance(self) -> LlamaEmbedder:
        embedder = self._embedder
        if embedder is None:
            with self._lock:
                if self._closed:
                    raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
                if self._embedder is None:
                    self._embedder = LlamaEmbedder(self.model, threads=self.ctx.n_threads,
                                                   max_tokens=self.context_size)
                embedder = self._embedder
        return embedder

    # ---- lifetime ----
    def status(self) -> dict:
        return self.scheduler.status()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Everything that borrows the model goes first: the embedder's context, the scheduler
        # (which fails what is still running), the context.
        if self._embedder is not None:
            self._embedder.close()
        self.scheduler.close()
        self._release_cache()
        self.ctx.close()
        self.model.close()
