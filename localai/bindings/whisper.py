"""Typed wrappers over libwhisper (via the compiled ``_whisper_cffi`` module).

The model (weights, vocabulary) is loaded once without a decoding state; each
``WhisperState`` holds what one transcription mutates (KV caches, mel, results). Many
states may run ``whisper_full_with_state`` over one model at the same time, each from its
own thread (cffi releases the GIL during the call). A single state is not safe for
concurrent use: callers hand each running transcription its own.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from localai.bindings import NativeHandle, default_threads, load_native
from localai.bindings import llama as _llama
from localai.capabilities import Segment, Token, Transcript, Word
from localai.errors import ModelLoadError, NativeError

_native = load_native("_whisper_cffi")
ffi, lib = _native.ffi, _native.lib

SAMPLE_RATE = lib.WHISPER_SAMPLE_RATE if hasattr(lib, "WHISPER_SAMPLE_RATE") else 16000
# whisper.cpp logs through the process's one sink (the llama module's), filtered by its level.
lib.whisper_log_set(ffi.cast("ggml_log_callback", _llama.log_sink_address()), ffi.NULL)


def system_info() -> str:
    return ffi.string(lib.whisper_print_system_info()).decode()


def version() -> str:
    return ffi.string(lib.whisper_version()).decode()


def language_name(lang_id: int) -> str | None:
    """whisper's full language name ("english") of a language id."""
    ptr = lib.whisper_lang_str_full(lang_id)
    return None if ptr == ffi.NULL else ffi.string(ptr).decode()


def language_code(lang_id: int) -> str | None:
    """ISO 639-1 code ("en") of a language id."""
    ptr = lib.whisper_lang_str(lang_id)
    return None if ptr == ffi.NULL else ffi.string(ptr).decode()


@functools.cache
def _language_ids() -> dict[str, int]:
    """Every code and full name whisper knows, lowercase, to its id (looked up here rather than
    by whisper_lang_id, which logs an error for every unknown name)."""
    ids: dict[str, int] = {}
    for lang_id in range(lib.whisper_lang_max_id() + 1):
        for name in (language_code(lang_id), language_name(lang_id)):
            if name:
                ids.setdefault(name.lower(), lang_id)
    return ids


def language_id(code: str) -> int:
    """Language id of an ISO 639-1 code or a full name ("en", "English"); -1 when unknown."""
    return _language_ids().get(code.strip().lower(), -1) if code else -1


