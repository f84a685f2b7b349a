"""Typed wrappers over localai_whisper, our guarded C API on whisper.cpp (``_whisper_cffi``).

The model (weights, vocabulary) is loaded once without a decoding state; each
``WhisperState`` holds what one transcription mutates (KV caches, mel, results). Many
states may transcribe over one model at the same time, each from its own thread (cffi
releases the GIL during the call). A single state is not safe for concurrent use: callers
hand each running transcription its own. Every call goes through
native/whisper.cpp/localai_whisper.h, which turns C++ exceptions into statuses.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from localai.bindings import NativeHandle, check_status, default_threads, load_native
from localai.bindings import llama as _llama
from localai.capabilities import Segment, Token, Transcript, Word
from localai.errors import InvalidRequest, ModelLoadError, NativeError

_native = load_native("_whisper_cffi")
ffi, lib = _native.ffi, _native.lib

SAMPLE_RATE = 16000
_llama.apply_log_level()
lib.localai_whisper_use_log_sink()  # whisper.cpp logs through the process's one sink

_ERRORS = {lib.LOCALAI_WHISPER_ERR_INVALID: InvalidRequest, lib.LOCALAI_WHISPER_ERR_LOAD: ModelLoadError}


class Cancelled(NativeError):
    """The transcription was cancelled while it ran."""


def last_error() -> str:
    return ffi.string(lib.localai_whisper_last_error()).decode(errors="replace")


def _check(status: int, what: str = "") -> int:
    if status == lib.LOCALAI_WHISPER_CANCELLED:
        raise Cancelled(last_error() or "the transcription was cancelled")
    return check_status(status, what, last_error, _ERRORS)


def _string(ptr) -> str | None:
    return None if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")


def system_info() -> str:
    return _string(lib.localai_whisper_system_info()) or ""


def version() -> str:
    return _string(lib.localai_whisper_version()) or ""


def language_name(lang_id: int) -> str | None:
    """whisper's full language name ("english") of a language id."""
    return _string(lib.localai_whisper_lang_name(lang_id))


def language_code(lang_id: int) -> str | None:
    """ISO 639-1 code ("en") of a language id."""
    return _string(lib.localai_whisper_lang_code(lang_id))


@functools.cache
def _language_ids() -> dict[str, int]:
    """Every code and full name whisper knows, lowercase, to its id (looked up here rather than
    by whisper_lang_id, which logs an error for every unknown name)."""
    ids: dict[str, int] = {}
    for lang_id in range(_check(lib.localai_whisper_lang_max_id()) + 1):
        for name in (language_code(lang_id), language_name(lang_id)):
            if name:
                ids.setdefault(name.lower(), lang_id)
    return ids


def language_id(code: str) -> int:
    """Language id of an ISO 639-1 code or a full name ("en", "English"); -1 when unknown."""
    return _language_ids().get(code.strip().lower(), -1) if code else -1


@dataclass(frozen=True)
class DecodeOptions:
    """How whisper decodes; the defaults are whisper-cli's: a 5-beam search, and on a failed window
    (entropy or log-probability threshold) a retry at a higher temperature."""

    beam_size: int = 5  # > 1: beam search of that width; 1: greedy (faster, less accurate)
    best_of: int = 5  # candidates sampled per fallback temperature
    temperature: float = 0.0
    temperature_increment: float = 0.2  # 0: no fallback
    entropy_threshold: float = 2.4  # whisper.cpp's stand-in for the compression-ratio threshold
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6


