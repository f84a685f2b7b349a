"""A fake text engine for fast, in-process tests of the HTTP contract.

It is registered through the real backend registry under ``backend: fake`` and served by the
real app, so routing, validation, SSE framing, error bodies, n>1 merging and tool-call
streaming are exercised exactly as with llama.cpp, in milliseconds. It "generates" by
replaying a reply chosen by a function of the prompt, one word per token; stop strings,
max_tokens and n behave as the real engine's do. It never stands in for a backend in the
end-to-end tests.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from localai.backends import BackendRegistry, default_registry
from localai.backends.llama.text import TextAssembler
from localai.capabilities import Capability, Delta, Event, Finished, GenerationOptions, PromptInfo, collect
from localai.errors import ContextLengthExceeded, InvalidRequest

CONTEXT = 256
# The reply to a prompt: a function of the prompt text and the options.
Replier = Callable[[str, GenerationOptions], str]


def default_reply(prompt: str, options: GenerationOptions) -> str:
    return "Hello from the fake engine. It answers every prompt the same way."


class FakeGeneration:
    """The Generation contract over precomputed events."""

    def __init__(self, n: int, choices: list[list[Event]]) -> None:
        self.n = n
        self.choices = len(choices)
        self.cancelled = False
        self._events: "queue.SimpleQueue[tuple[int, Event]]" = queue.SimpleQueue()
        # interleave the choices, as concurrent sequences arrive
        longest = max(len(c) for c in choices)
        for step in range(longest):
            for index, events in enumerate(choices):
                if step < len(events):
                    self._events.put((index, events[step]))

    def __iter__(self) -> Iterator[tuple[int, Event]]:
        while not self._events.empty():
            yield self._events.get()

    def has_pending(self) -> bool:
        return not self._events.empty()

    def cancel(self) -> None:
        self.cancelled = True

    def collect(self, abandoned=None) -> tuple[list[list[Delta]], dict[int, Finished]]:
        return collect(self, self.choices)


class FakeTextEngine:
    """Tokens are words (ids: their position in a growing vocabulary)."""

    def __init__(self, name: str, reply: Replier = default_reply) -> None:
        self.name = name
        self.reply = reply
        self.vocab: dict[str, int] = {}
        self.generated: list[tuple[str, GenerationOptions]] = []  # what each request asked for

    def prompt_info(self) -> PromptInfo:
        return PromptInfo(chat_template=None, bos_text="", eos_text="", context_size=CONTEXT, fill_in_middle=False)

    def tokenize(self, text: str) -> list[int]:
        return [self.vocab.setdefault(word, len(self.vocab)) for word in text.split()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words.get(t, "?") for t in tokens)

    def generate(self, prompts: Sequence[str | list[int]], options: GenerationOptions, *, n: int = 1) -> FakeGeneration:
        if options.suffix:
            raise InvalidRequest(f"The model `{self.name}` does not support suffix.", param="suffix")
        texts = [p if isinstance(p, str) else self.detokenize(p) for p in prompts]
        for text in texts:
            n_prompt = len(self.tokenize(text))
            if n_prompt >= CONTEXT:
                raise ContextLengthExceeded(f"{n_prompt} tokens do not fit {CONTEXT}.", param="messages")
        choices = []
        for text in texts:
            for j in range(n):
                self.generated.append((text, options))
                choices.append(self._events(text, options, j))
        return FakeGeneration(n, choices)

    def _events(self, prompt: str, options: GenerationOptions, j: int) -> list[Event]:
        words = self.reply(prompt, options).split(" ")
        if j:
            words = words + [f"(answer {j})"]
        limit = options.max_tokens if options.max_tokens is not None else CONTEXT
        assembler = TextAssembler(options.stop)
        events: list[Event] = []
        reason, produced = "stop", 0
        for k, word in enumerate(words):
            if produced >= limit:
                reason = "length"
                break
            produced += 1
            text, stopped = assembler.feed((word if k == 0 else " " + word).encode())
            if text:
                events.append(Delta(text, 1))
            if stopped:
                break
        else:
            rest = assembler.flush()
            if rest:
                events.append(Delta(rest, 0))
        n_prompt = len(prompt.split())
        events.append(Finished(reason, n_prompt, produced))
        return events

    def status(self) -> dict:
        return {"active_sequences": 0, "waiting": 0}

    def close(self) -> None:
        pass


def fake_registry(engines: dict[str, FakeTextEngine]) -> BackendRegistry:
    """The real registry, plus ``backend: fake`` serving the given engines by model name."""
    registry = default_registry()

    def load(config: Any, settings: Any, shared: Any = None) -> FakeTextEngine:
        return engines.setdefault(config.name, FakeTextEngine(config.name))

    registry.register("fake", load, {Capability.TEXT, Capability.TOKENIZE})
    return registry


def write_fake_models(folder: Path, *names: str, extra_yaml: str = "") -> Path:
    for name in names:
        (folder / f"{name}.yaml").write_text(f"name: {name}\nbackend: fake\n{extra_yaml}")
    return folder
