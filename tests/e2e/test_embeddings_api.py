"""/v1/embeddings on a live server: the openai SDK for the common paths, raw HTTP for the rest.

The models folder holds the shipped text-embedding-ada-002 YAML (all-MiniLM-L6-v2 on the
bert-embeddings backend), SmolLM2 with `embeddings: true` under another name (llama
backend), and the shipped chat YAML, which does not enable embeddings.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support import ROOT, LiveServer

REFERENCE = json.loads((ROOT / "tests" / "data" / "minilm_reference.json").read_text(encoding="utf-8"))
EMBED_MODEL = "text-embedding-ada-002"
LLAMA_EMBED_MODEL = "smollm2-embeddings"
CHAT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def embeddings_models_path(tmp_path_factory, smollm_path) -> Path:
    from localai.convert.bert import convert_bert_to_gguf
    from localai.defaults import EMBEDDING_MODEL_FILE, place
    from localai.fetch import fetch_file

    folder = tmp_path_factory.mktemp("embedding-models")
    convert_bert_to_gguf(fetch_file("minilm_l6_v2"), folder / EMBEDDING_MODEL_FILE)
    place(smollm_path, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    for name in (f"{EMBED_MODEL}.yaml", f"{CHAT_MODEL}.yaml"):
        (folder / name).write_text((ROOT / "models" / name).read_text())
    (folder / f"{LLAMA_EMBED_MODEL}.yaml").write_text(
        f"name: {LLAMA_EMBED_MODEL}\nbackend: llama\nembeddings: true\ncontext_size: 2048\n"
        "parameters:\n  model: SmolLM2-135M-Instruct.Q4_1.gguf\n")
    return folder


@pytest.fixture(scope="module")
def live(embeddings_models_path):
    server = LiveServer(embeddings_models_path, "--threads", "2", "--parallel", "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live):
    from openai import OpenAI

    return OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)


def post(live: LiveServer, body: dict, path: str = "/v1/embeddings") -> tuple[int, dict]:
    request = urllib.request.Request(f"{live.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def as_array(items) -> np.ndarray:
    return np.array([item.embedding for item in items], dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---- the openai SDK ---------------------------------------------------------------------------------

def test_batch_in_input_order_matches_sentence_transformers(client):
    sentences = REFERENCE["sentences"]
    result = client.embeddings.create(model=EMBED_MODEL, input=sentences)  # the SDK asks for base64
    assert [item.index for item in result.data] == list(range(len(sentences)))
    assert result.model == EMBED_MODEL and result.object == "list"
    vectors = as_array(result.data)
    assert vectors.shape == (len(sentences), 384)
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert cosines(vectors, reference).min() >= 0.999  # row i is sentence i
    n_tokens = sum(len(ids) for ids in REFERENCE["token_ids"])
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (n_tokens, n_tokens)


def test_base64_and_float_carry_the_same_vectors(client):
    sentences = REFERENCE["sentences"][:3]
    as_base64 = as_array(client.embeddings.create(model=EMBED_MODEL, input=sentences).data)
    as_float = as_array(client.embeddings.create(model=EMBED_MODEL, input=sentences, encoding_format="float").data)
    assert np.array_equal(as_base64, as_float)  # float JSON round-trips float32 exactly


def test_single_equals_batched(client):
    sentences = REFERENCE["sentences"]
    batched = as_array(client.embeddings.create(model=EMBED_MODEL, input=sentences).data)
    singles = np.concatenate([as_array(client.embeddings.create(model=EMBED_MODEL, input=s).data)
                              for s in sentences])
    # cosine, not components: see tests/integration/test_bert.py on llama.cpp's batch variance
    assert cosines(batched, singles).min() >= 1 - 1e-5
    assert np.abs(batched - singles).max() <= 5e-4


def test_chat_model_with_embeddings_enabled(client):
    texts = ["The quick brown fox jumps over the lazy dog.", "A completely different topic: tax law."]
    result = client.embeddings.create(model=LLAMA_EMBED_MODEL, input=texts)
    vectors = as_array(result.data)
    assert vectors.shape == (2, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = as_array(client.embeddings.create(model=LLAMA_EMBED_MODEL, input=texts[1]).data)
    assert cosines(single, vectors[1:])[0] >= 0.999  # Q4_1: see test_bert.py
    assert cosines(single, vectors[:1])[0] < 0.99
    assert result.usage.prompt_tokens > 0


def test_dimensions_truncate_and_renormalise(client):
    full = as_array(client.embeddings.create(model=EMBED_MODEL, input="Hello, world!").data)[0]
    short = as_array(client.embeddings.create(model=EMBED_MODEL, input="Hello, world!", dimensions=128).data)[0]
    assert short.shape == (128,)
    assert np.allclose(short, full[:128] / np.linalg.norm(full[:128]), atol=1e-6)


# ---- raw HTTP -----------------------------------------------------------------------------------------

def test_token_id_inputs(live):
    ids = REFERENCE["token_ids"]
    status, text_body = post(live, {"model": EMBED_MODEL, "input": REFERENCE["sentences"][:2]})
    assert status == 200
    texts = np.array([d["embedding"] for d in text_body["data"]], dtype=np.float32)
    status, body = post(live, {"model": EMBED_MODEL, "input": ids[:2]})  # a list of lists
    assert status == 200
    assert np.allclose(np.array([d["embedding"] for d in body["data"]], dtype=np.float32), texts, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == len(ids[0]) + len(ids[1])
    status, body = post(live, {"model": EMBED_MODEL, "input": ids[0]})  # one list of ids
    assert status == 200 and len(body["data"]) == 1
    assert cosines(np.array([body["data"][0]["embedding"]]), texts[:1])[0] >= 1 - 1e-5
    assert body["usage"] == {"prompt_tokens": len(ids[0]), "total_tokens": len(ids[0])}


@pytest.mark.parametrize("value", ["", [], [""], ["ok", ""], [[]], [[101, 102], []]])
def test_empty_input_is_400(live, value):
    status, body = post(live, {"model": EMBED_MODEL, "input": value})
    assert status == 400, body
    assert body["error"]["param"] == "input" and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("value", [None, 42, {"text": "x"}, ["a", 1], [1, "a"], [[1, "a"]], [True, False],
                                   [[101, 10**12]], [-1]])
def test_malformed_input_is_400(live, value):
    body = {"model": EMBED_MODEL}
    if value is not None:
        body["input"] = value
    status, reply = post(live, body)
    assert status == 400, reply
    assert set(reply["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("model", [EMBED_MODEL, LLAMA_EMBED_MODEL])
def test_input_over_the_context_is_400(live, model):
    status, body = post(live, {"model": model, "input": ["fine", "word " * 5000]})
    assert status == 400, body
    assert body["error"]["code"] == "context_length_exceeded"
    assert "input[1]" in body["error"]["message"]


def test_model_without_embeddings_is_400(live):
    status, body = post(live, {"model": CHAT_MODEL, "input": "hello"})
    assert status == 400
    assert "embeddings" in body["error"]["message"] and body["error"]["param"] == "model"


def test_bad_options_are_400(live):
    for extra, param in (({"encoding_format": "int8"}, "encoding_format"), ({"dimensions": 0}, "dimensions"),
                         ({"dimensions": 385}, "dimensions"), ({"dimensions": "12"}, "dimensions")):
        status, body = post(live, {"model": EMBED_MODEL, "input": "hello", **extra})
        assert status == 400, (extra, body)
        assert body["error"]["param"] == param


def test_unknown_model_is_404(live):
    status, body = post(live, {"model": "no-such-model", "input": "hello"})
    assert status == 404 and body["error"]["code"] == "model_not_found"


def test_base64_is_little_endian_float32(live):
    status, as_float = post(live, {"model": EMBED_MODEL, "input": "Hello, world!"})
    status64, as_b64 = post(live, {"model": EMBED_MODEL, "input": "Hello, world!", "encoding_format": "base64"})
    assert status == status64 == 200
    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, np.array(as_float["data"][0]["embedding"], dtype=np.float32))


def test_server_still_serves_after_errors(live):
    status, body = post(live, {"model": EMBED_MODEL, "input": ["still", "working"]})
    assert status == 200 and len(body["data"]) == 2
    assert any("POST /v1/embeddings 200 model=text-embedding-ada-002" in line for line in live.log)


def test_tokenize_with_the_embedding_models_wordpiece(live):
    status, body = post(live, {"model": EMBED_MODEL, "content": "Hello world"}, "/v1/tokenize")
    assert status == 200
    assert body["tokens"] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP] in BERT's uncased vocabulary
    status, body = post(live, {"model": EMBED_MODEL, "input": "Hello world"}, "/v1/embeddings")
    assert body["usage"]["prompt_tokens"] == 4
