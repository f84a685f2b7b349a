"""/v1/chat/completions, /v1/completions and /v1/edits over the llama backend."""

from __future__ import annotations

import json
import logging
import queue
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from werkzeug.wrappers import Request, Response

from localai.api import schemas, tools
from localai.api.errors import APIError, bad_request, from_exception
from localai.backends.llama import Delta, Failed, Finished, GenerationRequest, LlamaEngine
from localai.bindings.llama import SamplingParams
from localai.config import ModelConfig
from localai.errors import InvalidRequest
from localai.templates import render_chat_prompt, render_completion_prompt, render_edit_prompt

if TYPE_CHECKING:
    from localai.api.app import App

log = logging.getLogger("localai.api")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# prompts x n in one request: more would hold the scheduler's slots for everyone else for long
MAX_CHOICES = 128


# ---- request → generation ---------------------------------------------------------------------

def _sampling(body: dict, config: ModelConfig, engine: LlamaEngine) -> SamplingParams:
    """Request values win over the model's YAML ``parameters``, which win over OpenAI's defaults."""
    p = config.parameters

    def pick(name: str, default: Any) -> Any:
        value = body.get(name)
        if value is None:
            value = getattr(p, name, None)
        return default if value is None else value

    bias: dict[int, float] = {}
    for key, value in (body.get("logit_bias") or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise bad_request(f"Invalid logit_bias key {key!r}: keys are token ids.", param="logit_bias") from None
        if not 0 <= token < engine.model.n_vocab:
            raise bad_request(f"logit_bias token {token} is outside the vocabulary.", param="logit_bias")
        bias[token] = float("-inf") if value <= -100 else float(value)
    return SamplingParams(
        temperature=float(pick("temperature", 1.0)),
        top_p=float(pick("top_p", 1.0)),
        top_k=int(pick("top_k", 0)),
        min_p=float(pick("min_p", 0.0)),
        typical_p=float(pick("typical_p", 1.0)),
        repeat_penalty=float(pick("repeat_penalty", 1.0)),
        repeat_last_n=int(pick("repeat_last_n", 64)),
        presence_penalty=float(pick("presence_penalty", 0.0)),
        frequency_penalty=float(pick("frequency_penalty", 0.0)),
        seed=pick("seed", None),
        logit_bias=bias,
        grammar=body.get("grammar") or None,
    )


def _stops(body: dict, config: ModelConfig) -> list[str]:
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return stops + [s for s in config.stopwords if s not in stops]


def _max_tokens(body: dict, config: ModelConfig) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            return int(body[key])
    return config.parameters.max_tokens


@dataclass
class Job:
    """One API call: n generation requests per prompt, their events merged in one queue.

    Choice ``p * n + j`` is the j-th answer to prompt p (OpenAI's order for batched prompts).
    """

    engine: LlamaEngine
    config: ModelConfig
    requests: list[GenerationRequest]
    n: int = 1  # choices per prompt
    events: "queue.SimpleQueue[tuple[int, Any]]" = field(default_factory=queue.SimpleQueue)

    def start(self) -> None:
        try:
            for i, request in enumerate(self.requests):
                request.events = _Tagged(self.events, i)
                self.engine.submit(request)
        except Exception:
            self.cancel()
            raise

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """(choice index, event) until every choice has finished; Failed raises."""
        open_choices = len(self.requests)
        while open_choices:
            index, event = self.events.get()
            if isinstance(event, Failed):
                self.cancel()
                raise event.error
            if isinstance(event, Finished):
                open_choices -= 1
            yield index, event

    def collect(self) -> tuple[list[list[Delta]], dict[int, Finished]]:
        """Run to the end (for non-streaming answers): each choice's deltas, and its Finished."""
        deltas: list[list[Delta]] = [[] for _ in self.requests]
        finished: dict[int, Finished] = {}
        for index, event in self:
            if isinstance(event, Delta):
                deltas[index].append(event)
            else:
                finished[index] = event
        return deltas, finished


class _Tagged:
    def __init__(self, target: queue.SimpleQueue, index: int):
        self.target, self.index = target, index

    def put(self, event: Any) -> None:
        self.target.put((self.index, event))


def _text_engine(app: "App", request: Request, body: dict) -> tuple[ModelConfig, LlamaEngine]:
    config = app.manager.resolve(body.get("model"), app.model_from_bearer(request))
    request.environ["localai.model"] = config.name
    engine = app.manager.engine(config)
    if not isinstance(engine, LlamaEngine):
        raise bad_request(f"The model `{config.name}` (backend {config.backend}) does not generate text.",
                          param="model")
    return config, engine


def _prompt_tokens(engine: LlamaEngine, prompt: str | list[int]) -> list[int]:
    tokens = engine.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    if len(tokens) >= 2 and tokens[0] == tokens[1] == engine.model.bos:
        tokens = tokens[1:]  # the template wrote BOS and the tokenizer added another
    for t in tokens:
        if not 0 <= t < engine.model.n_vocab:
            raise bad_request(f"Token id {t} is outside the vocabulary.", param="prompt")
    return tokens


def _make_job(config: ModelConfig, engine: LlamaEngine, body: dict, prompts: list[str | list[int]], *,
              logprobs: int | None, n: int | None = None, prompt_logprobs: bool = False) -> Job:
    n = n or int(body.get("n") or 1)
    if len(prompts) * n > MAX_CHOICES:
        raise bad_request(f"{len(prompts)} prompts with {n} completions each make {len(prompts) * n}; at most "
                          f"{MAX_CHOICES} completions are generated per request.", param="prompt")
    token_lists = [_prompt_tokens(engine, prompt) for prompt in prompts]  # every prompt checked before any runs
    sampling = _sampling(body, config, engine)
    requests = []
    for tokens in token_lists:
        for j in range(n):
            params = sampling
            if j and sampling.seed is not None:  # answer j of every prompt: the same as that prompt alone
                params = SamplingParams(**{**sampling.__dict__, "seed": sampling.seed + j})
            requests.append(GenerationRequest(
                prompt=tokens, sampling=params, max_tokens=_max_tokens(body, config), stop=_stops(body, config),
                ignore_eos=bool(body.get("ignore_eos") if body.get("ignore_eos") is not None
                                else config.parameters.ignore_eos), logprobs=logprobs,
                prompt_logprobs=prompt_logprobs))
    job = Job(engine, config, requests, n=n)
    job.start()
    return job


def _postprocess(text: str, config: ModelConfig) -> str:
    """LocalAI's YAML output clean-ups: ``cutstrings`` (regexes removed) and ``trimspace`` (prefixes)."""
    for pattern in config.cutstrings:
        text = re.sub(pattern, "", text)
    for prefix in config.trimspace:
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _usage(job: Job, finished: dict[int, Finished]) -> dict:
    """Each prompt's tokens counted once however many choices it has; every choice's completion."""
    firsts = [finished[i] for i in range(0, len(job.requests), job.n) if i in finished]
    prompt = sum(f.prompt_tokens for f in firsts)
    completion = sum(f.completion_tokens for f in finished.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(f.cached_tokens for f in firsts)}}


