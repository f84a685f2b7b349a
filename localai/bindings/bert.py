"""Typed wrapper over libbert, our batched sentence-embedding library (``_bert_cffi``).

``BertModel`` owns one native context; ``close()`` (or ``with``) frees it, idempotently.
Every failing C call is turned into a ``localai.errors`` class chosen by its status code:
bad input (empty, too long, unknown token ids) raises ``InvalidRequest`` /
``ContextLengthExceeded``, a bad model file ``ModelLoadError``, anything else ``NativeError``.
The GIL is released during every C call, so other threads run while a batch is encoded.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Sequence

import numpy as np

from localai.bindings import NativeHandle, check_status, load_native
from localai.bindings import llama as _llama
from localai.errors import ContextLengthExceeded, InvalidRequest, ModelLoadError, NativeError

_native = load_native("_bert_cffi")
ffi, lib = _native.ffi, _native.lib
_llama.apply_log_level()  # libbert's llama.cpp logs through the process's one sink

POOLING_NAMES = {lib.BERT_POOLING_MEAN: "mean", lib.BERT_POOLING_CLS: "cls", lib.BERT_POOLING_LAST: "last"}


def last_error() -> str:
    return ffi.string(lib.bert_last_error()).decode(errors="replace")


_ERRORS = {lib.BERT_ERR_TOO_LONG: functools.partial(ContextLengthExceeded, param="input"),
           lib.BERT_ERR_EMPTY_INPUT: functools.partial(InvalidRequest, param="input"),
           lib.BERT_ERR_BAD_TOKEN: functools.partial(InvalidRequest, param="input"),
           lib.BERT_ERR_LOAD: ModelLoadError}


def _raise_for(status: int) -> None:
    """Turn a bert_status into the matching package exception (nothing for BERT_OK)."""
    check_status(status, "", last_error, _ERRORS)


def rows_to_json(vectors: np.ndarray) -> list[str]:
    """Each row of a float32 matrix as JSON array text, with enough digits to read back exactly."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError("rows_to_json needs a 2-D array")
    rows, cols = matrix.shape
    if rows == 0:
        return []
    capacity = rows * (cols * 18 + 3)  # "%.9g" is at most 15 characters, plus separators
    buf = ffi.new("char[]", capacity)
    written = lib.localai_rows_to_json(ffi.from_buffer("float[]", matrix), rows, cols, buf, capacity)
    if written < 0:
        raise NativeError("rows_to_json: buffer too small")
    return ffi.unpack(buf, written).decode("ascii").split("\n")


class BertModel(NativeHandle):
    """A GGUF embedding model and its batched encoder.

    ``encode``/``encode_tokens`` may be called from several threads: calls are serialised
    here, because one native context runs one batch at a time.
    """

    def __init__(self, path: str | os.PathLike, *, n_threads: int | None = None, n_batch: int = 0) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        ptr = lib.bert_load_from_file(path.encode(), n_threads or 0, n_batch)
        if ptr == ffi.NULL:
            raise ModelLoadError(last_error() or f"could not load {path}")
        self._ptr = ptr
        self._lock = threading.Lock()  # one encode at a time on the native context
        self._readers = 0  # tokenize calls in flight (they run concurrently, outside _lock)
        self._readers_done = threading.Condition(threading.Lock())
        self.path = path
        self.n_embd: int = lib.bert_n_embd(ptr)
        self.n_max_tokens: int = lib.bert_n_max_tokens(ptr)
        self.n_vocab: int = lib.bert_n_vocab(ptr)
        self.n_batch: int = lib.bert_n_batch(ptr)
        self.n_seq_max: int = lib.bert_n_seq_max(ptr)
        self.n_threads: int = lib.bert_n_threads(ptr)
        self.n_workers: int = lib.bert_n_workers(ptr)
        self.pooling: str = POOLING_NAMES.get(lib.bert_pooling_type(ptr), "mean")

    # ---- lifetime ----
    def close(self) -> None:
        with self._lock:  # never free under a running encode ...
            with self._readers_done:  # ... or a running tokenize
                ptr, self._ptr = self._ptr, None
                self._readers_done.wait_for(lambda: self._readers == 0)
        if ptr:
            lib.bert_free(ptr)

    # ---- tokens ----
    def tokenize(self, text: str) -> list[int]:
        """The tokens the encoder sees for ``text``, special tokens included (thread-safe)."""
        data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else bytes(text)
        if b"\x00" in data:
            raise InvalidRequest("text contains a NUL character", param="input")
        capacity = len(data) + 8
        count = ffi.new("int32_t *")
        with self._readers_done:
            ptr = self._live()
            self._readers += 1
        try:
            while True:
                buf = ffi.new("int32_t[]", capacity)
                status = lib.bert_tokenize(ptr, data, buf, capacity, count)
                if status == lib.BERT_ERR_TOO_LONG and count[0] > capacity:
                    capacity = count[0]
                    continue
                _raise_for(status)
                return list(ffi.unpack(buf, count[0]))
        finally:
            with self._readers_done:
                self._readers -= 1
                self._readers_done.notify_all()

    # ---- encoding ----
    def encode(self, texts: Sequence[str], *, normalize: bool = True) -> tuple[np.ndarray, list[int]]:
        """(embeddings [len(texts), n_embd] float32, token count of each text)."""
        encoded = [t.encode("utf-8", errors="surrogatepass") for t in texts]
        if any(b"\x00" in t for t in encoded):
            raise InvalidRequest("text contains a NUL character", param="input")
        n = len(encoded)
        out = np.empty((n, self.n_embd), dtype=np.float32)
        counts = np.zeros(n, dtype=np.int32)
        if n == 0:
            return out, []
        c_texts = [ffi.new("char[]", t) for t in encoded]  # kept alive for the call
        array = ffi.new("const char *[]", c_texts)
        with self._lock:
            status = lib.bert_encode_batch(self._live(), n, array, ffi.from_buffer("float[]", out),
                                           ffi.from_buffer("int32_t[]", counts), normalize)
        _raise_for(status)
        return out, counts.tolist()

    def encode_tokens(self, inputs: Sequence[Sequence[int]], *, normalize: bool = True) -> np.ndarray:
        """Embeddings [len(inputs), n_embd] of token lists, used exactly as given."""
        n = len(inputs)
        out = np.empty((n, self.n_embd), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(x) for x in inputs), dtype=np.int32, count=n)
        try:
            flat = np.fromiter((t for x in inputs for t in x), dtype=np.int64, count=int(lengths.sum()))
        except (TypeError, ValueError, OverflowError):
            raise InvalidRequest("token ids must be integers", param="input") from None
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_vocab):
            bad = int(flat[(flat < 0) | (flat >= self.n_vocab)][0])
            raise InvalidRequest(f"token id {bad} is outside the vocabulary (0..{self.n_vocab - 1})", param="input")
        tokens = np.ascontiguousarray(flat, dtype=np.int32)
        with self._lock:
            status = lib.bert_encode_tokens_batch(self._live(), n, ffi.from_buffer("int32_t[]", tokens),
                                                  ffi.from_buffer("int32_t[]", lengths),
                                                  ffi.from_buffer("float[]", out), normalize)
        _raise_for(status)
        return out
