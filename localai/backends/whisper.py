"""The whisper backend: speech to text with whisper.cpp, one loaded model, a pool of decoding states.

The weights are loaded once per model. Every transcription runs on a decoding state of its
own (``whisper_full_with_state``), taken from a pool: concurrent requests never share
mutable state, and a used state is replaced by a fresh one after its result is out (a reused
state remembers earlier runs; see ``_recycle``), off the next request's time. The pool is
bounded so concurrent transcriptions do not oversubscribe the CPU: by default as many run
at once as ``threads`` fit in the cores (one when a transcription uses every core); the
model YAML's ``parallel`` overrides it. Further requests wait their turn.

Transcriptions run on the engine's own long-lived worker threads, never on the HTTP
threads: the pool's size is what bounds how many run at once, and an HTTP thread only waits
for its result, or relays its segments as they are final (streaming).

Decoding is whisper-cli's by default (5-beam search, temperature fallback), overridable in
the model YAML. Audio arrives as blocks decoded on the worker while it transcribes, and is
handed to whisper.cpp in windows of ``WINDOW_SECONDS``: memory stays bounded however long
the recording.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from localai.audio import AudioWindows
from localai.bindings import default_threads
from localai.bindings import whisper as W
from localai.capabilities import AudioInput, Segment, Transcript
from localai.config import ModelConfig
from localai.errors import ConfigError, InvalidRequest, ModelLoadError, ModelUnloaded, RequestTimedOut
from localai.settings import Settings

log = logging.getLogger("localai.whisper")


class WhisperEngine:
    def __init__(self, model: W.WhisperModel, *, name: str, n_threads: int, max_parallel: int,
                 decoding: W.DecodeOptions = W.DecodeOptions(), window_seconds: float | None = None) -> None:
        self.model = model
        self.decoding = decoding
        self.window_samples = int((window_seconds or WINDOW_SECONDS) * W.SAMPLE_RATE)
        self.name = name
        self.n_threads = n_threads
        self.max_parallel = max(1, max_parallel)
        self._idle: list[W.WhisperState] = [model.new_state()]  # the first request pays no allocation
        self._lock = threading.Lock()
        self._closed = False
        # At most max_parallel transcriptions at once, each on a persistent worker thread.
        self._workers = ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix=f"whisper-{name}")

    @property
    def default_temperature(self) -> float:
        return self.decoding.temperature

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
    def transcribe(self, audio: AudioInput, *, language: str | None = None, translate: bool = False,
                   prompt: str | None = None, temperature: float | None = None, word_timestamps: bool = False,
                   abandoned: Callable[[], bool] | None = None, deadline: float | None = None) -> Transcript:
        """Transcribe (or translate to English) 16 kHz mono float32 audio on a pooled state."""
        job = self.start(audio, language=language, translate=translate, prompt=prompt, temperature=temperature,
                         word_timestamps=word_timestamps)
        return job.result(abandoned=abandoned, deadline=deadline)

    def start(self, audio: AudioInput, *, language: str | None = None, translate: bool = False,
              prompt: str | None = None, temperature: float | None = None,
              word_timestamps: bool = False) -> "TranscriptionJob":
        """Start a transcription on the engine's workers; its segments arrive as they are final."""
        if translate:
            self.check_translate()
        self.check_prompt(prompt)
        decoding = self.decoding if temperature is None else replace(self.decoding, temperature=temperature)
        job = TranscriptionJob(self.name)
        options = dict(n_threads=self.n_threads, language=language, translate=translate, prompt=prompt,
                       decoding=decoding, word_timestamps=word_timestamps, cancel=job.cancel_flag)
        try:
            job.future = self._workers.submit(self._run, audio, options, job)
        except RuntimeError:  # submit after shutdown
            raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)") from None
        return job

    def _run(self, audio: AudioInput, options: dict, job: "TranscriptionJob") -> None:
        """On a worker thread: transcribe on an idle state (there are never more workers than
        states), hand the result over, then replace the state before taking the next job."""
        state = None
        try:
            with self._lock:
                if self._closed:
                    raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
                state = self._idle.pop() if self._idle else None
            if state is None:
                state = self.model.new_state()
            job.finish(_transcribe_windows(state, audio, options, job.deliver, self.window_samples))
        except BaseException as exc:
            if isinstance(exc, W.Cancelled):
                log.info("whisper model %s: transcription cancelled (%s) after %.1f s of audio", self.name,
                         job.stopped_by or "shutdown", job.transcribed_seconds)
            job.finish(error=exc)
        if state is not None:
            self._recycle(state)

    def _recycle(self, used: W.WhisperState) -> None:
        """A reused whisper.cpp state remembers earlier runs (its sampler's seed, and beam searches
        that pick other words: see ``WhisperState``), so a request's text would depend on the
        requests before it. Every transcription gets a fresh state, as whisper-cli's does; it
        is made here, after the result is out, not on the next request's time."""
        used.close()
        with self._lock:
            if self._closed:
                return
        try:
            fresh = self.model.new_state()
        except Exception as exc:  # out of memory: the next request allocates (and reports) it
            log.warning("whisper model %s: could not allocate a decoding state: %s", self.name, exc)
            return
        with self._lock:
            if self._closed:
                fresh.close()
            else:
                self._idle.append(fresh)

    def close(self) -> None:
        """Finish running transcriptions, fail queued ones, then free the states and the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._idle.clear()
        self.model.close()  # frees every state of the model first


def decoding_options(config: ModelConfig) -> W.DecodeOptions:
    """whisper-cli's decoding, with what the model YAML overrides."""
    wanted = config.transcription
    options = {name: getattr(wanted, name) for name in (
        "beam_size", "best_of", "temperature_increment", "entropy_threshold", "logprob_threshold",
        "no_speech_threshold") if getattr(wanted, name) is not None}
    if config.parameters.temperature is not None:
        options["temperature"] = config.parameters.temperature
    return W.DecodeOptions(**options)


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
        engine = WhisperEngine(model, name=config.name, n_threads=n_threads, max_parallel=max_parallel,
                               decoding=decoding_options(config))
    except BaseException:
        model.close()
        raise
    log.info("whisper model %s loaded (%s, %d threads, %d at once, %s)", config.name,
             "multilingual" if model.multilingual else "English-only", n_threads, engine.max_parallel,
             f"beam {engine.decoding.beam_size}" if engine.decoding.beam_size > 1 else "greedy")
    return engine