# ---- shared streaming machinery --------------------------------------------------------------------

def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _stream_response(job: Job, request: Request, chunks: Iterator[bytes]) -> Response:
    """Produce the first chunk before any header goes out, so an early failure is a JSON error."""
    try:
        first = next(chunks)
    except StopIteration:
        first = b""
    except Exception:
        job.cancel()
        raise

    def body() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from chunks
        finally:
            job.cancel()  # client gone or done: free the sequences at once

    return Response(body(), status=200, mimetype="text/event-stream", headers=SSE_HEADERS, direct_passthrough=True)


def _stream_events(job: Job, request: Request, body: dict, envelope: dict, make_choices) -> Iterator[bytes]:
    """Run the job, turning its events into chunks (``envelope`` + the choices ``make_choices``
    gives for each event); ends with a usage chunk (if asked) and [DONE].

    A failure before the first chunk propagates (the caller answers with a JSON error); a
    failure later becomes an error event, since the 200 headers are already out.
    """
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    finished: dict[int, Finished] = {}
    started = False
    pending: list[bytes] = []
    try:
        for index, event in job:
            if isinstance(event, Delta):
                choices = make_choices(index, event, None)
            elif isinstance(event, Finished):
                finished[index] = event
                choices = make_choices(index, None, event.reason)
            for choice in choices:
                chunk = {**envelope, "choices": [choice]}
                if include_usage:
                    chunk["usage"] = None  # as OpenAI: null on every chunk but the last
                pending.append(_sse(chunk))
            # Events that are already queued go out in one write: fewer wake-ups of the
            # server loop when several sequences stream at once.
            if pending and job.events.empty():
                started = True
                yield b"".join(pending)
                pending.clear()
    except Exception as exc:
        if not started:
            raise
        error = from_exception(exc)
        if error.code >= 500:
            log.exception("generation failed mid-stream")
        yield _sse(error.body())
        return
    request.environ["localai.tokens"] = sum(f.completion_tokens for f in finished.values())
    if include_usage:
        pending.append(_sse({**envelope, "choices": [], "usage": _usage(job, finished)}))
    yield b"".join([*pending, _sse("[DONE]")])