class WhisperModel(NativeHandle):
    """A loaded whisper.cpp model (weights + vocabulary), shared by any number of states."""

    _free = staticmethod(lib.localai_whisper_free)

    def __init__(self, path: str | os.PathLike, *, flash_attn: bool = True) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        ptr = lib.localai_whisper_load(path.encode(), flash_attn)
        if ptr == ffi.NULL:
            raise ModelLoadError(last_error() or f"whisper.cpp could not load the model {path}")
        self._ptr = ptr
        self.path = path
        info = ffi.new("struct localai_whisper_model_info *")
        _check(lib.localai_whisper_info(ptr, info), "model info")
        self.multilingual = bool(info.multilingual)
        self.n_vocab = info.n_vocab
        self.n_text_ctx = info.n_text_ctx
        self.token_eot = info.token_eot
        self.token_beg = info.token_beg
        self._states: list[WhisperState] = []  # closed before the model

    def close(self) -> None:
        for state in list(getattr(self, "_states", ())):  # the states first: they use the model
            state.close()
        super().close()

    def new_state(self) -> "WhisperState":
        """A fresh decoding state (KV caches and compute buffers) over this model."""
        return WhisperState(self)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        capacity = len(data) + 8
        count = ffi.new("int32_t *")
        for _ in range(2):
            buf = ffi.new("whisper_token[]", capacity)
            _check(lib.localai_whisper_tokenize(self._live(), data, buf, capacity, count), "tokenize")
            if count[0] >= 0:
                return list(ffi.unpack(buf, count[0]))
            capacity = -count[0]
        raise NativeError("whisper_tokenize failed")

    def transcribe(self, audio: np.ndarray, *, state: "WhisperState | None" = None, **options) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (``WhisperState.transcribe``'s options).

        ``state``: the decoding state to use; without one, a fresh state made for this call
        (a reused state remembers earlier runs: see ``WhisperState``).
        """
        if state is not None:
            return state.transcribe(audio, **options)
        fresh = self.new_state()
        try:
            return fresh.transcribe(audio, **options)
        finally:
            fresh.close()


class WhisperState(NativeHandle):
    """One decoding state of a model: run one transcription at a time on it.

    A state is not stateless between runs: whisper.cpp seeds its first decoder's sampler once,
    when the state is made, and a beam search on a reused state can pick other words than on
    a fresh one (seen on tiny.en: "brown fox" after earlier runs, "round fox" fresh, as
    whisper-cli, which makes one state per run, prints). For results that depend only on the
    request, transcribe on a fresh state."""

    _free = staticmethod(lib.localai_whisper_state_free)

    def __init__(self, model: WhisperModel) -> None:
        ptr = lib.localai_whisper_state_new(model._live())
        if ptr == ffi.NULL:
            raise ModelLoadError(last_error() or "whisper.cpp could not allocate a decoding state (out of memory?)")
        self._ptr = ptr
        self.model = model
        model._states.append(self)

    def close(self) -> None:
        if not self.closed:
            super().close()
            if self in self.model._states:
                self.model._states.remove(self)

    def transcribe(self, audio: np.ndarray, *, n_threads: int = 0, language: str | None = None,
                   translate: bool = False, prompt: str | None = None, word_timestamps: bool = False,
                   decoding: DecodeOptions = DecodeOptions(), cancel=None,
                   on_segments: Callable[[list[Segment]], None] | None = None) -> Transcript:
        """``language`` None or "auto": English for English-only models, detected otherwise.
        ``cancel``: an ``int32_t *`` from ``cancel_flag()``; setting it to 1 stops the run
        (``Cancelled``). ``on_segments``: called on this thread with each batch of segments as
        soon as whisper.cpp has finished them (an exception it raises cancels the run and is
        raised here)."""
        model = self.model
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise NativeError("whisper expects mono audio (a 1-D array)")
        options = ffi.new("struct localai_whisper_options *")
        options.n_threads = n_threads or default_threads()
        keep = []  # C strings must outlive the call
        if language is None or language == "auto":
            lang = ffi.new("char[]", b"auto" if model.multilingual else b"en")
        else:
            lang = ffi.new("char[]", language.encode())
        keep.append(lang)
        options.language = lang
        options.translate = translate
        if prompt:
            text = ffi.new("char[]", prompt.encode("utf-8", errors="replace"))
            keep.append(text)
            options.initial_prompt = text
        options.token_timestamps = word_timestamps
        options.beam_size = decoding.beam_size
        options.best_of = decoding.best_of
        options.temperature = decoding.temperature
        options.temperature_inc = decoding.temperature_increment
        options.entropy_thold = decoding.entropy_threshold
        options.logprob_thold = decoding.logprob_threshold
        options.no_speech_thold = decoding.no_speech_threshold
        if cancel is None and on_segments is not None:
            cancel = cancel_flag()  # a failing callback stops the run through it
        if cancel is not None:
            options.cancel = cancel
        sink = None
        if on_segments is not None:
            sink = _SegmentSink(self, on_segments, word_timestamps, cancel)
            handle = ffi.new_handle(sink)
            keep.append(handle)
            options.on_segments = lib.localai_whisper_py_segments
            options.on_segments_user = handle
        try:
            _check(lib.localai_whisper_transcribe(model._live(), self._live(), options,
                                                  ffi.from_buffer("float[]", samples), len(samples)),
                   "transcription")
        except Cancelled:
            if sink is not None and sink.error is not None:
                raise sink.error from None
            raise
        return self._results(word_timestamps, language, sink.segments if sink is not None else [])

    def _segment(self, i: int, seek: int, word_timestamps: bool) -> Segment:
        """Segment ``i`` of the last transcription; ``seek``: the previous segment's window."""
        ctx, state = self.model._live(), self._live()
        eot, beg = self.model.token_eot, self.model.token_beg
        segment, data = ffi.new("struct localai_whisper_segment *"), ffi.new("struct localai_whisper_token *")
        _check(lib.localai_whisper_segment(state, i, segment), "segment")
        t0 = segment.t0
        seg = Segment(start=t0 / 100.0, end=segment.t1 / 100.0, text=_string(segment.text) or "",
                      no_speech_prob=segment.no_speech_prob)
        for j in range(segment.n_tokens):
            _check(lib.localai_whisper_token(ctx, state, i, j, data), "token")
            is_timestamp = data.id >= beg
            if data.id >= eot and not is_timestamp:
                continue  # <|startoftranscript|>, language, task and other control tokens
            if is_timestamp and not seg.tokens:
                # The first segment of a window opens with a timestamp token relative to
                # the window: t0 = seek + 2 * (token - beg) in 10 ms frames.
                seek = max(0, t0 - 2 * (data.id - beg))
            piece = ffi.string(data.text) if data.text != ffi.NULL else b""
            seg.tokens.append(Token(id=data.id, text=piece, logprob=data.plog, probability=data.p,
                                    start=data.t0 / 100.0, end=data.t1 / 100.0, is_timestamp=is_timestamp))
        seg.seek = seek
        if word_timestamps:
            seg.words = _words(seg.tokens)
        return seg

    def _results(self, word_timestamps: bool, language: str | None, read: list[Segment]) -> Transcript:
        """The last transcription's segments: ``read`` already (by the segment callback), the rest
        read now."""
        state = self._live()
        lang_id = lib.localai_whisper_lang_id(state)
        segments = list(read)
        for i in range(len(segments), _check(lib.localai_whisper_n_segments(state), "segments")):
            segments.append(self._segment(i, segments[-1].seek if segments else 0, word_timestamps))
        code = language_code(lang_id) if lang_id >= 0 else None
        return Transcript(language=code or language, segments=segments)


class _SegmentSink:
    """What the native segment callback reaches: reads the new segments, keeps them (they are
    the transcript's: ``_results`` does not read them again) and hands them on."""

    def __init__(self, state: WhisperState, deliver: Callable[[list[Segment]], None], word_timestamps: bool,
                 cancel) -> None:
        self.state, self.deliver, self.word_timestamps, self.cancel = state, deliver, word_timestamps, cancel
        self.segments: list[Segment] = []
        self.error: BaseException | None = None

    def __call__(self, n_new: int) -> None:  # (the segments not read yet: n_new of them)
        if self.error is not None:
            return
        try:
            total = _check(lib.localai_whisper_n_segments(self.state._live()), "segments")
            first = len(self.segments)
            for i in range(first, total):
                seek = self.segments[-1].seek if self.segments else 0
                self.segments.append(self.state._segment(i, seek, self.word_timestamps))
            self.deliver(self.segments[first:])
        except BaseException as exc:  # never into the C frames: stop the run and raise it there
            self.error = exc
            self.cancel[0] = 1


@ffi.def_extern()
def localai_whisper_py_segments(user, n_new):
    ffi.from_handle(user)(n_new)


def cancel_flag():
    """A flag a running transcription polls: set ``flag[0] = 1`` to stop it."""
    return ffi.new("int32_t *")


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