class WhisperModel(NativeHandle):
    """A loaded whisper.cpp model (weights + vocabulary), shared by any number of states."""

    _free = staticmethod(lib.whisper_free)

    def __init__(self, path: str | os.PathLike, *, use_gpu: bool = False, flash_attn: bool = True) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        params = lib.whisper_context_default_params()
        params.use_gpu = use_gpu
        params.flash_attn = flash_attn
        ptr = lib.whisper_init_from_file_with_params_no_state(path.encode(), params)
        if ptr == ffi.NULL:
            raise ModelLoadError(f"whisper.cpp could not load the model {path}")
        self._ptr = ptr
        self.path = path
        self.multilingual = bool(lib.whisper_is_multilingual(ptr))
        self.n_vocab = lib.whisper_n_vocab(ptr)
        self.token_eot = lib.whisper_token_eot(ptr)
        self.token_beg = lib.whisper_token_beg(ptr)
        self._states: list[WhisperState] = []  # closed before the model
        self._default_state: WhisperState | None = None
        self._default_lock = threading.Lock()

    def close(self) -> None:
        for state in list(getattr(self, "_states", ())):  # the states first: they use the model
            state.close()
        super().close()

    def new_state(self) -> "WhisperState":
        """A fresh decoding state (KV caches and compute buffers) over this model."""
        return WhisperState(self)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = ffi.new("whisper_token[]", len(data) + 8)
        n = lib.whisper_tokenize(self._live(), data, buf, len(buf))
        if n < 0:
            raise NativeError("whisper_tokenize failed")
        return list(ffi.unpack(buf, n))

    def transcribe(self, audio: np.ndarray, *, n_threads: int = 0, language: str | None = None,
                   translate: bool = False, prompt: str | None = None, temperature: float = 0.0,
                   word_timestamps: bool = False, beam_size: int = 0,
                   state: "WhisperState | None" = None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio.

        ``language`` None or "auto": English for English-only models, detected otherwise.
        ``state``: the decoding state to use; without one, the model's own default state is
        used, one call at a time.
        """
        if state is not None:
            return state.transcribe(audio, n_threads=n_threads, language=language, translate=translate,
                                    prompt=prompt, temperature=temperature, word_timestamps=word_timestamps,
                                    beam_size=beam_size)
        with self._default_lock:
            if self._default_state is None or self._default_state.closed:
                self._default_state = self.new_state()
            return self._default_state.transcribe(
                audio, n_threads=n_threads, language=language, translate=translate, prompt=prompt,
                temperature=temperature, word_timestamps=word_timestamps, beam_size=beam_size)


class WhisperState(NativeHandle):
    """One decoding state of a model: run one transcription at a time on it."""

    _free = staticmethod(lib.whisper_free_state)

    def __init__(self, model: WhisperModel) -> None:
        ptr = lib.whisper_init_state(model._live())
        if ptr == ffi.NULL:
            raise ModelLoadError("whisper.cpp could not allocate a decoding state (out of memory?)")
        self._ptr = ptr
        self.model = model
        model._states.append(self)

    def close(self) -> None:
        if not self.closed:
            super().close()
            if self in self.model._states:
                self.model._states.remove(self)

    def transcribe(self, audio: np.ndarray, *, n_threads: int = 0, language: str | None = None,
                   translate: bool = False, prompt: str | None = None, temperature: float = 0.0,
                   word_timestamps: bool = False, beam_size: int = 0) -> Transcript:
        model = self.model
        ctx, state = model._live(), self._live()
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise NativeError("whisper expects mono audio (a 1-D array)")
        strategy = lib.WHISPER_SAMPLING_BEAM_SEARCH if beam_size > 1 else lib.WHISPER_SAMPLING_GREEDY
        params = lib.whisper_full_default_params(strategy)
        params.n_threads = n_threads or default_threads()
        params.print_progress = False
        params.print_realtime = False
        params.print_timestamps = False
        params.print_special = False
        params.no_context = True  # never condition on a previous request's text
        params.translate = translate
        params.temperature = temperature
        params.token_timestamps = word_timestamps
        if beam_size > 1:
            params.beam_search.beam_size = beam_size
        keep = []  # C strings must outlive whisper_full_with_state
        if language is None or language == "auto":
            lang = ffi.new("char[]", b"auto" if model.multilingual else b"en")
        else:
            lang = ffi.new("char[]", language.encode())
        params.detect_language = False  # True would only detect the language and stop
        keep.append(lang)
        params.language = lang
        if prompt:
            text = ffi.new("char[]", prompt.encode())
            keep.append(text)
            params.initial_prompt = text
        status = lib.whisper_full_with_state(ctx, state, params, ffi.from_buffer("float[]", samples), len(samples))
        if status != 0:
            raise NativeError(f"whisper_full failed with status {status}")
        return self._results(word_timestamps, language)

    def _results(self, word_timestamps: bool, language: str | None) -> Transcript:
        ctx, state = self.model._ptr, self._ptr
        eot, beg = self.model.token_eot, self.model.token_beg
        lang_id = lib.whisper_full_lang_id_from_state(state)
        segments: list[Segment] = []
        seek = 0
        for i in range(lib.whisper_full_n_segments_from_state(state)):
            t0 = lib.whisper_full_get_segment_t0_from_state(state, i)
            seg = Segment(
                start=t0 / 100.0,
                end=lib.whisper_full_get_segment_t1_from_state(state, i) / 100.0,
                text=ffi.string(lib.whisper_full_get_segment_text_from_state(state, i)).decode(errors="replace"),
                no_speech_prob=lib.whisper_full_get_segment_no_speech_prob_from_state(state, i),
            )
            for j in range(lib.whisper_full_n_tokens_from_state(state, i)):
                data = lib.whisper_full_get_token_data_from_state(state, i, j)
                is_timestamp = data.id >= beg
                if data.id >= eot and not is_timestamp:
                    continue  # <|startoftranscript|>, language, task and other control tokens
                if is_timestamp and not seg.tokens:
                    # The first segment of a window opens with a timestamp token relative to
                    # the window: t0 = seek + 2 * (token - beg) in 10 ms frames.
                    seek = max(0, t0 - 2 * (data.id - beg))
                piece = ffi.string(lib.whisper_full_get_token_text_from_state(ctx, state, i, j))
                seg.tokens.append(Token(id=data.id, text=piece, logprob=data.plog, probability=data.p,
                                        start=data.t0 / 100.0, end=data.t1 / 100.0, is_timestamp=is_timestamp))
            seg.seek = seek
            if word_timestamps:
                seg.words = _words(seg.tokens)
            segments.append(seg)
        code = language_code(lang_id) if lang_id >= 0 else None
        return Transcript(language=code or language, segments=segments)


def _words(tokens: list[Token]) -> list[Word]:
    """Group text tokens into words: a token starting with a space opens a new word.

    Bytes are joined before decoding, since one character may span two tokens.
    """
    words: list[Word] = []
    pieces: list[bytes] = []
    start = end = 0.0
    probs: list[float] = []

    def flush() -> None:
        text = b"".join(pieces).decode(errors="replace").strip()
        if text:
            words.append(Word(text=text, start=start, end=end, probability=float(np.mean(probs))))

    for token in tokens:
        if token.is_timestamp:
            continue
        if not pieces or token.text.startswith(b" "):
            if pieces:
                flush()
            pieces, probs, start = [], [], token.start
        pieces.append(token.text)
        probs.append(token.probability)
        end = token.end
    if pieces:
        flush()
    return words
