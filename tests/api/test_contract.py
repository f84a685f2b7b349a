"""The HTTP contract in-process: the real app and registry over a fake text engine.

Routing, validation, SSE framing, error shapes, n>1 merging and tool-call streaming, in
milliseconds; the live-server tests in tests/e2e check the same paths with real models.
"""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from localai.api.app import create_app
from localai.manager import ModelManager
from localai.settings import Settings
from tests.fake_engine import FakeTextEngine, fake_registry, write_fake_models
from tests.support import sse_events

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def tool_aware_reply(prompt: str, options) -> str:
    grammar = options.sampling.grammar or ""
    return CALL if "get-weather" in grammar else "It is sunny in Paris today."


@pytest.fixture
def engines():
    return {"fake": FakeTextEngine("fake", tool_aware_reply), "other": FakeTextEngine("other")}


@pytest.fixture
def app(tmp_path, engines):
    write_fake_models(tmp_path, "fake", "other")
    settings = Settings(models_path=tmp_path)
    application = create_app(settings, ModelManager(settings, fake_registry(engines)))
    yield application
    application.close()


@pytest.fixture
def client(app):
    return Client(app)


def post(client: Client, path: str, body, **kwargs):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **kwargs)


def assert_openai_error(response, status: int, param=None, code=None):
    assert response.status_code == status and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


CHAT = {"model": "fake", "messages": [{"role": "user", "content": "Weather?"}]}


# ---- routing ----

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_routes_with_and_without_the_v1_prefix(client, path):
    response = post(client, path, CHAT)
    assert response.status_code == 200
    assert response.get_json()["choices"][0]["message"]["content"] == "It is sunny in Paris today."


def test_unknown_route_and_wrong_method_are_openai_errors(client):
    assert_openai_error(client.get("/v1/nothing-here"), 404, code="not_found")
    response = client.get("/v1/chat/completions")
    assert_openai_error(response, 405, code="method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_models_lists_configured_models(client):
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == ["fake", "other"]
    assert client.get("/v1/models/other").get_json()["id"] == "other"
    assert_openai_error(client.get("/v1/models/missing"), 404, param="model", code="model_not_found")


# ---- validation and error shapes ----

@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    ({"model": "fake"}, "messages"),
    ({**CHAT, "temperature": "hot"}, "temperature"),
    ({**CHAT, "n": 0}, "n"),
    ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({**CHAT, "logit_bias": {"abc": 1}}, "logit_bias"),
    ({**CHAT, "top_logprobs": 3}, "top_logprobs"),
    ({**CHAT, "model": 7}, "model"),
    ({**CHAT, "seed": 3.0}, "seed"),  # integers are integers, in every field
    ({**CHAT, "max_tokens": 2.0}, "max_tokens"),
    ({**CHAT, "temperature": 1e400}, None),  # Python writes Infinity: not JSON
    (json.dumps(CHAT).replace('"messages"', '"temperature": 1e400, "messages"').encode(), None),  # overflows
    (json.dumps(CHAT).replace('"messages"', '"top_p": NaN, "messages"').encode(), None),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', None),  # an unpaired surrogate
    (b"[" * 100 + b"]" * 100, None),  # nested beyond the depth limit
    ({**CHAT, "tool_choice": "required"}, "tool_choice"),
])
def test_bad_chat_requests_are_400s_naming_the_parameter(client, body, param):
    assert_openai_error(post(client, "/v1/chat/completions", body), 400, param=param)


def test_unknown_model_is_404_and_wrong_capability_is_400(client):
    assert_openai_error(post(client, "/v1/chat/completions", {**CHAT, "model": "gpt-9"}), 404, param="model",
                        code="model_not_found")
    error = assert_openai_error(post(client, "/v1/embeddings", {"model": "fake", "input": "x"}), 400,
                                param="model", code="model_not_embedding")
    assert "embeddings" in error["message"]


