"""POST /v1/chat/completions: chat, plain or streamed, with structured output and tools."""

from __future__ import annotations

import time
import uuid
from typing import Any

from werkzeug.wrappers import Response

from localai.api import schemas, tools
from localai.api.generation import generation_options, postprocess, record, stream_events
from localai.api.http import ApiRequest, Server, client_gone, json_response, read_json, stream_response
from localai.capabilities import Capability, Delta
from localai.errors import InvalidRequest
from localai.templates import choose_chat_template, render_chat_prompt
from localai.templates.messages import defuse_control_tokens


def _logprobs_content(event: Delta) -> list[dict]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": p, "bytes": b} for t, b, p in lp.top]}
            for lp in (event.logprobs or [])]


def on_chat(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("chat", read_json(request))
    plan = tools.plan_tools(body)
    grammar = tools.tool_grammar(plan) or tools.response_format_grammar(body)
    config = app.resolve_model(request, body.get("model"))
    engine = app.manager.engine_for(config, Capability.TEXT)
    info = engine.prompt_info()
    template = choose_chat_template(config.template, info.chat_template)
    # the client's text cannot carry control tokens: only the template's own text may
    messages = defuse_control_tokens(tools.prepare_messages(body["messages"], plan, template.knows_tools),
                                     info.control_texts)
    prompt = render_chat_prompt(
        messages, model_template=info.chat_template, config_template=config.template,
        roles=config.roles, system_prompt=config.system_prompt, bos_token=info.bos_text, eos_token=info.eos_text,
        tools=defuse_control_tokens(plan.tools, info.control_texts) if plan.active and template.knows_tools
        else None)
    logprobs = None
    if body.get("logprobs"):
        logprobs = int(body.get("top_logprobs") or 0)
    elif body.get("top_logprobs"):
        raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")
    options = generation_options(app, request, body, config, grammar=grammar, logprobs=logprobs)
    generation = engine.generate([prompt], options, n=int(body.get("n") or 1))
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
        text = postprocess("".join(e.text for e in deltas[i]), config)
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
        self.pending: dict[int, list[str]] = {}
        self.plain_text: set[int] = set()

    def __call__(self, index: int, event: Delta | None, finish: str | None) -> list[dict]:
        def choice(delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> dict:
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

        choices = []
        if index not in self.sent_role:
            self.sent_role.add(index)
            choices.append(choice({"role": "assistant", "content": "", "refusal": None}))
        plan = self.plan
        if plan.active:
            held = self.pending.setdefault(index, [])
            if event is not None and index not in self.plain_text:
                held.append(event.text)
                start = "".join(held).lstrip()[:1]
                if start in ("{", "[", ""):
                    return choices
                self.plain_text.add(index)  # ordinary text: release what was held, stream the rest
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
