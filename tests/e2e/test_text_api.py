"""The text API end to end: a live `localai run` with SmolLM2, real `openai` SDK and raw HTTP."""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from tests.support import CHAT_MODEL as MODEL
from tests.support import FRESH, post, sse_events

QUESTION = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-unused", max_retries=0)


# ---- chat ----

def test_chat_completion(client):
    result = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32,
                                            extra_body=FRESH)
    assert result.usage.prompt_tokens_details.cached_tokens == 0  # the answer depends on no earlier request
    choice = result.choices[0]
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == MODEL
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    usage = result.usage
    assert usage.prompt_tokens > 10 and 0 < usage.completion_tokens <= 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_stream_chunks_are_shaped_like_openai(server):
    status, headers, raw = post(server, "/v1/chat/completions",
                                {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 24,
                                 "stream": True, **FRESH})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and len(c["choices"]) == 1 for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "Paris" in text


def test_streamed_text_equals_plain_text_and_usage_chunk(client):
    plain = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40,
                                           extra_body=FRESH)
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40,
                                            stream=True, stream_options={"include_usage": True}, extra_body=FRESH)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens


def test_max_tokens_gives_length(client):
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Write a long story."}],
                                            max_tokens=5, temperature=0)
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 5
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Write a long story."}],
                                            max_completion_tokens=3, temperature=0)
    assert result.usage.completion_tokens == 3


def test_stop_sequence_cuts_the_text(client):
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32,
                                          extra_body=FRESH)
    text = full.choices[0].message.content
    word = "Paris"
    assert word in text
    cut = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32, stop=[word],
                                         extra_body=FRESH)
    assert cut.choices[0].message.content == text[: text.index(word)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32,
                                              stop=word, stream=True, extra_body=FRESH)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text[: text.index(word)]


def test_n_choices(client):
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me a joke."}],
                                            n=2, max_tokens=16, temperature=1.0, seed=7)
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.message.content for c in result.choices)
    assert result.usage.completion_tokens >= 2
    assert all(c.finish_reason in ("stop", "length") for c in result.choices)


def test_greedy_and_seeded_sampling_are_deterministic(client):
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "Invent a name for a cat."}], max_tokens=20,
               extra_body=FRESH)
    greedy = [client.chat.completions.create(temperature=0, **ask).choices[0].message.content for _ in range(2)]
    assert greedy[0] == greedy[1]
    seeded = [client.chat.completions.create(temperature=1.2, seed=1234, **ask).choices[0].message.content
              for _ in range(2)]
    assert seeded[0] == seeded[1]
    others = {client.chat.completions.create(temperature=1.2, seed=s, **ask).choices[0].message.content
              for s in (1, 2, 3)}
    assert len(others | {seeded[0]}) > 1


def test_logprobs(client):
    result = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=6,
                                            logprobs=True, top_logprobs=3)
    content = result.choices[0].logprobs.content
    assert len(content) == result.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        # greedy: the chosen token is the most likely one
        assert abs(entry.logprob - entry.top_logprobs[0].logprob) < 1e-4


def test_growing_chat_reuses_the_cached_prefix(client):
    history = [{"role": "user", "content": "My name is Ada. Remember it."}]
    first = client.chat.completions.create(model=MODEL, messages=history, temperature=0, max_tokens=16)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "What is my name?"}]
    second = client.chat.completions.create(model=MODEL, messages=history, temperature=0, max_tokens=16)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 1


# ---- completions and edits ----

def test_completion_plain_and_streamed(client):
    prompt = "The capital of France is"
    plain = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=8, extra_body=FRESH)
    assert plain.object == "text_completion" and plain.choices[0].text
    assert plain.choices[0].finish_reason in ("stop", "length")
    streamed = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=8, stream=True,
                                         extra_body=FRESH)
    assert "".join(c.choices[0].text for c in streamed) == plain.choices[0].text
    echoed = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=8, echo=True,
                                       extra_body=FRESH)
    assert echoed.choices[0].text == prompt + plain.choices[0].text


def test_completion_with_token_ids(server):
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": [504, 3575, 282], "max_tokens": 3,
                                                      "temperature": 0})
    assert status == 200, raw
    body = json.loads(raw)
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 3


