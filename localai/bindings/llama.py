"""Typed wrappers over localai_llama, our guarded C API on llama.cpp (``_llama_cffi``).

Every call goes through native/llama.cpp/localai_llama.h, which catches C++ exceptions and
returns a status; a failure here raises a ``localai.errors`` class, never ends the process.
Handles are freed by explicit, idempotent ``close()`` (and ``with``); nothing relies on
garbage collection for model-sized memory.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from localai.bindings import NativeHandle, check_status, default_threads, load_native, native_log_level, require
from localai.errors import DecodeError, GrammarError, InvalidRequest, ModelLoadError, NativeError
from localai.sampling import SamplingParams

_native = load_native("_llama_cffi")
ffi, lib = _native.ffi, _native.lib

_init_lock = threading.Lock()
_initialised = False

POOLING_NONE, POOLING_UNSPECIFIED = lib.LLAMA_POOLING_TYPE_NONE, lib.LLAMA_POOLING_TYPE_UNSPECIFIED
POOLING_MEAN, POOLING_RANK = lib.LLAMA_POOLING_TYPE_MEAN, lib.LLAMA_POOLING_TYPE_RANK
_U32 = 0xFFFFFFFF


def last_error() -> str:
    return ffi.string(lib.localai_last_error()).decode(errors="replace")


# Statuses of localai_llama.h that are the caller's doing; the rest are NativeError.
_ERRORS = {lib.LOCALAI_ERR_INVALID: InvalidRequest, lib.LOCALAI_ERR_LOAD: ModelLoadError,
           lib.LOCALAI_ERR_GRAMMAR: GrammarError}


def _check(status: int, what: str = "") -> int:
    return check_status(status, what, last_error, _ERRORS)


def apply_log_level() -> None:
    """Point ggml and llama.cpp at the process's log sink with the configured level."""
    lib.localai_set_log_level(native_log_level())


apply_log_level()


def max_parallel_sequences() -> int:
    """The most sequences one llama context can hold."""
    return int(lib.localai_max_parallel_sequences())


def backend_init() -> None:
    """Initialise llama.cpp once per process (idempotent, thread-safe)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            lib.localai_backend_init()
            _initialised = True


def system_info() -> str:
    """llama.cpp's description of the CPU features the build uses (e.g. ``AVX2 = 1``)."""
    return ffi.string(lib.localai_system_info()).decode()


def ggml_version() -> str:
    return ffi.string(lib.localai_ggml_version()).decode()


def _load_split(path: str, use_mmap: bool, use_mlock: bool, split: Split):
    names = [ffi.new("char[]", e.encode()) for e in split.endpoints]
    endpoints = ffi.new("const char *[]", names)
    options = ffi.new("struct localai_model_split *")
    options.endpoints = endpoints
    options.n_endpoints = len(names)
    options.n_gpu_layers = split.gpu_layers
    weights = ffi.new("float[]", list(split.tensor_split)) if split.tensor_split else ffi.NULL
    options.tensor_split = weights
    options.n_tensor_split = len(split.tensor_split)
    return lib.localai_model_load_split(path.encode(), use_mmap, use_mlock, options)


# ---- ggml RPC ---------------------------------------------------------------------------------------

def rpc_available() -> bool:
    """Whether this build has ggml's RPC backend (`build.py --no-rpc` leaves it out)."""
    return bool(lib.localai_rpc_available())


def rpc_serve(endpoint: str, *, cache_dir: str | None = None, threads: int = 0) -> None:
    """Serve this machine's CPU to ggml RPC clients on "host:port"; returns only by raising."""
    backend_init()
    cache = ffi.new("char[]", cache_dir.encode()) if cache_dir else ffi.NULL
    _check(lib.localai_rpc_serve(endpoint.encode(), cache, threads or default_threads()), "RPC server")


@dataclass(frozen=True)
class RpcServer:
    endpoint: str
    devices: int  # 0: it does not answer
    free_bytes: int
    total_bytes: int


def rpc_add_server(endpoint: str) -> RpcServer:
    """Connect to a ggml RPC server and register its devices (once per endpoint and process)."""
    backend_init()
    free, total = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    devices = _check(lib.localai_rpc_add_server(endpoint.encode(), free, total), "RPC server")
    return RpcServer(endpoint, devices, free[0], total[0])


