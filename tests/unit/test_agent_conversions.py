"""Responses and Anthropic requests as chat bodies: the pure conversions."""

from __future__ import annotations

import json

import pytest

from localai.api.routes import anthropic, responses
from localai.errors import InvalidRequest


def test_responses_items_become_chat_messages():
    items = responses.input_items([
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}, {"type": "input_text", "text": "Now"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "sunny"}]},
        {"type": "reasoning", "summary": []},
    ])
    assert all(item["id"] for item in items) and len(items) == 6
    messages = responses.chat_messages(items, "System rules.")
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "tool"]
    assert messages[2]["content"] == "Weather?\nNow"
    assert [c["id"] for c in messages[3]["tool_calls"]] == ["c1", "c2"] and messages[3]["content"] == "Checking."
    assert messages[4] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert responses.input_items("hi")[0]["content"] == [{"type": "input_text", "text": "hi"}]


@pytest.mark.parametrize("item, param", [
    ({"role": "robot", "content": "x"}, "input[0].role"),
    ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content"),
    ({"type": "function_call", "call_id": "c", "name": "f"}, "input[0].arguments"),
    ({"type": "computer_call"}, "input[0].type"),
])
def test_responses_items_that_are_refused(item, param):
    with pytest.raises(InvalidRequest) as caught:
        responses.input_items([item])
    assert caught.value.param == param


def test_anthropic_blocks_become_chat_messages():
    body = {"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "Rules."}],
            "stop_sequences": ["END"], "top_k": 3,
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                                                  {"type": "tool_use", "id": "t1", "name": "weather",
                                                   "input": {"city": "Rome"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                              "content": [{"type": "text", "text": "offline"}]},
                                             {"type": "text", "text": "Try again."}]}]}
    chat = anthropic.chat_body(body)
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    call = chat["messages"][2]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Rome"} and call["id"] == "t1"
    assert chat["messages"][3]["content"] == "Error: offline"
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["stop"] == ["END"] and chat["top_k"] == 3 and chat["max_tokens"] == 5
    named = anthropic.chat_body({**body, "tool_choice": {"type": "tool", "name": "weather"}})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "weather"}}


def test_anthropic_error_shape():
    from localai.api.http import ErrorInfo

    assert anthropic.error_body(ErrorInfo(429, "invalid_request_error", "slow down")) == \
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert anthropic.error_body(ErrorInfo(500, "server_error", "x"))["error"]["type"] == "api_error"
