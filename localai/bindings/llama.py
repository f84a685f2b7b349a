"""Typed wrappers over libllama (via the compiled ``_llama_cffi`` module).

Handles are freed by explicit, idempotent ``close()`` (and ``with``); nothing relies on
garbage collection for model-sized memory. C failures raise ``localai.errors`` classes.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

from localai.bindings import NativeHandle, default_threads, load_native, native_log_level, require
from localai.errors import DecodeError, GrammarError, ModelLoadError, NativeError
from localai.sampling import SamplingParams

_native = load_native("_llama_cffi")
ffi, lib = _native.ffi, _native.lib

_init_lock = threading.Lock()
_initialised = False


def apply_log_level() -> None:
    """Point ggml and llama.cpp at the process's log sink with the configured level."""
    lib.localai_set_log_level(native_log_level())


def log_sink_address() -> int:
    """The address of the one C log sink, for the other native libraries to log through."""
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, "localai_log_sink")))


apply_log_level()


POOLING_NONE, POOLING_UNSPECIFIED = lib.LLAMA_POOLING_TYPE_NONE, lib.LLAMA_POOLING_TYPE_UNSPECIFIED
POOLING_MEAN, POOLING_RANK = lib.LLAMA_POOLING_TYPE_MEAN, lib.LLAMA_POOLING_TYPE_RANK


def max_parallel_sequences() -> int:
    """The most sequences one llama context can hold."""
    return int(lib.llama_max_parallel_sequences())


def backend_init() -> None:
    """Initialise llama.cpp once per process (idempotent, thread-safe)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            lib.llama_backend_init()
            _initialised = True


def system_info() -> str:
    """llama.cpp's description of the CPU features the build uses (e.g. ``AVX2 = 1``)."""
    return ffi.string(lib.llama_print_system_info()).decode()


def ggml_version() -> str:
    return ffi.string(lib.localai_ggml_version()).decode()


