"""POST /v1/chat/completions: chat, plain or streamed, with structured output and tools."""

from __future__ import annotations

import time
import uuid
from typing import Any

from werkzeug.wrappers import Response

from localai.api import conversation, schemas, tools
from localai.api.generation import record, stream_events
from localai.api.http import ApiRequest, Server, client_gone, json_response, read_json, stream_response
from localai.capabilities import Delta
from localai.errors import InvalidRequest


def _logprobs_content(event: Delta) -> list[dict]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": p, "bytes": b} for t, b, p in lp.top]}
            for lp in (event.logprobs or [])]


def on_chat(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("chat", read_json(request))
    logprobs = None
    if body.get("logprobs"):
        logprobs = int(body.get("top_logprobs") or 0)
    elif body.get("top_logprobs"):
        raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")
    turn = conversation.start(app, request, body, logprobs=logprobs)
    config, plan, generation = turn.config, turn.plan, turn.generation
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.get("stream"):
        envelope = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": config.name, "system_fingerprint": None}
        return stream_response(stream_events(app, generation, request, body, envelope, _ChunkChoices(plan)),
                               on_close=generation.cancel)

    deltas, finished = generation.collect(abandoned=client_gone(request))
    choices = []
    for i in range(generation.choices):
        said = conversation.answer(turn, "".join(e.text for e in deltas[i]))
        message: dict[str, Any] = {"role": "assistant", "content": said.text, "refusal": None}
        reason = finished[i].reason
        calls = said.calls
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
    totals = record(app, request, generation, finished)
    return json_response({"id": completion_id, "object": "chat.completion", "created": created,
                          "model": config.name, "system_fingerprint": None, "choices": choices, "usage": totals})


class _ChunkChoices:
    """The chunk choices of each event of a streamed chat answer.

    As OpenAI: a role-only first delta per choice. With tools, text that may be a call is held
    back until its JSON is complete; calls then go out as OpenAI sends them (id and name, then
    the arguments).
    """

    def __init__(self, plan: tools.ToolPlan) -> None:
        self.plan = plan
        self.sent_role: set[int] = set()
        self.splitters: dict[int, conversation.StreamSplitter] = {}

    def __call__(self, index: int, event: Delta | None, finish: str | None) -> list[dict]:
        def choice(delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> dict:
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

        choices = []
        if index not in self.sent_role:
            self.sent_role.add(index)
            choices.append(choice({"role": "assistant", "content": "", "refusal": None}))
        splitter = self.splitters.setdefault(index, conversation.StreamSplitter(self.plan))
        if event is not None:
            text = splitter.feed(event.text)
            logprobs = {"content": _logprobs_content(event)} if event.logprobs else None
            if text or (logprobs and splitter.plain):
                choices.append(choice({"content": text}, logprobs=logprobs))
            return choices
        text, calls = splitter.finish()
        if text:
            choices.append(choice({"content": text}))
        for i, call in enumerate(calls or []):
            fn = call["function"]
            if self.plan.legacy:
                choices.append(choice({"function_call": {"name": fn["name"], "arguments": ""}}))
                choices.append(choice({"function_call": {"arguments": fn["arguments"]}}))
                continue
            choices.append(choice({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                 "function": {"name": fn["name"], "arguments": ""}}]}))
            choices.append(choice({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]}))
        if calls:
            finish = "function_call" if self.plan.legacy else "tool_calls"
        choices.append(choice({}, finish))
        return choices
