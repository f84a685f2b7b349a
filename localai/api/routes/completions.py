"""POST /v1/completions: OpenAI's legacy text completion (batched prompts, echo, logprobs,
best_of, suffix)."""

from __future__ import annotations

import time
import uuid

from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.generation import check_choices, generation_options, postprocess, record, stream_events
from localai.api.http import ApiRequest, Server, client_gone, json_response, read_json, stream_response
from localai.capabilities import Capability, Delta
from localai.errors import InvalidRequest
from localai.templates import render_completion_prompt


def completion_logprobs(events: list[Delta], offset: int) -> dict:
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


def batched_prompts(prompt: str | list) -> list[str | list[int]]:
    """OpenAI's prompt forms (a string, strings, token ids, lists of token ids) as a list of prompts."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)


def on_completions(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("completion", read_json(request))
    prompts = batched_prompts(body["prompt"])
    n = int(body.get("n") or 1)
    best_of = int(body.get("best_of") or n)
    if best_of < n:
        raise InvalidRequest(f"best_of ({best_of}) must be at least n ({n}).", param="best_of")
    if best_of > n and body.get("stream"):
        raise InvalidRequest("best_of cannot be used with stream: the best completions are only known at the end.",
                             param="best_of")
    check_choices(len(prompts), best_of)
    config = app.resolve_model(request, body.get("model"))
    engine = app.manager.engine_for(config, Capability.TEXT)
    suffix = body.get("suffix") or None
    if suffix is None:  # a fill-in-the-middle prompt is laid out by the model's own tokens instead
        prompts = [render_completion_prompt(p, config.template.completion) if isinstance(p, str) else p
                   for p in prompts]
    logprobs = body.get("logprobs")
    logprobs = None if logprobs is None else int(logprobs)
    echo = bool(body.get("echo"))
    # best_of: every candidate's chosen-token logprobs are needed to rank them
    options = generation_options(app, request, body, config,
                                 logprobs=logprobs if best_of == n or logprobs is not None else 0,
                                 prompt_logprobs=echo and logprobs is not None, suffix=suffix)
    generation = engine.generate(prompts, options, n=best_of)
    echo_texts = [(p if isinstance(p, str) else engine.detokenize(p)) if echo else "" for p in prompts]
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.get("stream"):
        echoed: set[int] = set()
        offsets: dict[int, int] = {}

        def make_choices(index: int, event: Delta | None, finish: str | None) -> list[dict]:
            text = event.text if event is not None else ""
            if echo and index not in echoed:
                text = echo_texts[index // generation.n] + text
                echoed.add(index)
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
            if event is not None and event.logprobs:
                start = offsets.get(index, 0)  # text_offset counts from the choice's first character
                choice["logprobs"] = completion_logprobs([event], start)
                offsets[index] = start + sum(len(lp.token) for lp in event.logprobs)
            return [choice]

        envelope = {"id": completion_id, "object": "text_completion", "created": created, "model": config.name,
                    "system_fingerprint": None}
        return stream_response(stream_events(app, generation, request, body, envelope, make_choices),
                               on_close=generation.cancel)

    events, finished = generation.collect(abandoned=client_gone(request))
    choices = []
    for p in range(len(prompts)):
        candidates = range(p * best_of, (p + 1) * best_of)
        if best_of > n:  # OpenAI's "best": the highest log probability per token
            candidates = sorted(candidates, key=lambda i: -_mean_logprob(events[i]))[:n]
        for i in candidates:
            text = postprocess("".join(e.text for e in events[i]), config)
            echo_text = echo_texts[p]
            choices.append({"index": len(choices), "text": echo_text + text,
                            "logprobs": (completion_logprobs(events[i], 0 if echo else len(echo_text))
                                         if logprobs is not None else None),
                            "finish_reason": finished[i].reason})
    totals = record(app, request, generation, finished)  # every candidate's tokens, as OpenAI counts best_of
    return json_response({"id": completion_id, "object": "text_completion", "created": created,
                          "model": config.name, "system_fingerprint": None, "choices": choices, "usage": totals})
