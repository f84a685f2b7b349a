"""The contract between the HTTP layer and the engines: what a loaded model can do, and the
values that cross between them.

A backend declares its capabilities when it registers (``localai.backends``); the API asks
``ModelManager.engine_for(config, capability)`` for an engine and gets one typed by the
protocol below, or a 400 naming the model. Nothing here imports a binding: the API sees
these types only, never a cffi handle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol, Sequence, Union

import numpy as np

from localai.sampling import SamplingParams


class Capability(enum.Enum):
    """What a route needs from a model. The value completes "The model ... does not ___"."""

    TEXT = "generate text"
    EMBEDDINGS = "produce embeddings"
    TRANSCRIPTION = "transcribe audio"
    IMAGES = "generate images"
    TOKENIZE = "have a tokenizer"


# ---- text generation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptInfo:
    """What prompt templating needs to know about a text model."""

    chat_template: str | None  # the model file's own Jinja chat template, if it has one
    bos_text: str  # the text of its begin-of-sequence token ("" when it has none)
    eos_text: str
    context_size: int  # tokens per sequence
    fill_in_middle: bool  # whether it declares prefix/suffix/middle tokens (for ``suffix``)
    control_texts: tuple[str, ...] = ()  # texts its tokenizer reads as control tokens (role markers...)


@dataclass
class GenerationOptions:
    """How to generate, beyond the prompt: the request's sampling and limits, already validated."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # None: no logprobs; k: the chosen token plus k alternatives
    prompt_logprobs: bool = False  # also score the prompt's tokens (OpenAI's echo + logprobs)
    suffix: str | None = None  # fill-in-the-middle: the text after the completion
    cache_prompt: bool = True  # False: process the whole prompt fresh, reusing no cached KV
    cache_scope: str = ""  # prefix reuse only between requests of the same scope (e.g. API key)
    deadline: float | None = None  # time.monotonic() after which the request stops ("length")
    token_budget: int | None = None  # most tokens all choices together may ask for (else a 400)


@dataclass
class TokenLogprob:
    token: str
    bytes: list[int]
    logprob: float | None  # None: a prompt's first token, which nothing predicts
    top: list[tuple[str, list[int], float]] | None


@dataclass
class Delta:
    """New text of one choice (complete UTF-8 characters only, stop strings withheld)."""

    text: str
    n_tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Finished:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    first_token_seconds: float | None = None  # from the request reaching the engine to its first token
    stop_sequence: str | None = None  # the stop string that ended it, if one did


Event = Delta | Finished


class Generation(Protocol):
    """The events of every choice of one request, merged: ``(choice index, event)`` until each
    choice has finished. Choice ``p * n + j`` is the j-th answer to prompt p. A failure of
    the generation is raised from the iteration."""

    n: int  # choices per prompt
    choices: int  # all choices

    def __iter__(self) -> Iterator[tuple[int, Event]]: ...

    def has_pending(self) -> bool:
        """Whether more events are already queued (so a writer can batch them)."""
        ...

    def cancel(self) -> None: ...

    def collect(self, abandoned: Callable[[], bool] | None = None) -> tuple[list[list[Delta]], dict[int, Finished]]:
        """Run to the end: each choice's deltas, and its Finished. ``abandoned`` is polled while
        waiting; when it says so (the client went away), the generation is cancelled."""
        ...


def collect(events: Iterable[tuple[int, Event]], choices: int) -> tuple[list[list[Delta]], dict[int, Finished]]:
    """``Generation.collect`` over any stream of (choice index, event): each choice's deltas, and its Finished."""
    deltas: list[list[Delta]] = [[] for _ in range(choices)]
    finished: dict[int, Finished] = {}
    for index, event in events:
        if isinstance(event, Delta):
            deltas[index].append(event)
        else:
            finished[index] = event
    return deltas, finished


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[int]: ...


