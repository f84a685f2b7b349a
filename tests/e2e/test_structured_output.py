"""Structured output and tool calls through the live server with the openai SDK (SmolLM2)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.support import CHAT_MODEL as MODEL
from tests.support import post

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"timezone": {"type": "string", "maxLength": 30}}, "required": ["timezone"]}}}
ASK = [{"role": "user", "content": "What's the weather like in Paris today?"}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-unused", max_retries=0)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_call(client, choice):
    result = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL, TIME_TOOL],
                                            tool_choice=choice, temperature=0, max_tokens=80)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls"
    assert message.content is None and message.tool_calls
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        tool = {"get_weather": WEATHER_TOOL, "get_time": TIME_TOOL}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    if isinstance(choice, dict):
        assert [c.function.name for c in message.tool_calls] == ["get_weather"]


def test_forced_tool_call_streamed(client):
    stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL],
                                            tool_choice="required", temperature=0, max_tokens=80, stream=True)
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    parts = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert parts[0].id and parts[0].function.name == "get_weather" and parts[0].type == "function"
    arguments = "".join(p.function.arguments or "" for p in parts if p.index == 0)
    jsonschema.validate(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_result_round_trips_into_the_next_prompt(client):
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL],
                                           tool_choice="required", temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    follow = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "sunny"})},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=follow, tools=[WEATHER_TOOL], tool_choice="none",
                                            temperature=0, max_tokens=40)
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    # the call and its result were rendered into the prompt (not dropped as empty content)
    baseline = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL], tool_choice="none",
                                              max_tokens=1)
    assert answer.usage.prompt_tokens > baseline.usage.prompt_tokens + 25


def test_auto_tool_choice_gives_text_or_a_valid_call(client):
    result = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL], temperature=0,
                                            max_tokens=80)
    message = result.choices[0].message
    if message.tool_calls:
        assert result.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments),
                            WEATHER_TOOL["function"]["parameters"])
    else:
        assert message.content and not message.content.lstrip().startswith("{")


def test_legacy_functions(client):
    result = client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_TOOL["function"]],
                                            function_call={"name": "get_weather"}, temperature=0, max_tokens=80)
    choice = result.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments), WEATHER_TOOL["function"]["parameters"])


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_response(client, stream):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Describe a fictional person as JSON."}],
                  response_format={"type": "json_schema",
                                   "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
                  temperature=0.7, seed=3, max_tokens=120)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                       if c.choices)
    else:
        result = client.chat.completions.create(**kwargs)
        assert result.choices[0].finish_reason == "stop"
        text = result.choices[0].message.content
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_response(client, stream):
    kwargs = dict(model=MODEL, messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Return a JSON object with the keys name and color for a cat."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=150)
    if stream:
        chunks = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        result = client.chat.completions.create(**kwargs)
        assert result.choices[0].finish_reason == "stop"
        text = result.choices[0].message.content
    assert isinstance(json.loads(text), dict)


def test_raw_gbnf_grammar(server):
    status, _, raw = post(server, "/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Is the sky blue?"}],
        "grammar": 'root ::= "yes" | "no"', "temperature": 0, "max_tokens": 5})
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"] in ("yes", "no")


@pytest.mark.parametrize("body, param, code", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {"type": "null"}}}}},
     "response_format", "unsupported_schema"),
    ({"grammar": "root ::= ( unclosed"}, "grammar", "invalid_grammar"),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", None),
    ({"tool_choice": "required"}, "tool_choice", None),
])
def test_bad_structured_requests(server, body, param, code):
    status, _, raw = post(server, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "max_tokens": 4, **body})
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert error["param"] == param and error["code"] == code
