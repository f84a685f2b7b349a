"""Hostile input against the real server: nothing crashes it, wedges it, or fails another client.

Each class of the robustness issue has tests here: native crashes, failure isolation,
validation that means what the schema says, admission limits, and faults. Every sampling
field is exercised end to end with a non-default value and an observable effect.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import CHAT_MODEL as MODEL
from tests.support import FRESH, LiveServer, get, openai_error, post, sse_events, stop_process

ASK = [{"role": "user", "content": "Write one sentence about the sea."}]
REPEAT = [{"role": "user", "content": "Repeat after me: the cat the cat the cat the cat the cat the cat"}]


def chat(server, **fields) -> tuple[int, dict, bytes]:
    return post(server, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "max_tokens": 12, **fields})


def text_of(raw: bytes) -> str:
    return json.loads(raw)["choices"][0]["message"]["content"]


def healthy(server) -> bool:
    return get(server, "/healthz")[0] == 200


def token_id(server, text: str) -> int:
    status, _, raw = post(server, "/v1/tokenize", {"model": MODEL, "content": text})
    tokens = json.loads(raw)["tokens"]
    assert status == 200 and len(tokens) == 1, tokens
    return tokens[0]


# ---- native failures end one request, never the process ----------------------------------------

def test_a_complete_grammar_with_eos_banned_ends_the_answer(server):
    """llama.cpp aborts the process when a grammar that only allows end-of-generation accepts
    another token; with ignore_eos that was every such request."""
    for stream in (False, True):
        status, _, raw = chat(server, grammar='root ::= "a"', ignore_eos=True, stream=stream)
        assert status == 200, raw
        if stream:
            chunks = [e for e in sse_events(raw) if e != "[DONE]"]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "a"
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        else:
            body = json.loads(raw)
            assert body["choices"][0]["message"]["content"] == "a"
            assert body["choices"][0]["finish_reason"] == "stop"
    assert healthy(server)


def test_biases_that_leave_the_grammar_no_token_are_a_400(server):
    banned = token_id(server, "a")
    status, _, raw = chat(server, grammar='root ::= "a"', logit_bias={str(banned): -100})
    error = openai_error(status, raw, 400, "logit_bias")
    assert error["code"] == "no_candidate"
    assert healthy(server) and chat(server)[0] == 200


@pytest.mark.parametrize("field, value", [("presence_penalty", 1.5), ("frequency_penalty", 1.0),
                                          ("repeat_penalty", 1.3)])
def test_penalties_are_served(server, field, value):
    status, _, raw = chat(server, **{field: value})
    assert status == 200, raw  # every request with a penalty answered 500


# ---- one client's bad value fails only that client -----------------------------------------------

HOSTILE = [
    ("/v1/completions", {"model": MODEL, "prompt": "Hi", "logprobs": 1.0, "max_tokens": 4}),
    ("/v1/chat/completions", {"model": MODEL, "messages": ASK, "grammar": 'root ::= "a"', "ignore_eos": True}),
    ("/v1/chat/completions", {"model": MODEL, "messages": ASK, "top_k": 10 ** 9}),
    ("/v1/chat/completions", {"model": MODEL, "messages": ASK, "seed": 1.5}),
    ("/v1/chat/completions", {"model": MODEL, "messages": ASK, "logit_bias": {"99999999": 5}}),
    ("/v1/chat/completions", {"model": MODEL, "messages": ASK, "repeat_last_n": 10 ** 7, "repeat_penalty": 1.2}),
    ("/v1/completions", {"model": MODEL, "prompt": [[1, 2], [3, 10 ** 9]]}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x" * 30000}]}),
]


def test_a_stream_finishes_unharmed_while_hostile_requests_arrive(server):
    body = {"model": MODEL, "messages": REPEAT, "temperature": 0, "max_tokens": 48, "ignore_eos": True, **FRESH}
    alone = "".join(c["choices"][0]["delta"].get("content") or ""
                    for c in sse_events(post(server, "/v1/chat/completions", {**body, "stream": True})[2])[:-1])
    with ThreadPoolExecutor(4) as pool:
        streamed = pool.submit(post, server, "/v1/chat/completions", {**body, "stream": True})
        replies = [pool.submit(post, server, path, hostile) for path, hostile in HOSTILE * 2]
        statuses = [r.result()[0] for r in replies]
        status, _, raw = streamed.result()
    assert status == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1] if isinstance(e, dict))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1]) == alone
    assert all(s < 500 for s in statuses), statuses


# ---- validation means what the schema says -------------------------------------------------------

@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", b'{"messages": ' + b"[" * 200 + b"]" * 200 + b"}", None),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\udc80"}]}', None),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 1e999}', None),
    ("/v1/chat/completions", b'\xff\xfe{"messages": []}', None),
    ("/v1/chat/completions", {"messages": ASK, "seed": 1.5}, "seed"),
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 3.0}, "max_tokens"),
    ("/v1/chat/completions", {"messages": ASK, "n": 17}, "n"),
    ("/v1/chat/completions", {"messages": ASK, "seed": 2 ** 64}, "seed"),
    ("/v1/chat/completions", {"messages": ASK, "top_k": 10 ** 9}, "top_k"),
    ("/v1/chat/completions", {"messages": ASK, "repeat_last_n": 10 ** 7}, "repeat_last_n"),
    ("/v1/chat/completions", {"messages": ASK, "repeat_penalty": 1e6}, "repeat_penalty"),
    ("/v1/chat/completions", {"messages": ASK, "logit_bias": {"-3": 1}}, "logit_bias"),
    ("/v1/chat/completions", {"messages": ASK, "logit_bias": {"12": 500}}, "logit_bias.12"),
    ("/v1/chat/completions", {"messages": ASK, "stop": ["x"] * 17}, "stop"),
    ("/v1/chat/completions", {"messages": ASK, "grammar": "root ::= " + "(" * 100 + '"a"' + ")" * 100}, "grammar"),
    ("/v1/chat/completions", {"messages": ASK, "grammar": "x" * 200_000}, "grammar"),
    ("/v1/chat/completions", {"messages": ASK, "tools": [
        {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "pattern": "(" * 40 + "a" + ")" * 40}}}}, "response_format"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}] * 5000}, "messages"),
    ("/v1/completions", {"prompt": [0] * 200_000}, "prompt"),
    ("/v1/completions", {"prompt": [1.0, 2.0]}, "prompt.0"),
    ("/v1/completions", {"prompt": "hi", "best_of": 21}, "best_of"),
    ("/v1/embeddings", {"input": ["x"] * 2049}, "input"),
    ("/v1/tokenize", {"content": 5}, "content"),
])
def test_malformed_values_are_400s_naming_the_field(server, path, body, param):
    status, _, raw = post(server, path, body if isinstance(body, bytes) else {"model": MODEL, **body})
    openai_error(status, raw, 400, param)


def test_a_huge_array_is_refused_without_collecting_errors(server):
    # 24 MB of zeros: over the JSON body limit, refused by size before anything is parsed
    status, _, raw = post(server, "/v1/completions", b'{"prompt": [' + b"0," * 12_000_000 + b'0]}')
    openai_error(status, raw, 413)
    # 4 MB of strings where token ids are wanted: the first error ends validation
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": [["x"] * 4] * 250_000})
    openai_error(status, raw, 400, "prompt")
    assert healthy(server)


# ---- every sampling field, end to end, with a visible effect ---------------------------------------

def test_every_sampling_field_does_what_it_says(server):
    greedy = dict(messages=REPEAT, temperature=0, max_tokens=16, **FRESH)
    base = text_of(chat(server, **greedy)[2])
    hot = dict(messages=REPEAT, temperature=1.8, max_tokens=16, seed=5, **FRESH)
    # truncation to one candidate is greedy, whatever the temperature
    for field, value in (("top_k", 1), ("top_p", 1e-6), ("min_p", 1.0)):
        assert text_of(chat(server, **hot, **{field: value})[2]) == base, field
    # typical_p changes what a hot sample can pick; the same seed still gives the same text
    typical = [text_of(chat(server, **hot, typical_p=0.2)[2]) for _ in range(2)]
    assert typical[0] == typical[1]
    # the penalties count the text so far, prompt included (as llama-server): "the sea" is asked
    # about, so a penalised answer avoids repeating "sea"
    plain = dict(messages=ASK, temperature=0, max_tokens=24, **FRESH)
    sea = text_of(chat(server, **plain)[2])
    assert "sea" in sea.lower()
    for field, value in (("repeat_penalty", 1.8), ("presence_penalty", 2.0), ("frequency_penalty", 2.0)):
        assert text_of(chat(server, **plain, **{field: value})[2]) != sea, field
    # ... unless the window they look at is empty
    assert text_of(chat(server, **plain, presence_penalty=2.0, repeat_last_n=0)[2]) == sea
    # logit_bias: a banned token never appears, a boosted one takes over
    first = json.loads(chat(server, **greedy, logprobs=True)[2])["choices"][0]["logprobs"]["content"][0]["token"]
    banned = token_id(server, first)
    unbanned = json.loads(chat(server, **greedy, logprobs=True, logit_bias={str(banned): -100})[2])
    assert unbanned["choices"][0]["logprobs"]["content"][0]["token"] != first
    boosted = token_id(server, " banana")
    assert "banana" in text_of(chat(server, **greedy, logit_bias={str(boosted): 100})[2])
    # ignore_eos: the answer runs to max_tokens
    short = json.loads(chat(server, messages=[{"role": "user", "content": "Say yes."}], temperature=0,
                            max_tokens=40, ignore_eos=True)[2])
    assert short["usage"]["completion_tokens"] == 40 and short["choices"][0]["finish_reason"] == "length"
    # seed: the same seed, the same hot sample; max_completion_tokens bounds like max_tokens
    assert text_of(chat(server, **hot)[2]) == text_of(chat(server, **hot)[2])
    bounded = json.loads(chat(server, messages=REPEAT, max_completion_tokens=3)[2])
    assert bounded["usage"]["completion_tokens"] == 3


# ---- admission and limits ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(chat_models_path):
    live = LiveServer(chat_models_path, "--parallel", "1", "--threads", "2", "--max-queue", "1",
                      "--request-timeout", "3", "--json-limit", "1", "--max-request-tokens", "3000",
                      "--idle-timeout", "2")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def busy(chat_models_path):
    """Three worker threads, so one model request fills every thread it may have."""
    live = LiveServer(chat_models_path, "--parallel", "1", "--threads", "2", "--server-threads", "3")
    yield live
    live.stop()


def long_body(**extra) -> dict:
    return {"model": MODEL, "messages": ASK, "max_tokens": 2000, "ignore_eos": True, **extra}


def test_json_bodies_over_the_limit_are_413(limited):
    status, _, raw = post(limited, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "x": "y" * 2_000_000})
    openai_error(status, raw, 413)


def test_a_full_queue_answers_429_with_retry_after(limited):
    with ThreadPoolExecutor(5) as pool:
        replies = [pool.submit(post, limited, "/v1/chat/completions", long_body()) for _ in range(5)]
        results = [r.result() for r in replies]
    refused = [(status, headers) for status, headers, _ in results if status == 429]
    assert refused and all(int(headers["Retry-After"]) >= 1 for _, headers in refused)
    assert all(status in (200, 429) for status, _, _ in results)


def test_the_request_time_limit_ends_a_long_generation(limited):
    status, _, raw = post(limited, "/v1/chat/completions", long_body(max_tokens=2000))
    body = json.loads(raw)
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    assert 0 < body["usage"]["completion_tokens"] < 2000  # three seconds are far too few for 2000 tokens


def test_the_token_budget_bounds_choices_times_max_tokens(limited):
    status, _, raw = post(limited, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "n": 4,
                                                            "max_tokens": 1000})
    error = openai_error(status, raw, 400, "max_tokens")
    assert error["code"] == "request_too_large"


def test_health_is_answered_while_model_requests_hold_the_threads(busy):
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(post, busy, "/v1/chat/completions", long_body(max_tokens=200)) for _ in range(3)]
        time.sleep(0.5)
        health = [get(busy, "/healthz")[0] for _ in range(5)]
        statuses = sorted(r.result()[0] for r in running)
    assert health == [200] * 5
    assert statuses == [200, 429, 429]  # one model request at a time on three threads; the others are told so


def test_idle_connections_cannot_lock_new_clients_out(limited):
    idle = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(150)]  # Waitress's default cap: 100
    try:
        assert healthy(limited)
        idle[0].settimeout(60)
        assert idle[0].recv(1) == b""  # the server closes an idle connection (after --idle-timeout)
        slow = socket.create_connection(("127.0.0.1", limited.port))
        slow.settimeout(60)
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 60
        closed = False
        while time.monotonic() < deadline and not closed:  # a slow-loris: a header line every second
            try:
                slow.sendall(b"X-Slow: 1\r\n")
                time.sleep(1)
            except OSError:
                closed = True
        assert closed, "a request that never finishes arriving must not hold its connection forever"
    finally:
        for s in idle:
            s.close()
    assert healthy(limited)


def test_a_non_streamed_generation_stops_when_its_client_leaves(busy):
    post(busy, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "max_tokens": 1})  # loaded, whatever ran first
    sock = socket.create_connection(("127.0.0.1", busy.port))
    body = json.dumps(long_body(max_tokens=1500)).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(1)
    sock.close()
    time.sleep(1.5)  # Waitress notices the closed socket; the sequence is cancelled at the next step
    status, _, raw = get(busy, f"/backend/monitor?model={MODEL}")
    assert status == 200 and json.loads(raw)["active_sequences"] == 0


# ---- faults ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broken_models(tmp_path_factory, smollm_path):
    folder = tmp_path_factory.mktemp("broken-models")
    (folder / "good.yaml").write_text("name: good\nparameters: {model: good.gguf}\ncontext_size: 512\n")
    (folder / "truncated.yaml").write_text("name: truncated\nparameters: {model: truncated.gguf}\ncontext_size: 512\n")
    os.link(smollm_path, folder / "good.gguf")
    (folder / "truncated.gguf").write_bytes(smollm_path.read_bytes()[: 3 << 20])
    return folder


def test_a_corrupt_model_fails_its_requests_only_and_is_retried(broken_models):
    live = LiveServer(broken_models, "--threads", "2", "--parallel", "1")
    try:
        for _ in range(2):
            status, _, raw = post(live, "/v1/chat/completions", {"model": "truncated", "messages": ASK})
            error = openai_error(status, raw, 503)
            assert error["code"] == "model_load_failed" and "truncated" in error["message"]
            status, _, raw = post(live, "/v1/chat/completions", {"model": "good", "messages": ASK, "max_tokens": 4})
            assert status == 200, raw
        # repaired on disk: the next request loads it (a failed load is not remembered)
        (broken_models / "truncated.gguf").unlink()
        os.link(broken_models / "good.gguf", broken_models / "truncated.gguf")
        status, _, raw = post(live, "/v1/chat/completions", {"model": "truncated", "messages": ASK, "max_tokens": 4})
        assert status == 200, raw
    finally:
        live.stop()


def test_sigterm_finishes_requests_in_flight_and_exits_zero(chat_models_path):
    live = LiveServer(chat_models_path, "--threads", "2", "--shutdown-grace", "20")
    try:
        result = {}

        def stream() -> None:
            result["reply"] = post(live, "/v1/chat/completions", {**long_body(max_tokens=300), "stream": True})

        thread = threading.Thread(target=stream)
        thread.start()
        time.sleep(0.7)
        live.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        status, _, raw = result["reply"]
        events = sse_events(raw)
        assert status == 200 and events[-1] == "[DONE]"
        assert events[-2]["choices"][0]["finish_reason"] == "length"  # all 300 tokens: it was let finish
        assert live.proc.wait(timeout=60) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", live.port), timeout=5).close()
    finally:
        stop_process(live.proc)