class Model(NativeHandle):
    """A GGUF model loaded into memory."""

    _free = staticmethod(lib.llama_model_free)

    def __init__(self, path: str | os.PathLike, *, use_mmap: bool = True, use_mlock: bool = False,
                 vocab_only: bool = False) -> None:
        backend_init()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        params.vocab_only = vocab_only
        params.load_mode = {(True, False): lib.LLAMA_LOAD_MODE_MMAP, (True, True): lib.LLAMA_LOAD_MODE_MMAP_MLOCK,
                            (False, True): lib.LLAMA_LOAD_MODE_MLOCK,
                            (False, False): lib.LLAMA_LOAD_MODE_NONE}[(use_mmap, use_mlock)]
        ptr = lib.llama_model_load_from_file(path.encode(), params)
        require(ptr != ffi.NULL, f"llama.cpp could not load the model {path}", ModelLoadError)
        self._ptr = ptr
        self.path = path
        self.vocab = lib.llama_model_get_vocab(ptr)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(ptr)
        self.n_embd = lib.llama_model_n_embd(ptr)
        self.bos = lib.llama_vocab_bos(self.vocab)
        self.eos = lib.llama_vocab_eos(self.vocab)
        # fill-in-the-middle tokens (prefix, suffix, middle); -1 where the model has none
        self.fim = (lib.llama_vocab_fim_pre(self.vocab), lib.llama_vocab_fim_suf(self.vocab),
                    lib.llama_vocab_fim_mid(self.vocab))
        self.has_encoder = bool(lib.llama_model_has_encoder(ptr))
        self.has_decoder = bool(lib.llama_model_has_decoder(ptr))
        self.n_embd_out = lib.llama_model_n_embd_out(ptr)  # what pooled embeddings have
        self._piece_cache: dict[int, bytes] = {}

    def description(self) -> str:
        buf = ffi.new("char[]", 256)
        lib.llama_model_desc(self._live(), buf, 256)
        return ffi.string(buf).decode(errors="replace")

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None when absent."""
        size = 256
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_model_meta_val_str(self._live(), key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return ffi.string(buf).decode(errors="replace")
            size = n + 1

    def chat_template(self, name: str | None = None) -> str | None:
        ptr = lib.llama_model_chat_template(self._live(), name.encode() if name else ffi.NULL)
        return None if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")

    def pooling_type(self) -> int:
        value = self.meta(f"{self.meta('general.architecture')}.pooling_type")
        return int(value) if value is not None else lib.LLAMA_POOLING_TYPE_NONE

    def tokenize(self, text: str | bytes, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode() if isinstance(text, str) else text
        capacity = len(data) + 8
        for _ in range(2):
            buf = ffi.new("llama_token[]", capacity)
            n = lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
            if n >= 0:
                return list(ffi.unpack(buf, n))
            capacity = -n
        raise NativeError("llama_tokenize failed")

    def token_to_piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character)."""
        key = token if not special else ~token
        piece = self._piece_cache.get(key)
        if piece is None:
            buf = ffi.new("char[]", 64)
            n = lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
            if n < 0:
                buf = ffi.new("char[]", -n)
                n = lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
            piece = ffi.unpack(buf, n)
            self._piece_cache[key] = piece
        return piece

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.token_to_piece(t, special=special) for t in tokens).decode(errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(lib.llama_vocab_is_eog(self.vocab, token))

    def token_text(self, token: int) -> str:
        return ffi.string(lib.llama_vocab_get_text(self.vocab, token)).decode(errors="replace")


class Batch(NativeHandle):
    """A reusable llama_batch for up to ``capacity`` tokens across sequences."""

    _free = None

    def __init__(self, capacity: int, embd: int = 0) -> None:
        self._struct = ffi.new("struct llama_batch *")
        self._struct[0] = lib.llama_batch_init(capacity, embd, 1)
        self._ptr = self._struct
        self.capacity = capacity
        self._one = ffi.new("llama_token[1]")  # reused for the common one-token add

    def close(self) -> None:
        if self._ptr:
            lib.llama_batch_free(self._struct[0])
            self._ptr = None

    @property
    def n_tokens(self) -> int:
        return self._struct.n_tokens

    def clear(self) -> None:
        self._struct.n_tokens = 0

    def add(self, tokens: Sequence[int], pos0: int, seq_id: int, logits_last: bool, *,
            logits_all: bool = False) -> int:
        """Append tokens of one sequence; returns the batch index of the last one. Logits are
        kept for the last token (``logits_last``) or for every one (``logits_all``)."""
        n = len(tokens)
        if self._struct.n_tokens + n > self.capacity:
            raise NativeError(f"batch overflow: {self._struct.n_tokens}+{n} > {self.capacity}")
        if n == 1:
            arr = self._one
            arr[0] = tokens[0]
        else:
            arr = ffi.new("llama_token[]", list(tokens))
        lib.localai_batch_add_seq(self._live(), arr, n, pos0, seq_id, 2 if logits_all else 1 if logits_last else 0)
        return self._struct.n_tokens - 1


class Context(NativeHandle):
    """An inference context: KV cache for up to ``n_seq_max`` parallel sequences."""

    _free = staticmethod(lib.llama_free)

    def __init__(self, model: Model, *, n_ctx: int = 0, n_batch: int = 512, n_ubatch: int | None = None,
                 n_seq_max: int = 1, n_threads: int | None = None, embeddings: bool = False,
                 pooling: int | None = None, kv_unified: bool = False) -> None:
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch or min(n_batch, 512)
        params.n_seq_max = n_seq_max
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        params.embeddings = embeddings
        params.no_perf = True
        # Separate KV streams per sequence (n_ctx / n_seq_max cells each) by default: with one
        # unified buffer, attention spans every sequence's cached cells, so prefixes kept for
        # reuse in idle slots would slow down every other request.
        params.kv_unified = kv_unified
        if pooling is not None:
            params.pooling_type = pooling
        ptr = lib.llama_init_from_model(model._live(), params)
        require(ptr != ffi.NULL, "llama.cpp could not create a context (out of memory?)", ModelLoadError)
        self._ptr = ptr
        self.model = model
        self.n_ctx = lib.llama_n_ctx(ptr)
        self.n_batch = lib.llama_n_batch(ptr)
        self.n_seq_max = lib.llama_n_seq_max(ptr)
        self.memory = lib.llama_get_memory(ptr)
        self.n_threads = threads
        self._threadpool = lib.localai_attach_threadpool(ptr, threads)

    def close(self) -> None:
        super().close()  # the context first: it uses the pool until freed
        pool, self._threadpool = getattr(self, "_threadpool", ffi.NULL), ffi.NULL
        if pool != ffi.NULL:
            lib.localai_free_threadpool(pool)

    def decode(self, batch: Batch) -> None:
        """Run the model over the batch; the GIL is released while C works."""
        status = lib.llama_decode(self._live(), batch._struct[0])
        if status != 0:
            raise DecodeError(status)

    def logits(self, index: int) -> np.ndarray:
        """Logits of the batch position ``index`` (a copy-free view valid until the next decode)."""
        ptr = lib.llama_get_logits_ith(self._live(), index)
        require(ptr != ffi.NULL, f"no logits for batch index {index}")
        return np.frombuffer(ffi.buffer(ptr, self.model.n_vocab * 4), dtype=np.float32)

    def embeddings_seq(self, seq_id: int) -> np.ndarray:
        ptr = lib.llama_get_embeddings_seq(self._live(), seq_id)
        require(ptr != ffi.NULL, f"no pooled embeddings for sequence {seq_id}")
        return np.frombuffer(ffi.buffer(ptr, self.model.n_embd_out * 4), dtype=np.float32).copy()

    def embeddings_ith(self, index: int) -> np.ndarray:
        ptr = lib.llama_get_embeddings_ith(self._live(), index)
        require(ptr != ffi.NULL, f"no embeddings for batch index {index}")
        return np.frombuffer(ffi.buffer(ptr, self.model.n_embd * 4), dtype=np.float32).copy()

    # ---- KV memory per sequence ----
    def seq_remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(lib.llama_memory_seq_rm(self.memory, seq_id, p0, p1))

    def seq_pos_max(self, seq_id: int) -> int:
        return lib.llama_memory_seq_pos_max(self.memory, seq_id)

    def memory_clear(self) -> None:
        lib.llama_memory_clear(self.memory, True)


class Sampler(NativeHandle):
    """llama.cpp's sampler chain built from ``SamplingParams`` (runs in C, per sequence)."""

    _free = staticmethod(lib.llama_sampler_free)

    def __init__(self, model: Model, params: SamplingParams) -> None:
        chain_params = lib.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        chain = lib.llama_sampler_chain_init(chain_params)
        self._ptr = chain
        add = lambda s: lib.llama_sampler_chain_add(chain, s)  # noqa: E731 - the chain takes ownership
        n_vocab = model.n_vocab
        if params.logit_bias:
            biases = ffi.new("llama_logit_bias[]", len(params.logit_bias))
            for i, (tok, bias) in enumerate(params.logit_bias.items()):
                biases[i].token, biases[i].bias = tok, bias
            add(lib.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), biases))
        self._grammar = ffi.NULL
        if params.grammar:
            # Kept out of the chain: checked against the chosen token only (see sample()).
            self._grammar = lib.llama_sampler_init_grammar(model.vocab, params.grammar.encode(), b"root")
            if self._grammar == ffi.NULL:
                self.close()
                raise GrammarError("llama.cpp could not parse the grammar")
            self._candidates = ffi.new("llama_token_data[]", n_vocab)
        if params.uses_penalties:
            add(lib.llama_sampler_init_penalties(n_vocab, params.repeat_last_n, params.repeat_penalty,
                                                 params.frequency_penalty, params.presence_penalty))
        if params.temperature <= 0:
            add(lib.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            add(lib.llama_sampler_init_top_k(params.top_k))
        if params.typical_p < 1.0:
            add(lib.llama_sampler_init_typical(params.typical_p, 1))
        if params.top_p < 1.0:
            add(lib.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(lib.llama_sampler_init_min_p(params.min_p, 1))
        add(lib.llama_sampler_init_temp(params.temperature))
        seed = lib.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        add(lib.llama_sampler_init_dist(seed))

    def sample(self, ctx: Context, index: int) -> int:
        """Sample (and accept) the next token from the logits at batch ``index``."""
        if self._grammar != ffi.NULL:
            return lib.localai_sample_constrained(self._live(), self._grammar, ctx._live(), index, self._candidates)
        return lib.llama_sampler_sample(self._live(), ctx._live(), index)

    def close(self) -> None:
        grammar, self._grammar = getattr(self, "_grammar", ffi.NULL), ffi.NULL
        if grammar != ffi.NULL:
            lib.llama_sampler_free(grammar)
        super().close()