def test_request_values_reach_the_engine(client, engines):
    post(client, "/v1/chat/completions", {**CHAT, "temperature": 0.25, "top_k": 7, "seed": 3, "max_tokens": 5,
                                          "stop": ["Paris"], "logit_bias": {"12": -100}, "cache_prompt": False})
    _, options = engines["fake"].generated[-1]
    assert options.cache_prompt is False
    assert (options.sampling.temperature, options.sampling.top_k, options.sampling.seed) == (0.25, 7, 3)
    assert options.max_tokens == 5 and options.stop == ["Paris"] and options.sampling.logit_bias == {12: -100.0}


# ---- answers ----

def test_stop_and_max_tokens_shape_the_answer(client):
    body = post(client, "/v1/chat/completions", {**CHAT, "stop": " Paris"}).get_json()
    assert body["choices"][0]["message"]["content"] == "It is sunny in"
    assert body["choices"][0]["finish_reason"] == "stop"
    body = post(client, "/v1/chat/completions", {**CHAT, "max_tokens": 2}).get_json()
    assert body["choices"][0]["message"]["content"] == "It is"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_n_choices_are_merged_in_order_with_one_usage(client):
    body = post(client, "/v1/chat/completions", {**CHAT, "n": 3}).get_json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["choices"][1]["message"]["content"].endswith("(answer 1)")
    usage = body["usage"]
    assert usage["completion_tokens"] == 6 + 7 + 7 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_batched_completions_number_choices_prompt_major(client):
    body = post(client, "/v1/completions", {"model": "other", "prompt": ["one", "two words"], "n": 2,
                                           "max_tokens": 1}).get_json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["prompt_tokens"] == 1 + 2  # each prompt counted once, not per choice


# ---- streaming ----

def test_stream_is_framed_as_openai_sends_it(client):
    response = post(client, "/v1/chat/completions", {**CHAT, "n": 2, "stream": True,
                                                     "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    raw = response.get_data()
    assert raw.endswith(b"data: [DONE]\n\n") and all(b.startswith(b"data: ") for b in raw.split(b"\n\n") if b)
    events = sse_events(raw)
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert [m["finish_reason"] for m in mine].count("stop") == 1 and mine[-1]["finish_reason"] == "stop"
        text = "".join(m["delta"].get("content") or "" for m in mine)
        assert text.startswith("It is sunny in Paris today.")
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6 + 7


def test_stream_error_before_the_first_chunk_is_a_json_error(client):
    response = post(client, "/v1/chat/completions", {**CHAT, "stream": True, "messages": [
        {"role": "user", "content": "word " * 300}]})
    assert_openai_error(response, 400, param="messages", code="context_length_exceeded")


def test_tool_calls_stream_as_openai_sends_them(client):
    response = post(client, "/v1/chat/completions", {**CHAT, "tools": [WEATHER], "tool_choice": "required",
                                                     "stream": True})
    chunks = sse_events(response.get_data())[:-1]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert json.loads(calls[1]["function"]["arguments"]) == {"city": "Paris"}
    assert not any(d.get("content") for d in deltas)  # the call's JSON is never streamed as text
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_answer_without_stream(client):
    body = post(client, "/v1/chat/completions", {**CHAT, "tools": [WEATHER], "tool_choice": "required"}).get_json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}


def test_access_log_line_names_model_and_tokens(client, caplog):
    with caplog.at_level("INFO", logger="localai.http"):
        post(client, "/v1/chat/completions", {**CHAT, "max_tokens": 3}).close()  # the line is written at the end
    line = [r.getMessage() for r in caplog.records if r.name == "localai.http"][-1]
    assert line.startswith("POST /v1/chat/completions 200 model=fake tokens=3 ")


def test_a_load_error_does_not_show_the_servers_paths(tmp_path):
    """The real llama backend failing to load: a 503 naming the file, not where the server keeps it."""
    models = tmp_path / "deep" / "models"
    models.mkdir(parents=True)
    (models / "gone.yaml").write_text("name: gone\nbackend: llama\nparameters:\n  model: gone.gguf\n")
    settings = Settings(models_path=models)
    application = create_app(settings)
    try:
        error = assert_openai_error(post(Client(application), "/v1/chat/completions", {**CHAT, "model": "gone"}),
                                    503, code="model_load_failed")
    finally:
        application.close()
    assert "gone.gguf" in error["message"] and str(tmp_path) not in error["message"], error