# ---- /v1/chat/completions -------------------------------------------------------------------------

def _logprobs_content(event: Delta) -> list[dict]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": p, "bytes": b} for t, b, p in lp.top]}
            for lp in (event.logprobs or [])]


def chat(app: "App", request: Request) -> Response:
    from localai.api.app import json_response, read_json

    body = schemas.validate("chat", read_json(request))
    plan = tools.plan_tools(body)
    grammar = tools.tool_grammar(plan) or tools.response_format_grammar(body) or body.get("grammar")
    config, engine = _text_engine(app, request, body)
    model = engine.model
    model_template = model.chat_template()
    uses_model_template = bool(model_template) and not (config.template.chat or config.template.chat_message)
    template_knows_tools = uses_model_template and "tools" in model_template
    prompt = render_chat_prompt(
        tools.prepare_messages(body["messages"], plan, template_knows_tools),
        model_template=model_template, config_template=config.template,
        roles=config.roles, system_prompt=config.system_prompt,
        bos_token=model.token_text(model.bos) if model.bos >= 0 else "",
        eos_token=model.token_text(model.eos) if model.eos >= 0 else "",
        tools=plan.tools if plan.active and template_knows_tools else None)
    body = {**body, "grammar": grammar}
    logprobs = None
    if body.get("logprobs"):
        logprobs = int(body.get("top_logprobs") or 0)
    elif body.get("top_logprobs"):
        raise bad_request("top_logprobs requires logprobs to be true.", param="top_logprobs")
    job = _make_job(config, engine, body, [prompt], logprobs=logprobs)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.get("stream"):
        sent_role: set[int] = set()
        pending: dict[int, list[str]] = {}
        plain_text: set[int] = set()

        def make_choices(index: int, event: Delta | None, finish: str | None) -> list[dict]:
            def choice(delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> dict:
                return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

            choices = []
            if index not in sent_role:  # as OpenAI: a role-only first delta per choice
                sent_role.add(index)
                choices.append(choice({"role": "assistant", "content": "", "refusal": None}))
            if plan.active:
                # A tool call is only known once its JSON is complete: hold back text that
                # may be one, then send the calls as OpenAI does (id and name, then arguments).
                held = pending.setdefault(index, [])
                if event is not None and index not in plain_text:
                    held.append(event.text)
                    start = "".join(held).lstrip()[:1]
                    if start in ("{", "[", ""):
                        return choices
                    plain_text.add(index)  # ordinary text: release what was held, stream the rest
                    event = Delta("".join(held), event.n_tokens, event.logprobs)
                    held.clear()
                if event is None and held:
                    text = "".join(held)
                    calls = tools.parse_tool_calls(text, plan)
                    if calls is None:
                        choices.append(choice({"content": text}))
                    else:
                        for i, call in enumerate(calls):
                            fn = call["function"]
                            if plan.legacy:
                                choices.append(choice({"function_call": {"name": fn["name"], "arguments": ""}}))
                                choices.append(choice({"function_call": {"arguments": fn["arguments"]}}))
                                continue
                            choices.append(choice({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                                 "function": {"name": fn["name"], "arguments": ""}}]}))
                            choices.append(choice({"tool_calls": [{"index": i,
                                                                 "function": {"arguments": fn["arguments"]}}]}))
                        finish = "function_call" if plan.legacy else "tool_calls"
                    choices.append(choice({}, finish))
                    return choices
            if event is not None:
                logprobs = {"content": _logprobs_content(event)} if event.logprobs else None
                if event.text or logprobs:
                    choices.append(choice({"content": event.text}, logprobs=logprobs))
            else:
                choices.append(choice({}, finish))
            return choices

        envelope = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": config.name, "system_fingerprint": None}
        return _stream_response(job, request, _stream_events(job, request, body, envelope, make_choices))

    deltas, finished = job.collect()
    choices = []
    for i in range(len(job.requests)):
        text = _postprocess("".join(e.text for e in deltas[i]), config)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        reason = finished[i].reason
        calls = tools.parse_tool_calls(text, plan) if plan.active else None
        if calls and plan.legacy:
            message.update(content=None, function_call=calls[0]["function"])
            reason = "function_call"
        elif calls:
            message.update(content=None, tool_calls=calls)
            reason = "tool_calls"
        choices.append({"index": i, "message": message,
                        "logprobs": ({"content": [c for e in deltas[i] for c in _logprobs_content(e)]}
                                     if logprobs is not None else None),
                        "finish_reason": reason})
    usage = _usage(job, finished)
    request.environ["localai.tokens"] = usage["completion_tokens"]
    return json_response({"id": completion_id, "object": "chat.completion", "created": created,
                          "model": config.name, "system_fingerprint": None, "choices": choices, "usage": usage})