def test_batched_prompts_give_n_choices_each_in_openai_order(client):
    prompts = ["The capital of France is", "One, two, three,"]
    alone = [client.completions.create(model=MODEL, prompt=p, temperature=0, max_tokens=6, extra_body=FRESH)
             for p in prompts]
    batched = client.completions.create(model=MODEL, prompt=prompts, n=2, temperature=0, max_tokens=6, echo=True,
                                        extra_body=FRESH)
    assert [c.index for c in batched.choices] == [0, 1, 2, 3]
    # choice p*n + j answers prompt p; greedy, so every answer to a prompt is the one it gets alone
    for i, choice in enumerate(batched.choices):
        prompt, single = prompts[i // 2], alone[i // 2]
        assert choice.text == prompt + single.choices[0].text
    assert batched.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)  # once per prompt, not per n
    assert batched.usage.completion_tokens == 2 * sum(a.usage.completion_tokens for a in alone)
    streamed = client.completions.create(model=MODEL, prompt=prompts, temperature=0, max_tokens=6, stream=True,
                                         stream_options={"include_usage": True}, extra_body=FRESH)
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        if chunk.usage:
            usage = chunk.usage
    assert texts == {0: alone[0].choices[0].text, 1: alone[1].choices[0].text}
    assert set(finishes) == {0, 1}
    assert usage.prompt_tokens == batched.usage.prompt_tokens


def test_batched_token_prompts_and_the_choice_limit(server):
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": [[504, 3575, 282], [504, 3575]],
                                                      "max_tokens": 2, "temperature": 0})
    assert status == 200, raw
    body = json.loads(raw)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 4
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": ["hi"] * 65, "n": 2, "max_tokens": 1})
    assert status == 400 and json.loads(raw)["error"]["param"] == "prompt"
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": [[504], [10**9]], "max_tokens": 1})
    assert status == 400 and "outside the vocabulary" in json.loads(raw)["error"]["message"]


def test_best_of_returns_the_candidates_with_the_highest_logprob_per_token(client, server):
    prompt = "My favourite animal is"
    # best_of=3 ranks the same three seeded candidates that n=3 returns (seeds 11, 12, 13)
    three = client.completions.create(model=MODEL, prompt=prompt, n=3, temperature=1.0, seed=11, max_tokens=8,
                                      logprobs=0, extra_body=FRESH)
    mean = {c.text: sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in three.choices}
    best = client.completions.create(model=MODEL, prompt=prompt, n=1, best_of=3, temperature=1.0, seed=11,
                                     max_tokens=8, extra_body=FRESH)
    assert len(best.choices) == 1 and best.choices[0].index == 0
    assert best.choices[0].text == max(mean, key=mean.get)
    assert best.choices[0].logprobs is None  # not asked for
    assert best.usage.completion_tokens == three.usage.completion_tokens  # every candidate counts
    for body in ({"best_of": 1, "n": 2}, {"best_of": 2, "stream": True}):
        status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 1, **body})
        assert status == 400 and json.loads(raw)["error"]["param"] == "best_of"


def test_echo_with_logprobs_scores_the_prompt(client):
    """lm-evaluation-harness style: echo + logprobs (+ max_tokens=0) gives every prompt token's logprob."""
    prompt = "The capital of France is"
    generated = client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=3,
                                          temperature=0, extra_body=FRESH)
    lp = generated.choices[0].logprobs
    assert "".join(lp.tokens) == generated.choices[0].text  # the prompt's tokens, then the generated ones
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # nothing predicts the first token
    assert all(v <= 0 for v in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    streamed = client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=3,
                                         temperature=0, stream=True, extra_body=FRESH)
    offsets = [o for chunk in streamed for c in chunk.choices if c.logprobs for o in c.logprobs.text_offset]
    assert offsets == lp.text_offset  # offsets run on across chunks, as in the plain answer
    # scoring the whole text as a prompt gives the same tokens and, for the generated ones, the same logprobs
    scored = client.completions.create(model=MODEL, prompt=generated.choices[0].text, echo=True, logprobs=0,
                                       max_tokens=0)
    choice = scored.choices[0]
    assert choice.text == generated.choices[0].text and choice.finish_reason == "length"
    assert scored.usage.completion_tokens == 0
    assert choice.logprobs.tokens == lp.tokens
    for a, b in zip(choice.logprobs.token_logprobs[1:], lp.token_logprobs[1:]):
        assert abs(a - b) < 0.02  # one 8-token pass vs token-by-token decoding: float noise only


