"""OpenAI's Responses API and Anthropic's Messages API through the real server, with the real
`openai` and `anthropic` SDKs and raw HTTP (event order, ids, every output validated against
the SDKs' own types)."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import openai
import pytest
from anthropic.types import Message as AnthropicMessage
from openai.types.responses import Response as OpenAIResponse

from tests.support import CHAT_MODEL as MODEL
from tests.support import LiveServer, openai_error, post, sse_events
from tests.support import get as http_get
from tests.support import request as http_request

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "The weather in a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def live(chat_models_path):
    server = LiveServer(chat_models_path, "--threads", "2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oai(live):
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def claude(live):
    return anthropic.Anthropic(base_url=live.url, api_key="unused", max_retries=0)


def validated(raw: dict) -> OpenAIResponse:
    """The response object, checked against the SDK's pydantic model (types, required fields)."""
    return OpenAIResponse.model_validate(raw)


def sse_with_names(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, payload) of an SSE body with `event:` lines."""
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event"), json.loads(lines["data"])))
    return events


# ---- Responses: create ---------------------------------------------------------------------------------

def test_a_response_with_every_setting_echoed(oai, live):
    status, _, raw = post(live, "/v1/responses", {
        "model": MODEL, "input": [
            {"role": "developer", "content": "Answer in one short sentence."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What colour is the sky?"}]}],
        "instructions": "You are terse.", "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 24, "seed": 7,
        "metadata": {"ticket": "42"}, "user": "tester", "store": False, "truncation": "disabled",
        "parallel_tool_calls": False, "service_tier": "auto", "text": {"format": {"type": "text"}}})
    assert status == 200, raw
    body = json.loads(raw)
    response = validated(body)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete") and response.output_text
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.2, 0.9, 24)
    assert response.metadata == {"ticket": "42"} and response.instructions == "You are terse."
    assert body["store"] is False and body["user"] == "tester" and response.parallel_tool_calls is False
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.content[0].type == "output_text"
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens and usage.output_tokens <= 24
    assert usage.output_tokens_details.reasoning_tokens == 0
    openai_error(*http_get(live, f"/v1/responses/{response.id}")[::2], 404)  # store: false keeps nothing


def test_max_output_tokens_makes_it_incomplete(oai):
    response = oai.responses.create(model=MODEL, input="Write a long story about a dragon.", max_output_tokens=5,
                                    **GREEDY)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.usage.output_tokens == 5


def test_text_format_json_schema_is_enforced(oai):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response = oai.responses.create(model=MODEL, input="Invent a person.", max_output_tokens=80, **GREEDY,
                                    text={"format": {"type": "json_schema", "name": "person", "schema": schema,
                                                     "strict": True}})
    jsonschema.validate(json.loads(response.output_text), schema)
    assert response.text.format.type == "json_schema"
    loose = oai.responses.create(model=MODEL, input='Answer with {"colour": <the colour of grass>}.',
                                 max_output_tokens=200, **GREEDY, text={"format": {"type": "json_object"}})
    assert loose.status == "completed" and isinstance(json.loads(loose.output_text), dict)


def test_a_forced_function_call_round_trip(oai):
    first = oai.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40,
                                 max_tool_calls=1, **GREEDY)
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    assert isinstance(json.loads(call.arguments)["city"], str) and len(first.output) == 1
    second = oai.responses.create(model=MODEL, previous_response_id=first.id, tools=[WEATHER],
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": "Sunny and 21 degrees."}], max_output_tokens=30, **GREEDY)
    assert second.output[0].type == "message" and second.output_text
    # the same round trip stateless: the call and its output sent back as input items
    third = oai.responses.create(model=MODEL, tools=[WEATHER], tool_choice="none", max_output_tokens=30, **GREEDY,
                                 input=[{"role": "user", "content": "What is the weather in Paris?"},
                                        {"type": "function_call", "call_id": call.call_id, "name": call.name,
                                         "arguments": call.arguments},
                                        {"type": "function_call_output", "call_id": call.call_id,
                                         "output": "Sunny and 21 degrees."}])
    assert third.output[0].type == "message"
    required = oai.responses.create(model=MODEL, input="Weather in Oslo?", tools=[WEATHER], tool_choice="required",
                                    parallel_tool_calls=False, max_output_tokens=40, **GREEDY)
    assert [item.type for item in required.output] == ["function_call"]


# ---- Responses: streaming ----------------------------------------------------------------------------

def test_the_stream_has_openai_event_order(live):
    status, headers, raw = post(live, "/v1/responses", {"model": MODEL, "input": "Name two fruits.", "stream": True,
                                                       "max_output_tokens": 40, **GREEDY})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_with_names(raw)
    names = [name for name, _ in events]
    assert [p["type"] for _, p in events] == names
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          names[-1]] and names[-1] in ("response.completed", "response.incomplete")
    assert set(names[4:-4]) == {"response.output_text.delta"}
    item_id = events[2][1]["item"]["id"]
    assert all(p["item_id"] == item_id for _, p in events[3:-2])
    text = "".join(p["delta"] for name, p in events if name == "response.output_text.delta")
    done = next(p for name, p in events if name == "response.output_text.done")
    final = validated(events[-1][1]["response"])
    assert text == done["text"] == final.output_text and final.output[0].id == item_id
    assert validated(events[0][1]["response"]).status == "in_progress"


def test_sdk_stream_and_a_streamed_call(oai):
    with oai.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=200, **GREEDY) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.status == "completed"
    events = list(oai.responses.create(model=MODEL, input="Weather in Rome?", tools=[WEATHER], stream=True,
                                       tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40,
                                       **GREEDY))
    names = [e.type for e in events]
    assert names[2:6] == ["response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done"]
    done = events[4]
    assert json.loads(done.arguments)["city"] and events[-1].response.output[0].arguments == done.arguments


# ---- Responses: stored ---------------------------------------------------------------------------------

def test_stored_responses_continue_retrieve_list_and_delete(oai, live):
    first = oai.responses.create(model=MODEL, input="My name is Ada. Remember it.", max_output_tokens=20, **GREEDY)
    second = oai.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                  max_output_tokens=20, **GREEDY)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens_details.cached_tokens > 20  # the earlier turn's prefix was reused
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert oai.responses.retrieve(first.id).output_text == first.output_text
    items = oai.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "What is my name?"
    counted = oai.responses.input_tokens.count(model=MODEL, input="What is my name?", previous_response_id=first.id)
    assert counted.input_tokens == second.usage.input_tokens and counted.object == "response.input_tokens"
    status, _, raw = http_request(live, "DELETE", f"/v1/responses/{first.id}")
    assert status == 200 and json.loads(raw) == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)
    error = openai_error(*post(live, "/v1/responses", {"model": MODEL, "input": "Hi",
                                                       "previous_response_id": first.id})[::2], 400)
    assert error["param"] == "previous_response_id" and error["code"] == "previous_response_not_found"


def test_stored_responses_are_per_api_key(chat_models_path):
    live = LiveServer(chat_models_path, "--threads", "2", "--api-keys", "sk-alpha-0123456789,sk-beta-0123456789")
    try:
        alpha = openai.OpenAI(base_url=f"{live.url}/v1", api_key="sk-alpha-0123456789", max_retries=0)
        beta = openai.OpenAI(base_url=f"{live.url}/v1", api_key="sk-beta-0123456789", max_retries=0)
        response = alpha.responses.create(model=MODEL, input="Hello", max_output_tokens=4)
        assert alpha.responses.retrieve(response.id).id == response.id
        with pytest.raises(openai.NotFoundError):
            beta.responses.retrieve(response.id)
    finally:
        live.stop()


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"background": True}, "background"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"truncation": "auto"}, "truncation"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input[0].content"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"tool_choice": {"type": "function", "name": "nothing"}, "tools": [WEATHER]}, "tool_choice"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
])
def test_what_cannot_be_honoured_is_refused_by_name(live, extra, param):
    status, _, raw = post(live, "/v1/responses", {"model": MODEL, "input": "Hi", **extra})
    openai_error(status, raw, 400, param)


# ---- Anthropic Messages ---------------------------------------------------------------------------------

def test_anthropic_message(claude):
    # sampling fields are not in the current SDK's signature (the wire format still carries them)
    message = claude.messages.create(model=MODEL, max_tokens=20, extra_body={"temperature": 0.2, "top_p": 0.9,
                                                                             "top_k": 40},
                                     system=[{"type": "text", "text": "You are brief."}],
                                     metadata={"user_id": "u-1"},
                                     messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}])
    AnthropicMessage.model_validate(message.model_dump())
    assert message.id.startswith("msg_") and message.role == "assistant" and message.type == "message"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens") and 0 < message.usage.output_tokens <= 20
    assert message.model == MODEL


def test_anthropic_stop_sequence(claude):
    message = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, stop_sequences=["4"],
                                     messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "4"
    assert "4" not in message.content[0].text


def test_anthropic_stream_event_order(live, claude):
    status, _, raw = post(live, "/v1/messages", {"model": MODEL, "max_tokens": 20, "stream": True, **GREEDY,
                                                 "messages": [{"role": "user", "content": "Say hello."}]},
                          {"anthropic-version": "2023-06-01"})
    assert status == 200
    events = sse_with_names(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"} and all(n == p["type"] for n, p in events)
    text = "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta")
    with claude.messages.stream(model=MODEL, max_tokens=20, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Say hello."}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == text and final.stop_reason == events[-2][1]["delta"]["stop_reason"]


def test_anthropic_tool_use_round_trip(claude):
    first = claude.messages.create(model=MODEL, max_tokens=60, extra_body=GREEDY, tools=[ANTHROPIC_WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": "What is the weather in Rome?"}])
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and isinstance(use.input["city"], str)
    second = claude.messages.create(model=MODEL, max_tokens=30, extra_body=GREEDY, tools=[ANTHROPIC_WEATHER],
                                    messages=[{"role": "user", "content": "What is the weather in Rome?"},
                                              {"role": "assistant", "content": first.model_dump()["content"]},
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": use.id,
                                                                            "content": "Rainy, 12 degrees."}]}])
    assert second.content[0].type == "text" and second.stop_reason in ("end_turn", "max_tokens")
    with claude.messages.stream(model=MODEL, max_tokens=60, extra_body=GREEDY, tools=[ANTHROPIC_WEATHER],
                                tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input["city"]


def test_anthropic_count_tokens_and_errors(live, claude):
    counted = claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    message = claude.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens == message.usage.input_tokens + message.usage.cache_read_input_tokens
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["error"]["type"] == "not_found_error"
    status, _, raw = post(live, "/v1/messages", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    body = json.loads(raw)
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    for extra in ({"thinking": {"type": "enabled", "budget_tokens": 1024}},
                  {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}):
        status, _, raw = post(live, "/v1/messages", {"model": MODEL, "max_tokens": 5,
                                                     "messages": [{"role": "user", "content": "x"}], **extra})
        assert status == 400 and json.loads(raw)["type"] == "error"


def test_anthropic_key_is_x_api_key(chat_models_path):
    live = LiveServer(chat_models_path, "--threads", "2", "--api-keys", "sk-claude-0123456789")
    try:
        good = anthropic.Anthropic(base_url=live.url, api_key="sk-claude-0123456789", max_retries=0)
        assert good.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]).content
        with pytest.raises(anthropic.AuthenticationError) as refused:
            anthropic.Anthropic(base_url=live.url, api_key="sk-wrong", max_retries=0).messages.create(
                model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
        assert refused.value.body["error"]["type"] == "authentication_error"
    finally:
        live.stop()


def test_chat_completions_still_stream_tool_calls(live):
    """The chat route now shares the splitter with the new APIs: a streamed forced call is whole."""
    status, _, raw = post(live, "/v1/chat/completions", {
        "model": MODEL, "stream": True, "max_tokens": 40, **GREEDY,
        "messages": [{"role": "user", "content": "Weather in Lima?"}],
        "tools": [{"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    chunks = [c for c in sse_events(raw) if c != "[DONE]"]
    calls = [d["tool_calls"][0] for c in chunks for d in [c["choices"][0]["delta"]] if d.get("tool_calls")]
    assert calls[0]["function"]["name"] == "get_weather" and json.loads(calls[1]["function"]["arguments"])["city"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
