"""OpenAI's Responses API: ``POST /v1/responses`` (plain or streamed), stored responses and
``previous_response_id``, ``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``,
``POST /v1/responses/input_tokens``.

A request is converted into a chat body (``localai.api.conversation``): ``instructions`` and the
input items (messages, ``function_call``, ``function_call_output``) become chat messages,
function tools and ``tool_choice`` the chat ones, ``text.format`` a ``response_format`` (enforced
by a grammar). What this server cannot do — built-in tools, reasoning, background runs, stored
prompts and conversations, log probabilities — is a 400 naming the field, never ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

from werkzeug.wrappers import Response

from localai.api import conversation, schemas
from localai.api.generation import record
from localai.api.http import (ApiRequest, Server, client_gone, error_info, json_response, read_json_object,
                              stream_response)
from localai.api.response_store import StoredResponse
from localai.capabilities import Delta, Finished
from localai.errors import InvalidRequest, NotFound

ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


def _scope(request: ApiRequest) -> str:
    return request.record.key_scope or ""


# ---- request -> chat body ----------------------------------------------------------------------------

def _refuse_unsupported(body: dict) -> None:
    if body.get("background"):
        raise InvalidRequest("background responses are not supported by this server.", param="background")
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            raise InvalidRequest(f"'{name}' (stored on OpenAI's servers) is not supported by this server.", param=name)
    if body.get("include"):
        raise InvalidRequest("'include' is not supported by this server (it has no extra output to include).",
                             param="include")
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and any(reasoning.get(k) is not None for k in ("effort", "summary",
                                                                                  "generate_summary")):
        raise InvalidRequest("The models of this server do not reason: 'reasoning' is not supported.",
                             param="reasoning")
    if body.get("top_logprobs"):
        raise InvalidRequest("top_logprobs is not supported on the Responses API of this server; use "
                             "/v1/chat/completions for log probabilities.", param="top_logprobs")
    if body.get("truncation") == "auto":
        raise InvalidRequest("truncation 'auto' is not supported: input that does not fit is refused "
                             "(truncation 'disabled').", param="truncation")


def _parts_text(parts: list, where: str) -> list[dict]:
    out = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text", part.get("refusal")), str):
            raise InvalidRequest(f"Content part {where}[{j}] of type {kind!r} is not supported: this server's models "
                                 "take text only (input_text, output_text).", param=where)
        out.append({"type": "output_text" if kind in ("output_text", "refusal") else "input_text",
                    "text": part.get("text", part.get("refusal"))})
    return out


def input_items(value: Any) -> list[dict]:
    """The request's ``input`` as items with ids (a string is one user message)."""
    if isinstance(value, str):
        return [{"id": _new_id("msg"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": value}]}]
    items = []
    for i, raw in enumerate(value):
        where = f"input[{i}]"
        kind = raw.get("type") or ("message" if "role" in raw else None)
        if kind == "message":
            role = raw.get("role")
            if role not in ROLES:
                raise InvalidRequest(f"{where}.role must be one of {', '.join(ROLES)}.", param=f"{where}.role")
            content = raw.get("content")
            if isinstance(content, str):
                parts = [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
            elif isinstance(content, list):
                parts = _parts_text(content, f"{where}.content")
            else:
                raise InvalidRequest(f"{where}.content must be a string or a list of content parts.",
                                     param=f"{where}.content")
            items.append({"id": raw.get("id") or _new_id("msg"), "type": "message", "role": role,
                          "status": "completed", "content": parts})
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(raw.get(key), str):
                    raise InvalidRequest(f"{where}.{key} must be a string.", param=f"{where}.{key}")
            items.append({"id": raw.get("id") or _new_id("fc"), "type": "function_call", "status": "completed",
                          "call_id": raw["call_id"], "name": raw["name"], "arguments": raw["arguments"]})
        elif kind == "function_call_output":
            output = raw.get("output")
            if isinstance(output, list):
                output = "\n".join(p["text"] for p in _parts_text(output, f"{where}.output"))
            if not isinstance(raw.get("call_id"), str) or not isinstance(output, str):
                raise InvalidRequest(f"{where} needs a call_id and an output string.", param=where)
            items.append({"id": raw.get("id") or _new_id("fco"), "type": "function_call_output",
                          "status": "completed", "call_id": raw["call_id"], "output": output})
        elif kind == "reasoning":
            continue  # another model's reasoning: these models have none to continue from
        else:
            raise InvalidRequest(f"Input items of type {kind!r} are not supported by this server (messages, "
                                 "function_call and function_call_output are).", param=f"{where}.type")
    return items


def chat_messages(items: list[dict], instructions: str | None) -> list[dict]:
    """Items as chat messages: developer is system, calls join the assistant turn they belong to."""
    messages: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        if item["type"] == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": "\n".join(p["text"] for p in item["content"])})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    if not messages:
        raise InvalidRequest("The input is empty.", param="input")
    return messages


def _chat_tools(body: dict) -> dict:
    out: dict[str, Any] = {}
    tools = body.get("tools") or []
    chat_tools = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidRequest(f"Tool type {tool.get('type')!r} is not supported by this server: only function "
                                 "tools (built-in tools such as web_search need OpenAI's servers).",
                                 param=f"tools[{i}].type")
        chat_tools.append(conversation.chat_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
    if chat_tools:
        out["tools"] = chat_tools
        out["parallel_tool_calls"] = body.get("parallel_tool_calls", True)
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, dict):
            if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
                raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or {type: function, name}.",
                                     param="tool_choice")
            choice = {"type": "function", "function": {"name": choice["name"]}}
        if chat_tools or choice != "none":
            out["tool_choice"] = choice
    return out


def _response_format(body: dict) -> dict | None:
    fmt = (body.get("text") or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema") or {},
                                                       "strict": fmt.get("strict")}}
    raise InvalidRequest(f"text.format type {fmt.get('type')!r} is not supported: text, json_object or "
                         "json_schema.", param="text.format")


def chat_body(app: Server, request: ApiRequest, body: dict) -> tuple[dict, list[dict], list[dict]]:
    """(the chat body, this request's input items, every item the conversation holds so far)."""
    _refuse_unsupported(body)
    history: list[dict] = []
    previous_id = body.get("previous_response_id")
    if previous_id:
        previous = app.responses.get(_scope(request), previous_id)
        if previous is None:
            raise InvalidRequest(f"Previous response with id '{previous_id}' not found.",
                                 param="previous_response_id", code="previous_response_not_found")
        history = previous.history + previous.response["output"]
    items = input_items(body["input"])
    chat: dict[str, Any] = {"model": body.get("model"), "messages": chat_messages(history + items,
                                                                                  body.get("instructions")),
                            **_chat_tools(body)}
    for key in ("temperature", "top_p", "seed", "stream"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    fmt = _response_format(body)
    if fmt is not None:
        chat["response_format"] = fmt
    return chat, items, history


# ---- the response object -----------------------------------------------------------------------------

class _Draft:
    """A response being made: its id, settings and output items."""

    def __init__(self, body: dict, model: str) -> None:
        self.id = _new_id("resp")
        self.body = body
        self.model = model
        self.created = int(time.time())
        self.output: list[dict] = []

    def obj(self, status: str, *, usage: dict | None = None, incomplete: str | None = None,
            error: dict | None = None) -> dict:
        body = self.body
        fmt = (body.get("text") or {}).get("format") or {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "metadata": body.get("metadata") or {},
            "model": self.model, "output": self.output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": {"format": fmt, "verbosity": "medium"}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": [{**t, "strict": t.get("strict", True)} for t in body.get("tools") or []],
            "top_logprobs": 0, "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage, "user": body.get("user"),
        }


def _usage(totals: dict) -> dict:
    return {"input_tokens": totals["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": totals["prompt_tokens_details"]["cached_tokens"],
                                     "cache_write_tokens": 0},
            "output_tokens": totals["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": totals["total_tokens"]}


def _message_item(text: str, status: str = "completed") -> dict:
    return {"id": _new_id("msg"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _call_items(calls: list[dict], limit: int | None) -> list[dict]:
    return [{"id": _new_id("fc"), "type": "function_call", "status": "completed", "call_id": call["id"],
             "name": call["function"]["name"], "arguments": call["function"]["arguments"]}
            for call in calls[:limit]]


def _finish_status(finished: Finished) -> tuple[str, str | None]:
    return ("incomplete", "max_output_tokens") if finished.reason == "length" else ("completed", None)


def _store(app: Server, request: ApiRequest, body: dict, response: dict, items: list[dict],
           history: list[dict]) -> None:
    if body.get("store", True):
        app.responses.put(_scope(request), StoredResponse(response, items, history + items))


# ---- routes ------------------------------------------------------------------------------------------

def on_create(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("responses", read_json_object(request))
    chat, items, history = chat_body(app, request, body)
    turn = conversation.start(app, request, chat)
    draft = _Draft(body, turn.config.name)
    if body.get("stream"):
        return stream_response(_stream(app, request, body, turn, draft, items, history),
                               on_close=turn.generation.cancel)
    deltas, finished = turn.generation.collect(abandoned=client_gone(request))
    said = conversation.answer(turn, "".join(e.text for e in deltas[0]))
    status, incomplete = _finish_status(finished[0])
    if said.calls:
        draft.output = _call_items(said.calls, body.get("max_tool_calls"))
    else:
        draft.output = [_message_item(said.text, "incomplete" if incomplete else "completed")]
    response = draft.obj(status, usage=_usage(record(app, request, turn.generation, finished)), incomplete=incomplete)
    _store(app, request, body, response, items, history)
    return json_response(response)


def _event(kind: str, sequence: list[int], **fields: Any) -> bytes:
    payload = {"type": kind, "sequence_number": sequence[0], **fields}
    sequence[0] += 1
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _stream(app: Server, request: ApiRequest, body: dict, turn: conversation.ChatTurn, draft: _Draft,
            items: list[dict], history: list[dict]) -> Iterator[bytes]:
    """OpenAI's event sequence: created, in_progress, then per output item added / deltas / done,
    then completed (or incomplete, or failed)."""
    seq = [0]
    yield _event("response.created", seq, response=draft.obj("in_progress")) + \
        _event("response.in_progress", seq, response=draft.obj("in_progress"))
    splitter = conversation.StreamSplitter(turn.plan)
    message: dict | None = None
    parts: list[str] = []
    finished: dict[int, Finished] = {}

    def text_out(text: str) -> Iterator[bytes]:
        nonlocal message
        if not text:
            return
        if message is None:
            message = {**_message_item(""), "status": "in_progress", "content": []}
            draft.output.append(message)
            yield _event("response.output_item.added", seq, output_index=len(draft.output) - 1, item=message)
            yield _event("response.content_part.added", seq, item_id=message["id"], output_index=len(draft.output) - 1,
                         content_index=0, part={"type": "output_text", "text": "", "annotations": []})
        parts.append(text)
        yield _event("response.output_text.delta", seq, item_id=message["id"], output_index=len(draft.output) - 1,
                     content_index=0, delta=text, logprobs=[])

    try:
        for _, event in turn.generation:
            if isinstance(event, Delta):
                chunks = b"".join(text_out(splitter.feed(event.text)))
                if chunks:
                    yield chunks
            else:
                finished[0] = event
    except Exception as exc:  # the headers are out: the failure is the stream's last event
        info = error_info(exc)
        failed = draft.obj("failed", error={"code": info.code or info.type, "message": info.message})
        yield _event("response.failed", seq, response=failed)
        return
    rest, calls = splitter.finish()
    out = [b"".join(text_out(rest))]
    status, incomplete = _finish_status(finished[0])
    if message is not None:
        index = draft.output.index(message)
        text = "".join(parts)  # what the deltas said, exactly
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message.update(status="incomplete" if incomplete else "completed", content=[part])
        out.append(_event("response.output_text.done", seq, item_id=message["id"], output_index=index,
                          content_index=0, text=text, logprobs=[]))
        out.append(_event("response.content_part.done", seq, item_id=message["id"], output_index=index,
                          content_index=0, part=part))
        out.append(_event("response.output_item.done", seq, output_index=index, item=message))
    for item in _call_items(calls or [], body.get("max_tool_calls")):
        index = len(draft.output)
        draft.output.append(item)
        out.append(_event("response.output_item.added", seq, output_index=index,
                          item={**item, "status": "in_progress", "arguments": ""}))
        out.append(_event("response.function_call_arguments.delta", seq, item_id=item["id"], output_index=index,
                          delta=item["arguments"]))
        out.append(_event("response.function_call_arguments.done", seq, item_id=item["id"], output_index=index,
                          arguments=item["arguments"]))
        out.append(_event("response.output_item.done", seq, output_index=index, item=item))
    if not draft.output:  # nothing was said: still one (empty) message, as OpenAI answers
        message = _message_item("")
        draft.output.append(message)
        out.append(_event("response.output_item.added", seq, output_index=0, item=message))
        out.append(_event("response.output_item.done", seq, output_index=0, item=message))
    response = draft.obj(status, usage=_usage(record(app, request, turn.generation, finished)), incomplete=incomplete)
    _store(app, request, body, response, items, history)
    out.append(_event("response.incomplete" if incomplete else "response.completed", seq, response=response))
    yield b"".join(out)


def _stored(app: Server, request: ApiRequest, response_id: str) -> StoredResponse:
    stored = app.responses.get(_scope(request), response_id)
    if stored is None:
        raise NotFound(f"No response found with id '{response_id}'.")
    return stored


def on_retrieve(app: Server, request: ApiRequest, response_id: str) -> Response:
    return json_response(_stored(app, request, response_id).response)


def on_delete(app: Server, request: ApiRequest, response_id: str) -> Response:
    if not app.responses.delete(_scope(request), response_id):
        raise NotFound(f"No response found with id '{response_id}'.")
    return json_response({"id": response_id, "object": "response", "deleted": True})


def on_input_items(app: Server, request: ApiRequest, response_id: str) -> Response:
    """The request's input items, newest first by default (OpenAI's ``order``, ``limit``, ``after``)."""
    items = list(_stored(app, request, response_id).input_items)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
    if order == "desc":
        items.reverse()
    after = request.args.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit") from None
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit")
    page = items[:limit]
    return json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


def on_input_tokens(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("responses", read_json_object(request))
    chat, _, _ = chat_body(app, request, {**body, "stream": False})
    return json_response({"object": "response.input_tokens", "input_tokens": conversation.count_tokens(app, request,
                                                                                                     chat)})
