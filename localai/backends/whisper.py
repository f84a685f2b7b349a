"""The whisper backend: speech to text with whisper.cpp, one loaded model, a pool of decoding states.

The weights are loaded once per model. Every transcription runs on a decoding state of its
own (``whisper_full_with_state``), taken from a pool: concurrent requests never share
mutable state, and a state is reused (not reallocated) by the next request. The pool is
bounded so concurrent transcriptions do not oversubscribe the CPU: by default as many run
at once as ``threads`` fit in the cores (one when a transcription uses every core); the
model YAML's ``parallel`` overrides it. Further requests wait their turn.

Transcriptions run on the engine's own long-lived worker threads, never on the HTTP
threads: the pool's size is what bounds how many run at once, and an HTTP thread only waits
for its result.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

import numpy as np

from localai.bindings import default_threads
from localai.bindings import whisper as W
from localai.capabilities import Transcript
from localai.config import ModelConfig
from localai.errors import ConfigError, InvalidRequest, ModelLoadError, ModelUnloaded, RequestTimedOut
from localai.settings import Settings

log = logging.getLogger("localai.whisper")


class WhisperEngine:
    def __init__(self, model: W.WhisperModel, *, name: str, n_threads: int, max_parallel: int) -> None:
        self.model = model
        self.name = name
        self.n_threads = n_threads
        self.max_parallel = max(1, max_parallel)
        self._idle: list[W.WhisperState] = [model.new_state()]  # the first request pays no allocation
        self._lock = threading.Lock()
        self._closed = False
        # At most max_parallel transcriptions at once, each on a persistent worker thread.
        self._workers = ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix=f"whisper-{name}")

    @property
    def multilingual(self) -> bool:
        return self.model.multilingual

    # ---- request validation (kept here so the API layer never touches the bindings) ----
    def language(self, requested: str | None) -> str | None:
        """The ISO 639-1 code of a requested language ("en", "English", "EN"), None for auto."""
        if requested is None or not requested.strip() or requested.strip().lower() == "auto":
            return None
        code = requested.strip().lower()
        lang_id = W.language_id(code)
        if lang_id < 0:
            raise InvalidRequest(f"Language '{requested}' is not supported; use an ISO-639-1 code such as 'en'.",
                                 param="language", code="unsupported_language")
        code = W.language_code(lang_id)
        if code != "en" and not self.multilingual:
            raise InvalidRequest(f"The model `{self.name}` is English-only; it cannot transcribe language "
                                 f"'{requested}'. Use a multilingual whisper model.", param="language",
                                 code="unsupported_language")
        return code

    @staticmethod
    def language_name(code: str | None) -> str:
        """whisper's full lowercase name of a language code ("english"), as OpenAI reports it."""
        lang_id = W.language_id(code) if code else -1
        return (W.language_name(lang_id) if lang_id >= 0 else None) or "english"

    def check_translate(self) -> None:
        if not self.multilingual:
            raise InvalidRequest(f"The model `{self.name}` is English-only and cannot translate; use a "
                                 "multilingual whisper model (one without `.en` in its name).", param="model",
                                 code="model_not_multilingual")

    def check_prompt(self, prompt: str | None) -> None:
        """400 for a prompt longer than whisper reads (half its text context: 224 tokens, OpenAI's limit)."""
        if not prompt:
            return
        limit = self.model.n_text_ctx // 2
        n = len(self.model.tokenize(prompt))
        if n > limit:
            raise InvalidRequest(f"The prompt has {n} tokens; whisper reads at most {limit}.", param="prompt")

    # ---- transcription ----
    def transcribe(self, audio: np.ndarray, *, language: str | None = None, translate: bool = False,
                   prompt: str | None = None, temperature: float = 0.0, word_timestamps: bool = False,
                   abandoned: Callable[[], bool] | None = None, deadline: float | None = None) -> Transcript:
        """Transcribe (or translate to English) 16 kHz mono float32 audio on a pooled state."""
        if translate:
            self.check_translate()
        self.check_prompt(prompt)
        cancel = W.cancel_flag()
        try:
            job = self._workers.submit(self._run, audio, dict(
                n_threads=self.n_threads, language=language, translate=translate, prompt=prompt,
                decoding=W.DecodeOptions(temperature=temperature), word_timestamps=word_timestamps, cancel=cancel))
        except RuntimeError:  # submit after shutdown
            raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)") from None
        stopped_by = None  # "client" or "timeout", once the running transcription is told to stop
        while True:
            try:
                return job.result(timeout=0.25)
            except FutureTimeout:
                if stopped_by is None:
                    if abandoned is not None and abandoned():
                        stopped_by = "client"
                    elif deadline is not None and time.monotonic() > deadline:
                        stopped_by = "timeout"
                    if stopped_by is not None:
                        cancel[0] = 1  # whisper.cpp polls it
                        job.cancel()  # and if it has not started, it never will
            except (CancelledError, W.Cancelled):
                if stopped_by is None:  # the pool was shut down under it
                    raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)") \
                        from None
                break
        if stopped_by == "timeout":
            raise RequestTimedOut("The transcription took longer than this server's --request-timeout; send "
                                  "shorter audio.")
        raise InvalidRequest("The client went away; the transcription was cancelled.")

    def _run(self, audio: np.ndarray, options: dict) -> Transcript:
        """On a worker thread: transcribe on an idle state (there are never more workers than states)."""
        with self._lock:
            if self._closed:
                raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
            state = self._idle.pop() if self._idle else None
        if state is None:
            state = self.model.new_state()
        try:
            return state.transcribe(audio, **options)
        finally:
            with self._lock:
                self._idle.append(state)

    def close(self) -> None:
        """Finish running transcriptions, fail queued ones, then free the states and the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._idle.clear()
        self.model.close()  # frees every state of the model first


def load(config: ModelConfig, settings: Settings, shared: object = None) -> WhisperEngine:
    """The backend factory the registry calls for ``backend: whisper``."""
    path = config.model_path(settings.models_path)
    if path is None:
        raise ConfigError(f"{config.name}: parameters.model is required for the whisper backend")
    if not path.is_file():
        raise ModelLoadError(f"{config.name}: model file {path.name} is not in {settings.models_path}; "
                             "run `python3 build.py run` to install the default models")
    cores = default_threads()
    n_threads = config.threads or settings.threads or cores
    max_parallel = config.parallel or max(1, cores // n_threads)
    model = W.WhisperModel(path)
    try:
        engine = WhisperEngine(model, name=config.name, n_threads=n_threads, max_parallel=max_parallel)
    except BaseException:
        model.close()
        raise
    log.info("whisper model %s loaded (%s, %d threads, %d at once)", config.name,
             "multilingual" if model.multilingual else "English-only", n_threads, engine.max_parallel)
    return engine