# ---- /v1/completions ---------------------------------------------------------------------------------

def _completion_logprobs(events: list[Delta], offset: int) -> dict:
    """The legacy completions logprobs object; with echo the prompt's tokens come first (the first
    one with null logprobs, as OpenAI sends) and offsets count from the start of the echoed text."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    pos = offset
    for event in events:
        for lp in event.logprobs or []:
            tokens.append(lp.token)
            token_logprobs.append(lp.logprob)
            top.append(None if lp.top is None else {t: p for t, _, p in lp.top})
            offsets.append(pos)
            pos += len(lp.token)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def _mean_logprob(events: list[Delta]) -> float:
    values = [lp.logprob for event in events if event.n_tokens for lp in event.logprobs or []]  # generated only
    return sum(values) / len(values) if values else float("-inf")


def fim_prompt(prefix: list[int], suffix: list[int], fim: tuple[int, int, int]) -> list[int]:
    """A fill-in-the-middle prompt in prefix-suffix-middle order: the model then writes the middle."""
    pre, suf, mid = fim
    return [pre, *prefix, suf, *suffix, mid]


def _batched_prompts(prompt: str | list) -> list[str | list[int]]:
    """OpenAI's prompt forms (a string, strings, token ids, lists of token ids) as a list of prompts."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)