# Audio handed to whisper.cpp at once: 5 minutes of 16 kHz float32 is 19 MB (and 9.6 MB of
# mel spectrogram); a longer recording is decoded and transcribed window after window.
WINDOW_SECONDS = 300.0
_DONE = object()


class TranscriptionJob:
    """A transcription running on an engine's worker: its segments as each is final, then the
    whole transcript. ``segments()`` and ``result()`` poll the client and the deadline and
    cancel the native run when either says stop."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.cancel_flag = W.cancel_flag()
        self.future: Future | None = None  # the worker's task (cancelled: it never started)
        self._done: Future = Future()  # the transcript, set by the worker
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped_by: str | None = None  # "client" or "timeout", once told to stop
        self.transcribed_seconds = 0.0  # the end of the last final segment

    @property
    def stopped_by(self) -> str | None:
        return self._stopped_by

    def deliver(self, segment: Segment) -> None:
        """On the worker: a segment that is final."""
        self.transcribed_seconds = segment.end
        self._queue.put(segment)

    def finish(self, transcript: Transcript | None = None, error: BaseException | None = None) -> None:
        """On the worker: the transcription is over."""
        if error is not None:
            self._done.set_exception(error)
        else:
            self._done.set_result(transcript)
        self._queue.put(_DONE)

    def cancel(self) -> None:
        """Stop the run as soon as possible (the client is gone)."""
        if self._stopped_by is None:
            self._stopped_by = "client"
        self.cancel_flag[0] = 1  # whisper.cpp polls it
        if self.future is not None:
            self.future.cancel()  # and if it has not started, it never will

    def _never_ran(self) -> bool:
        return self.future is not None and self.future.cancelled()

    def _poll(self, abandoned: Callable[[], bool] | None, deadline: float | None) -> None:
        if self._stopped_by is not None:
            return
        if abandoned is not None and abandoned():
            self.cancel()
        elif deadline is not None and time.monotonic() > deadline:
            self._stopped_by = "timeout"
            self.cancel()

    def segments(self, *, abandoned: Callable[[], bool] | None = None,
                 deadline: float | None = None) -> Iterator[Segment]:
        """Each segment once it is final; then ``result()`` has the transcript."""
        while True:
            try:
                item = self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._never_ran():
                    return
                self._poll(abandoned, deadline)
                continue
            if item is _DONE:
                return
            yield item

    def result(self, *, abandoned: Callable[[], bool] | None = None,
               deadline: float | None = None) -> Transcript:
        while True:
            try:
                return self._done.result(timeout=0.25)
            except FutureTimeout:
                if self._never_ran():
                    break
                self._poll(abandoned, deadline)
            except W.Cancelled:
                break
        if self._stopped_by is None:  # the pool was shut down under it
            raise ModelUnloaded(f"the model {self.model_name} was unloaded (the server is shutting down)")
        if self._stopped_by == "timeout":
            raise RequestTimedOut("The transcription took longer than this server's --request-timeout; send "
                                  "shorter audio.")
        raise InvalidRequest("The client went away; the transcription was cancelled.")


def _transcribe_windows(state: W.WhisperState, audio: AudioInput, options: dict,
                        deliver: Callable[[Segment], None], window_samples: int) -> Transcript:
    """Transcribe window by window. A window that is not the last may end in the middle of a
    word, so its last segment is dropped and the next window starts where that segment did.
    Segments are handed to ``deliver`` as soon as they are final: within a window, all but the
    newest as whisper.cpp finishes them."""
    windows = AudioWindows([audio] if isinstance(audio, np.ndarray) else audio, window_samples)
    segments: list[Segment] = []
    language = options.pop("language")
    detected: str | None = None
    cancel = options["cancel"]
    while True:
        samples, final = windows.current()
        if cancel[0]:
            raise W.Cancelled("the transcription was cancelled")
        if not len(samples):
            break
        offset = windows.offset
        window: list[Segment] = []
        sent = 0

        def arrived(batch: list[Segment]) -> None:
            nonlocal sent
            window.extend(_shifted(s, offset) for s in batch)
            ready = len(window) - (0 if final else 1)  # the newest may be cut by the window's end
            for segment in window[sent:ready]:
                deliver(segment)
            sent = max(sent, ready)

        transcript = state.transcribe(samples, language=language, on_segments=arrived, **options)
        # The callback's segments, shifted already; whisper.cpp reports every segment through it.
        done = window + [_shifted(s, offset) for s in transcript.segments[len(window):]]
        keep = done if final or len(done) < 2 else done[:-1]
        for segment in keep[sent:]:
            deliver(segment)
        segments.extend(keep)
        if detected is None:
            detected = transcript.language
            if language is None and transcript.language:
                language = transcript.language  # later windows: the language of the first
        if final:
            break
        resume = round(transcript.segments[-1].start * W.SAMPLE_RATE) if len(done) >= 2 else len(samples)
        windows.advance(resume if resume >= W.SAMPLE_RATE else len(samples))
    return Transcript(language=detected or language, segments=segments)


def _shifted(segment: Segment, samples: int) -> Segment:
    """A window's segment on the recording's timeline."""
    if not samples:
        return segment
    seconds = samples / W.SAMPLE_RATE
    return replace(segment, start=segment.start + seconds, end=segment.end + seconds,
                   seek=segment.seek + samples // (W.SAMPLE_RATE // 100),
                   tokens=[replace(t, start=t.start + seconds, end=t.end + seconds) for t in segment.tokens],
                   words=[replace(w, start=w.start + seconds, end=w.end + seconds) for w in segment.words])