@dataclass(frozen=True)
class Split:
    """Layers on RPC servers: the last ``gpu_layers`` (-1: all) on their devices, shared by
    ``tensor_split`` (a weight per device) or, without it, by their free memory."""

    endpoints: tuple[str, ...]
    gpu_layers: int = -1
    tensor_split: tuple[float, ...] = ()


class Model(NativeHandle):
    """A GGUF model loaded into memory (or split between this process and RPC servers)."""

    _free = staticmethod(lib.localai_model_free)

    def __init__(self, path: str | os.PathLike, *, use_mmap: bool = True, use_mlock: bool = False,
                 vocab_only: bool = False, split: Split | None = None) -> None:
        backend_init()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        if split is not None:
            ptr = _load_split(path, use_mmap, use_mlock, split)
        else:
            ptr = lib.localai_model_load(path.encode(), use_mmap, use_mlock, vocab_only)
        require(ptr != ffi.NULL, last_error() or f"llama.cpp could not load the model {path}", ModelLoadError)
        self._ptr = ptr
        self.path = path
        info = ffi.new("struct localai_model_info *")
        _check(lib.localai_model_info(ptr, info), "model info")
        self.n_vocab = info.n_vocab
        self.n_ctx_train = info.n_ctx_train
        self.n_embd = info.n_embd
        self.n_embd_out = info.n_embd_out  # what pooled embeddings have
        self.bos, self.eos = info.bos, info.eos
        # fill-in-the-middle tokens (prefix, suffix, middle); -1 where the model has none
        self.fim = (info.fim_pre, info.fim_suf, info.fim_mid)
        self.has_encoder, self.has_decoder = bool(info.has_encoder), bool(info.has_decoder)
        self.is_recurrent = bool(info.is_recurrent)
        self.n_swa = info.n_swa
        self._piece_cache: dict[int, bytes] = {}

    @staticmethod
    def _text(call) -> str | None:
        """Text a C call writes into a buffer it is given; None when it answers -1 (absent)."""
        size = 256
        while True:
            buf = ffi.new("char[]", size)
            n = call(buf, size)
            if n == -1:
                return None
            if _check(n, "model metadata") < size:
                return ffi.string(buf).decode(errors="replace")
            size = n + 1

    def description(self) -> str:
        return self._text(lambda buf, size: lib.localai_model_desc(self._live(), buf, size)) or ""

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None when absent."""
        return self._text(lambda buf, size: lib.localai_model_meta(self._live(), key.encode(), buf, size))

    def chat_template(self) -> str | None:
        ptr = lib.localai_model_chat_template(self._live())
        return None if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")

    def pooling_type(self) -> int:
        value = self.meta(f"{self.meta('general.architecture')}.pooling_type")
        return int(value) if value is not None else POOLING_NONE

    def tokenize(self, text: str | bytes, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
        capacity = len(data) + 8
        count = ffi.new("int32_t *")
        for _ in range(2):
            buf = ffi.new("llama_token[]", capacity)
            _check(lib.localai_tokenize(self._live(), data, len(data), buf, capacity, add_special, parse_special,
                                        count), "tokenize")
            if count[0] >= 0:
                return list(ffi.unpack(buf, count[0]))
            capacity = -count[0]
        raise NativeError("llama_tokenize failed")

    def token_to_piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character)."""
        key = token if not special else ~token
        piece = self._piece_cache.get(key)
        if piece is None:
            size, count = 64, ffi.new("int32_t *")
            for _ in range(2):
                buf = ffi.new("char[]", size)
                _check(lib.localai_token_to_piece(self._live(), token, buf, size, special, count), "token_to_piece")
                if count[0] >= 0:
                    break
                size = -count[0]
            piece = ffi.unpack(buf, max(count[0], 0))
            self._piece_cache[key] = piece
        return piece

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.token_to_piece(t, special=special) for t in tokens).decode(errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(_check(lib.localai_token_is_eog(self._live(), token), "is_eog"))

    @functools.cached_property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token of the vocabulary."""
        return tuple(t for t in range(self.n_vocab) if self.is_eog(t))

    @functools.cached_property
    def control_texts(self) -> tuple[str, ...]:
        """The texts llama.cpp reads as control tokens (role markers, BOS/EOS...) when it parses
        special tokens, longest first."""
        control = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN
        texts = {self.token_text(t) for t in range(self.n_vocab)
                 if _check(lib.localai_token_attr(self._live(), t), "token_attr") & control}
        return tuple(sorted((t for t in texts if t), key=len, reverse=True))

    def token_text(self, token: int) -> str:
        ptr = lib.localai_token_text(self._live(), token)
        return "" if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")


class Batch(NativeHandle):
    """A reusable llama_batch for up to ``capacity`` tokens across sequences."""

    _free = staticmethod(lib.localai_batch_free)

    def __init__(self, capacity: int) -> None:
        ptr = lib.localai_batch_new(capacity)
        require(ptr != ffi.NULL, last_error() or "could not allocate a batch", NativeError)
        self._ptr = ptr
        self.capacity = capacity
        self._one = ffi.new("llama_token[1]")  # reused for the common one-token add

    @property
    def n_tokens(self) -> int:
        return lib.localai_batch_size(self._live())

    def clear(self) -> None:
        lib.localai_batch_clear(self._live())

    def add(self, tokens: Sequence[int], pos0: int, seq_id: int, logits_last: bool, *,
            logits_all: bool = False) -> int:
        """Append tokens of one sequence; returns the batch index of the last one. Logits are
        kept for the last token (``logits_last``) or for every one (``logits_all``)."""
        n = len(tokens)
        if n == 1:
            arr = self._one
            arr[0] = tokens[0]
        else:
            arr = ffi.new("llama_token[]", list(tokens))
        outputs = 2 if logits_all else 1 if logits_last else 0
        return _check(lib.localai_batch_add(self._live(), self.capacity, arr, n, pos0, seq_id, outputs), "batch")


class Context(NativeHandle):
    """An inference context: KV cache for up to ``n_seq_max`` parallel sequences, with its own
    persistent thread pool."""

    _free = staticmethod(lib.localai_context_free)

    def __init__(self, model: Model, *, n_ctx: int = 0, n_batch: int = 512, n_ubatch: int | None = None,
                 n_seq_max: int = 1, n_threads: int | None = None, embeddings: bool = False,
                 pooling: int | None = None, kv_unified: bool = False) -> None:
        params = ffi.new("struct localai_context_params *")
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch or min(n_batch, 512)
        params.n_seq_max = n_seq_max
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.embeddings = embeddings
        params.pooling_type = POOLING_UNSPECIFIED if pooling is None else pooling
        params.kv_unified = kv_unified
        ptr = lib.localai_context_new(model._live(), params)
        require(ptr != ffi.NULL, last_error() or "llama.cpp could not create a context (out of memory?)",
                ModelLoadError)
        self._ptr = ptr
        self.model = model
        info = ffi.new("struct localai_context_info *")
        _check(lib.localai_context_info(ptr, info), "context info")
        self.n_ctx, self.n_batch, self.n_seq_max = info.n_ctx, info.n_batch, info.n_seq_max
        self.n_threads = threads
        self._decode_status = ffi.new("int32_t *")

    def decode(self, batch: Batch) -> None:
        """Run the model over the batch; the GIL is released while C works."""
        status = lib.localai_decode(self._live(), batch._live(), self._decode_status)
        if status == lib.LOCALAI_ERR_DECODE:
            raise DecodeError(self._decode_status[0])
        _check(status, "decode")

    def logits(self, index: int) -> np.ndarray:
        """Logits of the batch position ``index`` (a copy-free view valid until the next decode)."""
        ptr = lib.localai_logits(self._live(), index)
        require(ptr != ffi.NULL, last_error() or f"no logits for batch index {index}")
        return np.frombuffer(ffi.buffer(ptr, self.model.n_vocab * 4), dtype=np.float32)

    def embeddings_seq(self, seq_id: int) -> np.ndarray:
        out = np.empty(self.model.n_embd_out, dtype=np.float32)
        _check(lib.localai_embeddings_seq(self._live(), seq_id, ffi.from_buffer("float[]", out), out.size),
               "embeddings")
        return out

    def embeddings_ith(self, index: int) -> np.ndarray:
        out = np.empty(self.model.n_embd, dtype=np.float32)
        _check(lib.localai_embeddings_ith(self._live(), index, ffi.from_buffer("float[]", out), out.size),
               "embeddings")
        return out

    # ---- KV memory per sequence ----
    def seq_remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(_check(lib.localai_seq_rm(self._live(), seq_id, p0, p1), "seq_rm"))

    def seq_pos_max(self, seq_id: int) -> int:
        """The last position held for the sequence; -1 when it holds none."""
        value = lib.localai_seq_pos_max(self._live(), seq_id)
        return value if value >= -1 else _check(value, "seq_pos_max")

    def memory_clear(self) -> None:
        _check(lib.localai_memory_clear(self._live()), "memory_clear")

    def seq_state(self, seq_id: int, scratch: np.ndarray | None = None) -> np.ndarray:
        """The KV cells of one sequence in llama.cpp's sequence-state format, as a uint8 array
        (what ``set_seq_state`` restores), written into ``scratch`` when it is large enough (a
        reused buffer: fresh pages cost more to fault in than the copy itself)."""
        size = lib.localai_seq_state_size(self._live(), seq_id)
        out = scratch if scratch is not None and scratch.size >= size else np.empty(max(size, 1), dtype=np.uint8)
        written = lib.localai_seq_state_get(self._live(), seq_id, ffi.from_buffer("uint8_t[]", out), size)
        if written != size:
            raise NativeError(last_error() or f"could not save sequence {seq_id}")
        return out[:size]

    def set_seq_state(self, seq_id: int, state: bytes | np.ndarray) -> None:
        """Load a sequence state into ``seq_id`` (its cells are replaced)."""
        if lib.localai_seq_state_set(self._live(), seq_id, ffi.from_buffer("uint8_t[]", state), len(state)) == 0:
            raise NativeError(last_error() or f"could not restore sequence {seq_id}")


class SamplingDone(NativeError):
    """The sequence cannot continue: ``complete`` when its grammar is finished but
    end-of-generation is banned, else no token satisfies its constraints."""

    def __init__(self, message: str, *, complete: bool):
        super().__init__(message)
        self.complete = complete


class Sampler(NativeHandle):
    """One sequence's sampling: biases, penalties, truncation, temperature, grammar (in C).

    Built from validated ``SamplingParams`` where the request is admitted, so a value C cannot
    take is refused there, not in the scheduler thread."""

    _free = staticmethod(lib.localai_sampler_free)

    def __init__(self, model: Model, params: SamplingParams, *, context_size: int | None = None) -> None:
        p = ffi.new("struct localai_sampling *")
        p.temperature = params.temperature
        p.top_p = params.top_p
        p.top_k = params.top_k
        p.min_p = params.min_p
        p.typical_p = params.typical_p
        p.repeat_penalty = params.repeat_penalty
        # llama.cpp reads -1 as "off"; OpenAI-style clients mean "the whole context"
        last_n = params.repeat_last_n
        p.repeat_last_n = (context_size or model.n_ctx_train) if last_n < 0 else last_n
        p.presence_penalty = params.presence_penalty
        p.frequency_penalty = params.frequency_penalty
        p.seed = lib.localai_default_seed() if params.seed is None else params.seed & _U32
        keep = []
        if params.logit_bias:
            biases = ffi.new("llama_logit_bias[]", len(params.logit_bias))
            for i, (tok, bias) in enumerate(params.logit_bias.items()):
                biases[i].token, biases[i].bias = tok, bias
            p.n_logit_bias, p.logit_bias = len(params.logit_bias), biases
            keep.append(biases)
        if params.grammar:
            grammar = ffi.new("char[]", params.grammar.encode())
            p.grammar = grammar
            keep.append(grammar)
        status = ffi.new("int32_t *")
        ptr = lib.localai_sampler_new(model._live(), p, status)
        if ptr == ffi.NULL:
            _check(status[0] if status[0] < 0 else lib.LOCALAI_ERR_EXCEPTION, "sampler")
        self._ptr = ptr
        self._token = ffi.new("llama_token *")

    def prime(self, tokens: Sequence[int]) -> None:
        """Count tokens the sequence already holds (its prompt) in the penalties' history."""
        if tokens:
            arr = ffi.new("llama_token[]", list(tokens))
            _check(lib.localai_sampler_prime(self._live(), arr, len(tokens)), "sampler")

    def sample(self, ctx: Context, index: int) -> int:
        """Sample (and accept) the next token from the logits at batch ``index``; raises
        ``SamplingDone`` when the constraints leave no token."""
        status = lib.localai_sampler_sample(self._live(), ctx._live(), index, self._token)
        if status == lib.LOCALAI_OK:
            return self._token[0]
        if status == lib.LOCALAI_GRAMMAR_COMPLETE:
            raise SamplingDone("the grammar is complete and end-of-generation is banned", complete=True)
        if status == lib.LOCALAI_ERR_NO_CANDIDATE:
            raise SamplingDone(last_error(), complete=False)
        _check(status, "sampling")
        raise NativeError(f"sampling returned status {status}")
