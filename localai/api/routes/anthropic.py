"""Anthropic's Messages API: ``POST /v1/messages`` (plain or streamed with Anthropic's events)
and ``POST /v1/messages/count_tokens``; errors in Anthropic's shape on these routes.

The request becomes a chat body (``localai.api.conversation``): ``system`` a system message,
``text`` blocks text, ``tool_use`` blocks assistant tool calls, ``tool_result`` blocks tool
messages, ``tools`` (``input_schema``) function tools and ``tool_choice`` (auto / any / tool /
none) the chat one.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

from werkzeug.wrappers import Response

from localai.api import conversation, schemas
from localai.api.generation import record
from localai.api.http import ApiRequest, ErrorInfo, Server, client_gone, error_info, json_response, stream_response
from localai.api.http import read_json_object
from localai.capabilities import Delta, Finished
from localai.errors import InvalidRequest

# Anthropic's error types by HTTP status
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}


def error_body(info: ErrorInfo) -> dict:
    """An error in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = ERROR_TYPES.get(info.status, "invalid_request_error" if info.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": info.message}}


def _text(content: Any, where: str) -> str:
    """Text blocks (or a string) as one string; other block types are refused."""
    if isinstance(content, str):
        return content
    texts = []
    for j, block in enumerate(content or []):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}[{j}]: blocks of type {block.get('type')!r} are not supported here "
                                 "(text only).", param=f"{where}[{j}]")
        texts.append(block["text"])
    return "\n".join(texts)


def chat_messages(body: dict) -> list[dict]:
    messages: list[dict] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"], "system")})
    for i, message in enumerate(body["messages"]):
        role, content = message["role"], message["content"]
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        texts: list[str] = []
        calls: list[dict] = []
        for j, block in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    raise InvalidRequest(f"{where}: a tool_use block needs an id and a name.", param=where)
                calls.append({"id": block["id"], "type": "function", "function": {
                    "name": block["name"], "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False)}})
            elif kind == "tool_result" and role == "user":
                if not isinstance(block.get("tool_use_id"), str):
                    raise InvalidRequest(f"{where}: a tool_result block needs a tool_use_id.", param=where)
                result = _text(block.get("content") or "", f"{where}.content")
                if block.get("is_error"):
                    result = f"Error: {result}"
                messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": result})
            else:
                raise InvalidRequest(f"{where}: content blocks of type {kind!r} are not supported in a {role} "
                                     "message by this server (text, tool_use, tool_result).", param=where)
        if calls:
            messages.append({"role": "assistant", "content": "\n".join(texts) or None, "tool_calls": calls})
        elif texts:
            messages.append({"role": role, "content": "\n".join(texts)})
    return messages


def chat_body(body: dict) -> dict:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        raise InvalidRequest("The models of this server do not think: 'thinking' is not supported.", param="thinking")
    chat: dict[str, Any] = {"model": body["model"], "messages": chat_messages(body)}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    for key in ("temperature", "top_p", "top_k", "stream"):
        if body.get(key) is not None:
            chat[key] = body[key]
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest(f"Tool type {tool.get('type')!r} is not supported by this server (client tools "
                                 "with an input_schema are).", param=f"tools[{i}].type")
    if tools:
        chat["tools"] = [conversation.chat_tool(t["name"], t.get("description"), t.get("input_schema"))
                         for t in tools]
    choice = body.get("tool_choice")
    if choice and tools:
        kind = choice["type"]
        if kind == "tool" and not choice.get("name"):
            raise InvalidRequest("tool_choice of type 'tool' needs a name.", param="tool_choice.name")
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(kind) or \
            {"type": "function", "function": {"name": choice.get("name")}}
        chat["parallel_tool_calls"] = not choice.get("disable_parallel_tool_use", False)
    return chat


def _blocks(text: str, calls: list[dict] | None) -> list[dict]:
    blocks: list[dict] = []
    if text and not calls:
        blocks.append({"type": "text", "text": text})
    for call in calls or []:
        blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": call["function"]["name"],
                       "input": json.loads(call["function"]["arguments"])})
    return blocks


def _stop(finished: Finished, calls: list[dict] | None, asked: list[str]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) as Anthropic reports them."""
    if calls:
        return "tool_use", None
    if finished.reason == "length":
        return "max_tokens", None
    if finished.stop_sequence is not None and finished.stop_sequence in asked:
        return "stop_sequence", finished.stop_sequence
    return "end_turn", None


def _usage(totals: dict) -> dict:
    cached = totals["prompt_tokens_details"]["cached_tokens"]
    return {"input_tokens": totals["prompt_tokens"] - cached, "output_tokens": totals["completion_tokens"],
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def on_messages(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("messages", read_json_object(request))
    turn = conversation.start(app, request, chat_body(body))
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    asked = body.get("stop_sequences") or []
    if body.get("stream"):
        return stream_response(_stream(app, request, turn, message_id, asked), on_close=turn.generation.cancel)
    deltas, finished = turn.generation.collect(abandoned=client_gone(request))
    said = conversation.answer(turn, "".join(e.text for e in deltas[0]))
    reason, sequence = _stop(finished[0], said.calls, asked)
    return json_response({"id": message_id, "type": "message", "role": "assistant", "model": turn.config.name,
                          "content": _blocks(said.text, said.calls), "stop_reason": reason, "stop_sequence": sequence,
                          "usage": _usage(record(app, request, turn.generation, finished))})


def _event(kind: str, payload: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload}, ensure_ascii=False)}\n\n".encode()


def _stream(app: Server, request: ApiRequest, turn: conversation.ChatTurn, message_id: str,
            asked: list[str]) -> Iterator[bytes]:
    """Anthropic's events: message_start, per block start / deltas / stop, message_delta, message_stop."""
    yield _event("message_start", {"message": {
        "id": message_id, "type": "message", "role": "assistant", "model": turn.config.name, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}})
    splitter = conversation.StreamSplitter(turn.plan)
    index = -1
    text_open = False
    finished: dict[int, Finished] = {}

    def text_out(text: str) -> bytes:
        nonlocal index, text_open
        if not text:
            return b""
        out = b""
        if not text_open:
            index += 1
            text_open = True
            out += _event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
        return out + _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": text}})

    try:
        for _, event in turn.generation:
            if isinstance(event, Delta):
                chunk = text_out(splitter.feed(event.text))
                if chunk:
                    yield chunk
            else:
                finished[0] = event
    except Exception as exc:  # the headers are out: the failure is the stream's last event
        yield _event("error", {"error": error_body(error_info(exc))["error"]})
        return
    rest, calls = splitter.finish()
    out = [text_out(rest)]
    if text_open:
        out.append(_event("content_block_stop", {"index": index}))
    for block in _blocks("", calls):
        index += 1
        arguments = json.dumps(block["input"], ensure_ascii=False)
        out.append(_event("content_block_start", {"index": index, "content_block": {**block, "input": {}}}))
        out.append(_event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                             "partial_json": arguments}}))
        out.append(_event("content_block_stop", {"index": index}))
    reason, sequence = _stop(finished[0], calls, asked)
    usage = _usage(record(app, request, turn.generation, finished))
    out.append(_event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                        "usage": usage}))
    out.append(_event("message_stop", {}))
    yield b"".join(out)


def on_count_tokens(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("messages_count", read_json_object(request))
    return json_response({"input_tokens": conversation.count_tokens(app, request, chat_body({**body,
                                                                                             "stream": False}))})