def test_suffix_needs_a_fill_in_the_middle_model(server):
    status, _, raw = post(server, "/v1/completions", {"model": MODEL, "prompt": "def add(a, b):", "suffix": "\n",
                                                      "max_tokens": 4})
    assert status == 400  # SmolLM2's GGUF declares no FIM tokens; silently ignoring suffix would mislead
    error = json.loads(raw)["error"]
    assert error["param"] == "suffix" and "fill-in-the-middle" in error["message"]


def test_edit(server):
    status, _, raw = post(server, "/v1/edits", {"model": MODEL, "instruction": "Fix the spelling.",
                                                "input": "The qick brown fox", "temperature": 0, "max_tokens": 24})
    assert status == 200, raw
    body = json.loads(raw)
    assert body["object"] == "edit"
    assert body["choices"][0]["text"] and body["choices"][0]["index"] == 0
    assert body["usage"]["completion_tokens"] > 0


# ---- models, model selection, errors ----

def test_models_list_skips_broken_yaml(client):
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids
    assert "broken" not in ids


def test_retrieve_model(client):
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.owned_by == "localai"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-17")
    assert info.value.body["code"] == "model_not_found"


def test_tokenize_uses_the_models_tokenizer(server, client):
    status, _, raw = post(server, "/v1/tokenize", {"model": MODEL, "content": "The capital of France is"})
    assert status == 200, raw
    tokens = json.loads(raw)["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    # the same ids as a completion counts for that prompt
    result = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=1)
    assert result.usage.prompt_tokens == len(tokens)
    status, _, raw = post(server, "/v1/tokenize", {"model": MODEL, "content": 42})
    assert status == 400 and json.loads(raw)["error"]["param"] == "content"


def test_model_from_bearer_token_and_default(server):
    body = {"messages": QUESTION, "max_tokens": 2}
    status, _, raw = post(server, "/v1/chat/completions", body, {"Authorization": f"Bearer {MODEL}"})
    assert status == 200 and json.loads(raw)["model"] == MODEL
    status, _, raw = post(server, "/v1/chat/completions", body)  # no model at all: the first one
    assert status == 200 and json.loads(raw)["model"] == MODEL


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=QUESTION)
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": MODEL, "messages": QUESTION, "logit_bias": {"abc": 1}}, "logit_bias"),
])
def test_bad_requests_are_openai_errors(server, body, param):
    status, headers, raw = post(server, "/v1/chat/completions", body)
    assert status == 400 and headers["Content-Type"] == "application/json"
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_prompt_over_the_context_is_refused(client):
    long = "word " * 5000
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long}])
    assert info.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100000)
    assert info.value.body["code"] == "context_length_exceeded"


# ---- concurrency and disconnects ----

def test_eight_concurrent_streams(client):
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            stream = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Count from {i} to {i + 5}."}],
                temperature=0, max_tokens=24, stream=True)
            results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 and all(results.values())
    # batching must not change greedy results: each equals the same request made alone
    alone = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count from 3 to 8."}],
                                           temperature=0, max_tokens=24)
    assert results[3] == alone.choices[0].message.content


def test_client_disconnect_then_normal_request(server, client):
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Write a long essay about the sea."}],
                       "max_tokens": 2000, "stream": True, "temperature": 0, "ignore_eos": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while b"data: " not in received:  # the first event arrived: generation is running
            data = sock.recv(4096)
            assert data, "server closed the stream"
            received += data
        assert received.startswith(b"HTTP/1.1 200")
    # the client is gone; the server must free that sequence and carry on
    result = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=16)
    assert "Paris" in result.choices[0].message.content
    assert server.proc.poll() is None
    # the abandoned sequence was freed, not left generating its 2000 tokens
    status, _, raw = post(server, "/backend/monitor", {"model": MODEL})
    assert status == 200
    assert json.loads(raw)["active_sequences"] == 0
