"""A seeded fuzzer against the live server: a thousand malformed requests across every JSON route.

Hypothesis draws each request from a valid body of its route (a field set to an arbitrary or
hostile JSON value, removed, or added), from arbitrary JSON, or from arbitrary bytes. Every
answer must be below 500 and every refusal OpenAI-shaped; a stream may not carry a server
error either. Afterwards the server must still answer, and answer correctly.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localai.api.schemas import SCHEMAS
from tests.support import CHAT_MODEL, LiveServer, get, post, sse_events

EMBED_MODEL = "fuzz-embeddings"
EXAMPLES = 1000

BASES = {
    "/v1/chat/completions": ("chat", {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 3}),
    "/v1/completions": ("completion", {"model": CHAT_MODEL, "prompt": "Once", "max_tokens": 3}),
    "/v1/edits": ("edit", {"model": CHAT_MODEL, "instruction": "fix it", "input": "teh cat", "max_tokens": 3}),
    "/v1/embeddings": ("embeddings", {"model": EMBED_MODEL, "input": "hi"}),
    "/v1/images/generations": ("images", {"prompt": "a red square", "size": "256x256", "step": 1}),
    "/v1/tokenize": ("tokenize", {"model": CHAT_MODEL, "content": "hi"}),
    "/backend/monitor": (None, {"model": CHAT_MODEL}),
}
FIELDS = {path: sorted(SCHEMAS[kind]["properties"]) if kind else ["model"] for path, (kind, _) in BASES.items()}

scalars = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=False,
                                                                                      allow_infinity=False)
           | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
    st.text(max_size=12), inner, max_size=6), max_leaves=24)
hostile_values = st.sampled_from([
    -1, 0, 2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 64), 1e308, -1e308, 1.5, 3.0, "", "\ud800", "\x00", "x" * 10000,
    [[[[[[[[[[[[]]]]]]]]]]]], [0] * 5000, ["x"] * 3000, {"": None}, True, [], {},
    'root ::= "a"', "root ::= (", "root ::= root", {"type": "object"}, {"type": "json_schema"},
    [{"role": "user"}], [{"role": "tool", "content": None}], [{"type": "function", "function": {"name": "x"}}] * 2,
])
values = json_values | hostile_values


@st.composite
def hostile_requests(draw) -> tuple[str, bytes]:
    path = draw(st.sampled_from(sorted(BASES)))
    kind = draw(st.sampled_from(["mutate"] * 6 + ["json", "bytes"]))
    if kind == "bytes":
        return path, draw(st.binary(max_size=300))
    if kind == "json":
        return path, json.dumps(draw(json_values)).encode()
    body = dict(BASES[path][1])
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from([*FIELDS[path], "unknown"]))
        if draw(st.booleans()) and field in body:
            del body[field]
        else:
            body[field] = draw(values)
    return path, json.dumps(body).encode()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, smollm_path):
    import os

    folder = tmp_path_factory.mktemp("fuzz-models")
    os.link(smollm_path, folder / "smollm.gguf")
    (folder / "chat.yaml").write_text(f"name: {CHAT_MODEL}\nparameters: {{model: smollm.gguf}}\ncontext_size: 96\n")
    (folder / "embed.yaml").write_text(f"name: {EMBED_MODEL}\nparameters: {{model: smollm.gguf}}\n"
                                       "context_size: 96\nembeddings: true\n")
    live = LiveServer(folder, "--threads", "2", "--parallel", "2", "--request-timeout", "3")
    yield live
    live.stop()


def check(path: str, status: int, raw: bytes) -> None:
    if status == 501 and path == "/v1/images/generations":  # a build without the image backend says so
        return
    assert status < 500, raw[:400]
    if status >= 400:
        error = json.loads(raw)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert error["type"] == "invalid_request_error"
    elif raw.startswith(b"data: "):
        for event in sse_events(raw):
            assert not (isinstance(event, dict) and "error" in event and event["error"]["type"] == "server_error"), \
                event


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(request_=hostile_requests())
def test_a_thousand_hostile_requests_get_no_5xx(fuzz_server, request_):
    path, body = request_
    status, _, raw = post(fuzz_server, path, body)
    check(path, status, raw)


def test_the_server_is_healthy_after_the_fuzzing(fuzz_server):
    assert get(fuzz_server, "/healthz")[0] == 200
    status, _, raw = post(fuzz_server, "/v1/chat/completions", {
        "model": CHAT_MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0, "max_tokens": 8, "cache_prompt": False})
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"]
