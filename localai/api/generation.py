"""What the text routes (chat, completions, edits) share: request fields to generation
options, OpenAI's usage object, and the loop that turns a generation's events into SSE chunks."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterator

from localai.api.http import ApiRequest, Server, deadline, mid_stream_error, sse
from localai.capabilities import Delta, Finished, GenerationOptions, Generation
from localai.config import ModelConfig
from localai.errors import InvalidRequest
from localai.grammar import gbnf
from localai.sampling import resolve_sampling

log = logging.getLogger("localai.api")
# prompts x n in one request: more would hold the scheduler's slots for everyone else for long
MAX_CHOICES = 128

# make_choices(index, delta or None, finish reason or None) -> the chunk choices for that event
ChoiceMaker = Callable[[int, Delta | None, str | None], list[dict]]


def logit_bias(body: dict) -> dict[int, float]:
    """OpenAI's ``logit_bias``: token ids as JSON object keys, biases -100..100."""
    bias: dict[int, float] = {}
    for key, value in (body.get("logit_bias") or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(f"Invalid logit_bias key {key!r}: keys are token ids.", param="logit_bias") from None
        bias[token] = float(value)
    return bias


def stops(body: dict, config: ModelConfig) -> list[str]:
    """The request's ``stop`` (a string or a list) and the model's ``stopwords``."""
    stop = body.get("stop")
    listed = [stop] if isinstance(stop, str) else list(stop or [])
    return listed + [s for s in config.stopwords if s not in listed]


def max_tokens(body: dict, config: ModelConfig) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            return int(body[key])
    return config.parameters.max_tokens


def generation_options(app: Server, request: ApiRequest, body: dict, config: ModelConfig, *,
                       grammar: str | None = None, logprobs: int | None = None, prompt_logprobs: bool = False,
                       suffix: str | None = None) -> GenerationOptions:
    """A text request's options: its values, else the model YAML's ``parameters``, else OpenAI's;
    the server's limits on it (time, tokens); whose cached prefixes it may reuse."""
    settings = app.settings
    defaults = config.parameters.__dict__
    if grammar is None and body.get("grammar"):
        gbnf.check(body["grammar"])  # our parser's limits, before llama.cpp's parser sees it
        grammar = body["grammar"]
    ignore_eos = body.get("ignore_eos")
    return GenerationOptions(
        sampling=resolve_sampling(body, defaults, logit_bias=logit_bias(body), grammar=grammar or None),
        max_tokens=max_tokens(body, config),
        stop=stops(body, config),
        ignore_eos=bool(ignore_eos if ignore_eos is not None else config.parameters.ignore_eos),
        logprobs=logprobs, prompt_logprobs=prompt_logprobs, suffix=suffix,
        cache_prompt=body.get("cache_prompt") is not False,
        cache_scope=app.cache_scope(request),
        deadline=deadline(settings),
        token_budget=settings.max_request_tokens)


def check_choices(prompts: int, n: int) -> None:
    if prompts * n > MAX_CHOICES:
        raise InvalidRequest(f"{prompts} prompts with {n} completions each make {prompts * n}; at most "
                             f"{MAX_CHOICES} completions are generated per request.", param="prompt")


def postprocess(text: str, config: ModelConfig) -> str:
    """LocalAI's YAML output clean-ups: ``cutstrings`` (regexes removed) and ``trimspace`` (prefixes)."""
    for pattern in config.cutstrings:
        text = re.sub(pattern, "", text)
    for prefix in config.trimspace:
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def usage(generation: Generation, finished: dict[int, Finished]) -> dict:
    """Each prompt's tokens counted once however many choices it has; every choice's completion."""
    firsts = [finished[i] for i in range(0, generation.choices, generation.n) if i in finished]
    prompt = sum(f.prompt_tokens for f in firsts)
    completion = sum(f.completion_tokens for f in finished.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(f.cached_tokens for f in firsts)}}


def record(app: Server, request: ApiRequest, generation: Generation, finished: dict[int, Finished]) -> dict:
    """A finished generation's usage, written to the request's log record and the metrics."""
    totals = usage(generation, finished)
    request.record.tokens = totals["completion_tokens"]
    app.metrics.generation_done(request.record.model or "-", [finished[i] for i in sorted(finished)], generation.n)
    return totals


def stream_events(app: Server, generation: Generation, request: ApiRequest, body: dict, envelope: dict,
                  make_choices: ChoiceMaker) -> Iterator[bytes]:
    """Run the generation, turning its events into chunks (``envelope`` + the choices
    ``make_choices`` gives for each event); ends with a usage chunk (if asked) and [DONE].

    A failure before the first chunk propagates (the caller answers with a JSON error); a
    failure later becomes an error event, since the 200 headers are already out.
    """
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    finished: dict[int, Finished] = {}
    started = False
    pending: list[bytes] = []
    try:
        for index, event in generation:
            if isinstance(event, Delta):
                choices = make_choices(index, event, None)
            else:
                finished[index] = event
                choices = make_choices(index, None, event.reason)
            for choice in choices:
                chunk: dict[str, Any] = {**envelope, "choices": [choice]}
                if include_usage:
                    chunk["usage"] = None  # as OpenAI: null on every chunk but the last
                pending.append(sse(chunk))
            # Events that are already queued go out in one write: fewer wake-ups of the
            # server loop when several sequences stream at once.
            if pending and not generation.has_pending():
                started = True
                yield b"".join(pending)
                pending.clear()
    except Exception as exc:
        if not started:
            raise
        yield sse(mid_stream_error(exc, log, "generation").body())
        return
    totals = record(app, request, generation, finished)
    if include_usage:
        pending.append(sse({**envelope, "choices": [], "usage": totals}))
    yield b"".join([*pending, sse("[DONE]")])
