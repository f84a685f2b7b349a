"""Pure logic of tool calling and response formats."""

from __future__ import annotations

import json

import jsonschema
import pytest

from localai.api import tools
from localai.api.http import error_info
from localai.errors import RequestError
from tests import gbnf_support as gbnf

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
    "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string", "maxLength": 10}}, "required": ["tz"]}}}


def test_plan_modes():
    assert not tools.plan_tools({}).active
    assert tools.plan_tools({"tools": [WEATHER]}).mode == "auto"
    assert tools.plan_tools({"tools": [WEATHER], "tool_choice": "none"}).active is False
    named = tools.plan_tools({"tools": [WEATHER, TIME], "tool_choice": {"type": "function",
                                                                       "function": {"name": "get_time"}}})
    assert named.mode == "named" and [t["function"]["name"] for t in named.tools] == ["get_time"]
    legacy = tools.plan_tools({"functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}})
    assert legacy.legacy and legacy.mode == "named"


@pytest.mark.parametrize("body", [
    {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "missing"}}},
    {"tool_choice": "required"},
    {"tools": []},
    {"tools": [{"type": "retrieval"}]},
    {"tools": [{"type": "function", "function": {"name": "has space"}}]},
])
def test_bad_tool_requests(body):
    with pytest.raises(RequestError) as info:
        tools.plan_tools(body)
    assert error_info(info.value).status == 400


@pytest.mark.parametrize("mode", ["required", "named", "auto"])
def test_tool_grammars_parse_and_their_samples_are_valid_calls(mode):
    body = {"tools": [WEATHER, TIME], "tool_choice": {"required": "required", "auto": "auto",
                                                      "named": {"type": "function", "function": {"name": "get_weather"}}}[mode]}
    plan = tools.plan_tools(body)
    grammar = gbnf.parse(tools.tool_grammar(plan))
    import random

    rng = random.Random(5)
    for _ in range(30):
        text = gbnf.sample(grammar, rng)
        calls = tools.parse_tool_calls(text, plan)
        if mode == "auto" and not text.lstrip().startswith(("{", "[")):
            assert calls is None
            continue
        assert calls, text
        for call in calls:
            schema = {"get_weather": WEATHER, "get_time": TIME}[call["function"]["name"]]["function"]["parameters"]
            jsonschema.validate(json.loads(call["function"]["arguments"]), schema)


def test_auto_grammar_refuses_text_starting_like_json_but_invalid():
    grammar = tools.tool_grammar(tools.plan_tools({"tools": [WEATHER]}))
    assert gbnf.matches(grammar, "It is sunny.")
    assert gbnf.matches(grammar, '{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert not gbnf.matches(grammar, '{"name": "get_weather", "arguments": {"town": "Paris"}}')
    assert not gbnf.matches(grammar, "{not json")


@pytest.mark.parametrize("text, names", [
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', ["get_weather"]),
    ('```json\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n```', ["get_time"]),
    ('Sure! {"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', ["get_weather"]),
    ('[{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_time", "arguments": {"tz": "B"}}]',
     ["get_weather", "get_time"]),
    ("The weather is nice.", None),
    ('{"name": "unknown_tool", "arguments": {}}', None),
])
def test_parse_tool_calls(text, names):
    plan = tools.plan_tools({"tools": [WEATHER, TIME]})
    calls = tools.parse_tool_calls(text, plan)
    assert (None if calls is None else [c["function"]["name"] for c in calls]) == names
    for call in calls or []:
        assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_messages_for_templates_without_tools():
    plan = tools.plan_tools({"tools": [WEATHER]})
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "X"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    out = tools.prepare_messages(messages, plan, template_knows_tools=False)
    assert out[0]["role"] == "system" and "get_weather" in out[0]["content"]
    assert json.loads(out[2]["content"]) == {"name": "get_weather", "arguments": {"city": "X"}}
    assert "call_1" in out[3]["content"] and "sunny" in out[3]["content"]
    assert tools.prepare_messages(messages, plan, template_knows_tools=True) == messages


def test_response_formats():
    assert tools.response_format_grammar({}) is None
    assert tools.response_format_grammar({"response_format": {"type": "text"}}) is None
    assert gbnf.matches(tools.response_format_grammar({"response_format": {"type": "json_object"}}), '{"a": 1}')
    with pytest.raises(RequestError) as info:
        tools.response_format_grammar({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "patternProperties": {"^a": {}}}}}})
    assert info.value.code == "unsupported_schema" and "patternProperties" in info.value.message
