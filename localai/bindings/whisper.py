"""Typed wrappers over libwhisper (via the compiled ``_whisper_cffi`` module)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from localai.bindings import load_native
from localai.errors import ModelLoadError, NativeError

_native = load_native("_whisper_cffi")
ffi, lib = _native.ffi, _native.lib

SAMPLE_RATE = lib.WHISPER_SAMPLE_RATE if hasattr(lib, "WHISPER_SAMPLE_RATE") else 16000
_log_once = threading.Lock()
_log_set = False


def _quiet_logs() -> None:
    global _log_set
    with _log_once:
        if not _log_set:
            level = os.environ.get("LOCALAI_NATIVE_LOG", "warn")
            lib.localai_whisper_set_log_level({"debug": lib.GGML_LOG_LEVEL_DEBUG, "info": lib.GGML_LOG_LEVEL_INFO,
                                               "error": lib.GGML_LOG_LEVEL_ERROR}.get(level, lib.GGML_LOG_LEVEL_WARN))
            _log_set = True


def system_info() -> str:
    return ffi.string(lib.whisper_print_system_info()).decode()


def version() -> str:
    return ffi.string(lib.whisper_version()).decode()


def language_name(lang_id: int) -> str | None:
    ptr = lib.whisper_lang_str_full(lang_id)
    return None if ptr == ffi.NULL else ffi.string(ptr).decode()


def language_code(lang_id: int) -> str | None:
    ptr = lib.whisper_lang_str(lang_id)
    return None if ptr == ffi.NULL else ffi.string(ptr).decode()


def language_id(code: str) -> int:
    return lib.whisper_lang_id(code.encode())


@dataclass
class Word:
    text: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    start: float  # seconds
    end: float
    text: str
    no_speech_prob: float = 0.0
    tokens: list[int] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcript:
    language: str | None
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class WhisperModel:
    """A whisper.cpp context: the model plus one decoding state (not safe for concurrent use)."""

    def __init__(self, path: str | os.PathLike, *, use_gpu: bool = False) -> None:
        _quiet_logs()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        params = lib.whisper_context_default_params()
        params.use_gpu = use_gpu
        ptr = lib.whisper_init_from_file_with_params(path.encode(), params)
        if ptr == ffi.NULL:
            raise ModelLoadError(f"whisper.cpp could not load the model {path}")
        self._ptr = ptr
        self.path = path
        self.multilingual = bool(lib.whisper_is_multilingual(ptr))
        self.n_vocab = lib.whisper_n_vocab(ptr)

    def close(self) -> None:
        ptr, self._ptr = self._ptr, ffi.NULL
        if ptr != ffi.NULL:
            lib.whisper_free(ptr)

    def __enter__(self) -> "WhisperModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _live(self):
        if self._ptr == ffi.NULL:
            raise NativeError("WhisperModel is closed")
        return self._ptr

    def tokenize(self, text: str) -> list[int]:
        buf = ffi.new("whisper_token[]", len(text.encode()) + 8)
        n = lib.whisper_tokenize(self._live(), text.encode(), buf, len(buf))
        if n < 0:
            raise NativeError("whisper_tokenize failed")
        return list(ffi.unpack(buf, n))

    def transcribe(self, audio: np.ndarray, *, n_threads: int = 0, language: str | None = None,
                   translate: bool = False, prompt: str | None = None, temperature: float = 0.0,
                   word_timestamps: bool = False, beam_size: int = 0) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. ``language`` None = English for .en models, else detect."""
        ctx = self._live()
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        strategy = lib.WHISPER_SAMPLING_BEAM_SEARCH if beam_size > 1 else lib.WHISPER_SAMPLING_GREEDY
        params = lib.whisper_full_default_params(strategy)
        params.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        params.print_progress = False
        params.print_realtime = False
        params.print_timestamps = False
        params.print_special = False
        params.translate = translate
        params.temperature = temperature
        params.token_timestamps = word_timestamps
        if beam_size > 1:
            params.beam_search.beam_size = beam_size
        keep = []  # C strings must outlive whisper_full
        if language is None or language == "auto":
            if self.multilingual:
                lang = ffi.new("char[]", b"auto")
                params.detect_language = False
            else:
                lang = ffi.new("char[]", b"en")
        else:
            lang = ffi.new("char[]", language.encode())
        keep.append(lang)
        params.language = lang
        if prompt:
            p = ffi.new("char[]", prompt.encode())
            keep.append(p)
            params.initial_prompt = p
        status = lib.whisper_full(ctx, params, ffi.from_buffer("float[]", samples), len(samples))
        if status != 0:
            raise NativeError(f"whisper_full failed with status {status}")
        lang_id = lib.whisper_full_lang_id(ctx)
        segments = []
        eot = lib.whisper_token_eot(ctx)
        for i in range(lib.whisper_full_n_segments(ctx)):
            seg = Segment(
                start=lib.whisper_full_get_segment_t0(ctx, i) / 100.0,
                end=lib.whisper_full_get_segment_t1(ctx, i) / 100.0,
                text=ffi.string(lib.whisper_full_get_segment_text(ctx, i)).decode(errors="replace"),
                no_speech_prob=lib.whisper_full_get_segment_no_speech_prob(ctx, i),
            )
            for j in range(lib.whisper_full_n_tokens(ctx, i)):
                data = lib.whisper_full_get_token_data(ctx, i, j)
                if data.id >= eot:
                    continue  # special and timestamp tokens
                seg.tokens.append(data.id)
                if word_timestamps:
                    piece = ffi.string(lib.whisper_full_get_token_text(ctx, i, j)).decode(errors="replace")
                    seg.words.append(Word(piece, data.t0 / 100.0, data.t1 / 100.0, data.p))
            segments.append(seg)
        return Transcript(language=language_code(lang_id) if lang_id >= 0 else language, segments=segments)