def completions(app: "App", request: Request) -> Response:
    from localai.api.app import json_response, read_json

    body = schemas.validate("completion", read_json(request))
    prompts = _batched_prompts(body["prompt"])
    n = int(body.get("n") or 1)
    best_of = int(body.get("best_of") or n)
    if best_of < n:
        raise bad_request(f"best_of ({best_of}) must be at least n ({n}).", param="best_of")
    if best_of > n and body.get("stream"):
        raise bad_request("best_of cannot be used with stream: the best completions are only known at the end.",
                          param="best_of")
    config, engine = _text_engine(app, request, body)
    suffix = body.get("suffix")
    if suffix:
        if min(engine.model.fim) < 0:
            raise bad_request(f"The model `{config.name}` does not support suffix: it has no fill-in-the-middle "
                              "tokens.", param="suffix")
        suffix_tokens = engine.tokenize(suffix, add_special=False)
        prompts = [fim_prompt(engine.tokenize(p, add_special=False) if isinstance(p, str) else p, suffix_tokens,
                              engine.model.fim) for p in prompts]
    prompts = [render_completion_prompt(p, config.template.completion) if isinstance(p, str) else p for p in prompts]
    logprobs = body.get("logprobs")
    echo = bool(body.get("echo"))
    # best_of: every candidate's chosen-token logprobs are needed to rank them
    job = _make_job(config, engine, body, prompts, n=best_of,
                    logprobs=logprobs if best_of == n or logprobs is not None else 0,
                    prompt_logprobs=echo and logprobs is not None)
    echo_texts = [(p if isinstance(p, str) else engine.detokenize(p)) if echo else "" for p in prompts]
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.get("stream"):
        echoed: set[int] = set()
        offsets: dict[int, int] = {}

        def make_choices(index: int, event: Delta | None, finish: str | None) -> list[dict]:
            text = event.text if event is not None else ""
            if echo and index not in echoed:
                text = echo_texts[index // job.n] + text
                echoed.add(index)
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
            if event is not None and event.logprobs:
                start = offsets.get(index, 0)  # text_offset counts from the choice's first character
                choice["logprobs"] = _completion_logprobs([event], start)
                offsets[index] = start + sum(len(lp.token) for lp in event.logprobs)
            return [choice]

        envelope = {"id": completion_id, "object": "text_completion", "created": created, "model": config.name,
                    "system_fingerprint": None}
        return _stream_response(job, request, _stream_events(job, request, body, envelope, make_choices))

    events, finished = job.collect()
    choices = []
    for p in range(len(prompts)):
        candidates = range(p * best_of, (p + 1) * best_of)
        if best_of > n:  # OpenAI's "best": the highest log probability per token
            candidates = sorted(candidates, key=lambda i: -_mean_logprob(events[i]))[:n]
        for i in candidates:
            text = _postprocess("".join(e.text for e in events[i]), config)
            echo_text = echo_texts[p]
            choices.append({"index": len(choices), "text": echo_text + text,
                            "logprobs": (_completion_logprobs(events[i], 0 if echo else len(echo_text))
                                         if logprobs is not None else None),
                            "finish_reason": finished[i].reason})
    usage = _usage(job, finished)  # every candidate's tokens, as OpenAI counts best_of
    request.environ["localai.tokens"] = usage["completion_tokens"]
    return json_response({"id": completion_id, "object": "text_completion", "created": created,
                          "model": config.name, "system_fingerprint": None, "choices": choices, "usage": usage})


# ---- /v1/edits ------------------------------------------------------------------------------------------

def edits(app: "App", request: Request) -> Response:
    from localai.api.app import json_response, read_json

    body = schemas.validate("edit", read_json(request))
    config, engine = _text_engine(app, request, body)
    prompt = render_edit_prompt(body["instruction"], body.get("input") or "", config.template.edit)
    job = _make_job(config, engine, body, [prompt], logprobs=None)
    deltas, finished = job.collect()
    usage = _usage(job, finished)
    request.environ["localai.tokens"] = usage["completion_tokens"]
    return json_response({
        "object": "edit", "created": int(time.time()), "model": config.name,
        "choices": [{"index": i, "text": _postprocess("".join(e.text for e in choice), config)}
                    for i, choice in enumerate(deltas)],
        "usage": usage,
    })