class TextGenerator(Tokenizer, Protocol):
    def prompt_info(self) -> PromptInfo: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def generate(self, prompts: Sequence[str | list[int]], options: GenerationOptions, *,
                 n: int = 1) -> Generation:
        """Check every prompt (tokens, vocabulary, context, options) and start generating n
        choices for each; raises InvalidRequest before anything runs."""
        ...

    def status(self) -> dict: ...

    # An engine may also have ``lost``: a reason once its process has died (a model split over
    # RPC workers that lost one); the model manager then loads it again on the next request.


# ---- embeddings ------------------------------------------------------------------------------------

class Embedder(Protocol):
    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """(L2-normalised vectors [len(inputs), dimensions], prompt tokens); token lists are
        embedded exactly as given."""
        ...


# ---- transcription ---------------------------------------------------------------------------------

@dataclass
class Word:
    """A word as whisper's tokens spell it (leading space dropped, punctuation kept)."""

    text: str
    start: float  # seconds
    end: float
    probability: float


@dataclass
class Token:
    id: int
    text: bytes  # may be part of a UTF-8 character
    logprob: float
    probability: float
    start: float  # seconds; meaningful only with word_timestamps
    end: float
    is_timestamp: bool


@dataclass
class Segment:
    start: float  # seconds
    end: float
    text: str
    no_speech_prob: float = 0.0
    seek: int = 0  # start of the 30 s decoding window, in 10 ms frames (OpenAI's `seek`)
    tokens: list[Token] = field(default_factory=list)  # text and timestamp tokens
    words: list[Word] = field(default_factory=list)  # filled with word_timestamps

    @property
    def token_ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def avg_logprob(self) -> float:
        return float(np.mean([t.logprob for t in self.tokens])) if self.tokens else 0.0


@dataclass
class Transcript:
    language: str | None  # ISO 639-1 code
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


class TranscriptionRun(Protocol):
    """A transcription under way. ``abandoned`` is polled while it runs (the client went away:
    cancel); past ``deadline`` (time.monotonic()) it stops with RequestTimedOut."""

    def segments(self, *, abandoned: Callable[[], bool] | None = None,
                 deadline: float | None = None) -> Iterator[Segment]:
        """Each segment as soon as it is final."""
        ...

    def result(self, *, abandoned: Callable[[], bool] | None = None,
               deadline: float | None = None) -> Transcript: ...

    def cancel(self) -> None: ...


# 16 kHz mono float32: all of it, or blocks of it (decoded while the transcription runs).
AudioInput = Union[np.ndarray, Iterable[np.ndarray]]


class Transcriber(Protocol):
    default_temperature: float  # the first decoding temperature when a request sets none

    def language(self, requested: str | None) -> str | None:
        """The ISO 639-1 code of a requested language, None for detection; 400 if unsupported."""
        ...

    def language_name(self, code: str | None) -> str: ...

    def check_translate(self) -> None:
        """400 unless this model can translate."""
        ...

    def start(self, audio: AudioInput, *, language: str | None = None, translate: bool = False,
              prompt: str | None = None, temperature: float | None = None,
              word_timestamps: bool = False) -> TranscriptionRun: ...

    def transcribe(self, audio: AudioInput, *, language: str | None = None, translate: bool = False,
                   prompt: str | None = None, temperature: float | None = None, word_timestamps: bool = False,
                   abandoned: Callable[[], bool] | None = None, deadline: float | None = None) -> Transcript:
        """``start`` and wait for the result."""
        ...


# ---- images ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    mode: int
    seed: int


class ImageGenerator(Protocol):
    def request(self, *, prompt: str, width: int, height: int, steps: int | None = None,
                mode: int | None = None, seed: int | None = None) -> ImageRequest:
        """Validate one image request, filling defaults from the model's configuration."""
        ...

    def generate(self, request: ImageRequest, *, abandoned: Callable[[], bool] | None = None,
                 deadline: float | None = None) -> np.ndarray:
        """RGB pixels (H, W, 3) uint8 of one image; cancelled between steps as ``transcribe`` is."""
        ...
