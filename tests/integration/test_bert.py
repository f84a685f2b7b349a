"""libbert through its bindings, and the two embedding engines, on the real all-MiniLM-L6-v2.

Reference vectors (tests/data/minilm_reference.json) were computed once with
sentence-transformers on torch; how is recorded in the file's "made_with".

On batch-vs-single tolerances: llama.cpp's CPU kernels are not batch-invariant. Which
flash-attention kernel runs depends on the number of tokens in the pass (a tiled F32 one
from 64 query rows up, an F16 one below), and sums run in a different order when an input
sits at another offset of the batch; the F16 GELU table and F16 activations then turn
those 1e-7 differences into up to ~1.5e-4 in single components. The vectors still agree
to a cosine of 1 - 1e-8, so "equal" here means cosine >= 1 - 1e-5 and every component
within 5e-4.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from localai.bindings import llama as L
from localai.bindings.bert import BertModel
from localai.errors import ContextLengthExceeded, InvalidRequest, ModelLoadError, NativeError

ROOT = Path(__file__).resolve().parent.parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "minilm_reference.json").read_text(encoding="utf-8"))

SAME_COSINE = 1 - 1e-5
SAME_COMPONENT = 5e-4


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory) -> Path:
    from localai.convert.bert import convert_bert_to_gguf
    from localai.fetch import fetch_file

    return convert_bert_to_gguf(fetch_file("minilm_l6_v2"), tmp_path_factory.mktemp("bert") / "minilm.f16.gguf")


@pytest.fixture(scope="module")
def bert(minilm_gguf):
    with BertModel(minilm_gguf, n_threads=2) as model:
        yield model


def many_sentences(n: int) -> list[str]:
    subjects = ["The cat", "A young engineer", "My neighbour", "The old library", "A small robot", "Our team",
                "The river", "This recipe", "Every student", "The museum guide"]
    verbs = ["quietly explains", "carefully repairs", "often visits", "never forgets", "slowly paints",
             "happily shares", "rarely questions", "proudly describes"]
    objects = ["the broken bicycle.", "a forgotten song.", "the morning news.", "an ancient map.",
               "the new database schema.", "a cup of green tea.", "the winter garden.", "our quarterly report."]
    return [f"{s} {v} {o}" for s, v, o in itertools.islice(itertools.product(subjects, verbs, objects), n)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_same_vectors(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert cosines(a, b).min() >= SAME_COSINE
    assert np.abs(a - b).max() <= SAME_COMPONENT


# ---- the model and its tokenizer ----------------------------------------------------------------

def test_model_facts(bert):
    assert (bert.n_embd, bert.n_max_tokens, bert.n_vocab, bert.pooling) == (384, 512, 30522, "mean")
    assert bert.n_batch > 1 and bert.n_seq_max > 1 and bert.n_threads == 2 and bert.n_workers >= 1


def test_tokenizer_matches_huggingface(bert):
    for sentence, ids in zip(REFERENCE["sentences"], REFERENCE["token_ids"]):
        assert bert.tokenize(sentence) == ids, sentence


def test_matches_sentence_transformers(bert):
    vectors, counts = bert.encode(REFERENCE["sentences"])
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert cosines(vectors, reference).min() >= 0.999
    assert counts == [len(ids) for ids in REFERENCE["token_ids"]]


def test_vectors_are_unit_length_unless_asked_not_to(bert):
    vectors, _ = bert.encode(REFERENCE["sentences"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    raw, _ = bert.encode(REFERENCE["sentences"], normalize=False)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-2)  # mean-pooled MiniLM vectors are far from unit length
    assert np.allclose(raw / norms[:, None], vectors, atol=1e-6)


# ---- batching ----------------------------------------------------------------------------------------

def test_batch_equals_singles(bert):
    sentences = REFERENCE["sentences"]
    batched, _ = bert.encode(sentences)
    singles = np.concatenate([bert.encode([s])[0] for s in sentences])
    assert_same_vectors(batched, singles)


def test_batch_larger_than_one_pass_keeps_input_order(bert):
    # More inputs than sequences per pass and more tokens than one pass holds: several passes.
    sentences = many_sentences(600)
    vectors, counts = bert.encode(sentences)
    assert len(sentences) > bert.n_seq_max and sum(counts) > bert.n_batch * bert.n_workers
    probe = [0, 1, 255, 256, 257, 511, 512, 599]
    singles = np.concatenate([bert.encode([sentences[i]])[0] for i in probe])
    assert_same_vectors(vectors[probe], singles)
    # Distinct sentences give distinct vectors: a shuffled result would not match above.
    assert cosines(vectors[probe[:-1]], vectors[probe[1:]]).max() < 0.999


def test_inputs_longer_than_a_pass_get_a_pass_of_their_own(bert):
    longest = [101] + [2088] * (bert.n_max_tokens - 2) + [102]
    assert len(longest) > bert.n_batch
    mixed = [REFERENCE["token_ids"][0], longest, REFERENCE["token_ids"][1], longest[:300]]
    vectors = bert.encode_tokens(mixed)
    singles = np.concatenate([bert.encode_tokens([ids]) for ids in mixed])
    assert_same_vectors(vectors, singles)
    with pytest.raises(ContextLengthExceeded):
        bert.encode_tokens([longest + [102]])


def test_token_input_equals_text_input(bert):
    texts, _ = bert.encode(REFERENCE["sentences"])
    tokens = bert.encode_tokens(REFERENCE["token_ids"])
    assert np.allclose(tokens, texts, atol=1e-6)


def test_tokens_are_used_as_given(bert):
    with_specials = bert.encode_tokens([REFERENCE["token_ids"][0]])
    without = bert.encode_tokens([REFERENCE["token_ids"][0][1:-1]])  # no [CLS]/[SEP]: another input
    assert cosines(with_specials, without)[0] < 0.9999


def test_empty_batch(bert):
    vectors, counts = bert.encode([])
    assert vectors.shape == (0, 384) and counts == []
    assert bert.encode_tokens([]).shape == (0, 384)


def test_concurrent_callers_get_their_own_rows(bert):
    sentences = many_sentences(64)
    expected, _ = bert.encode(sentences)
    results: dict[int, np.ndarray] = {}

    def worker(k: int) -> None:
        results[k] = bert.encode(sentences[k * 8:(k + 1) * 8])[0]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_same_vectors(np.concatenate([results[k] for k in range(8)]), expected)


# ---- errors ------------------------------------------------------------------------------------------

def test_missing_file():
    with pytest.raises(ModelLoadError, match="not found"):
        BertModel("/nonexistent/model.gguf")


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ModelLoadError, match="could not load"):
        BertModel(bad)


def test_truncated_gguf(tmp_path, minilm_gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(minilm_gguf.read_bytes()[:1_000_000])
    with pytest.raises(ModelLoadError):
        BertModel(cut)


def test_bad_inputs(bert):
    with pytest.raises(InvalidRequest, match="no tokens"):
        bert.encode_tokens([[101, 102], []])
    with pytest.raises(InvalidRequest, match="outside the vocabulary"):
        bert.encode_tokens([[101, 30522, 102]])
    with pytest.raises(InvalidRequest, match="outside the vocabulary"):
        bert.encode_tokens([[-1]])
    with pytest.raises(ContextLengthExceeded, match="at most 512"):
        bert.encode(["word " * 600])
    with pytest.raises(ContextLengthExceeded):
        bert.encode_tokens([[101] + [2088] * 600 + [102]])
    with pytest.raises(InvalidRequest, match="NUL"):
        bert.encode(["a\x00b"])
    # the model still works after refusing
    assert bert.encode(["still fine"])[0].shape == (1, 384)


def test_closed_model_refuses(minilm_gguf):
    model = BertModel(minilm_gguf, n_threads=1)
    model.close()
    model.close()  # idempotent
    with pytest.raises(NativeError, match="closed"):
        model.encode(["x"])


def test_close_waits_for_callers_in_other_threads(minilm_gguf):
    model = BertModel(minilm_gguf, n_threads=1)
    text = "a sentence to tokenize while the model is being closed " * 4
    outcomes: list[str] = []

    def keep_tokenizing() -> None:
        try:
            while True:
                assert len(model.tokenize(text)) > 10
        except NativeError:
            outcomes.append("refused after close")

    threads = [threading.Thread(target=keep_tokenizing) for _ in range(4)]
    for t in threads:
        t.start()
    model.encode([text] * 8)
    model.close()  # must not free the context under a running call
    for t in threads:
        t.join()
    assert outcomes == ["refused after close"] * 4


# ---- the bert-embeddings backend ---------------------------------------------------------------------

def test_bert_engine_merges_concurrent_requests(minilm_gguf):
    from localai.backends.bert import BertEngine

    engine = BertEngine(str(minilm_gguf), threads=2)
    try:
        sentences = many_sentences(96)
        expected, tokens = engine.embed(sentences)
        assert tokens == sum(len(engine.tokenize(s)) for s in sentences)
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                results[k] = engine.embed(sentences[k * 12:(k + 1) * 12])[0]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        with pytest.raises(ContextLengthExceeded):  # a bad request among them fails alone
            engine.embed(["word " * 600])
        for t in threads:
            t.join()
        assert not errors
        assert_same_vectors(np.concatenate([results[k] for k in range(8)]), expected)
    finally:
        engine.close()
    with pytest.raises(NativeError, match="unloaded"):
        engine.embed(["x"])


# ---- embeddings from a chat GGUF through the llama backend -------------------------------------------

def test_llama_embeddings_are_mean_pooled(smollm_engine):
    texts = ["The quick brown fox jumps over the lazy dog.", "Embeddings from a chat model."]
    vectors, prompt_tokens = smollm_engine.embed(texts)
    assert vectors.shape == (2, smollm_engine.model.n_embd)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    token_lists = [smollm_engine.model.tokenize(t, add_special=True, parse_special=True) for t in texts]
    assert prompt_tokens == sum(map(len, token_lists))
    # The same model without pooling: per-token embeddings, averaged here by hand.
    model = smollm_engine.model
    with L.Context(model, n_ctx=256, n_batch=256, n_ubatch=256, n_seq_max=1, n_threads=2, embeddings=True,
                   pooling=L.lib.LLAMA_POOLING_TYPE_NONE) as ctx, L.Batch(256) as batch:
        for i, ids in enumerate(token_lists):
            ctx.memory_clear()
            batch.clear()
            batch.add(ids, 0, 0, True, logits_all=True)
            ctx.decode(batch)
            mean = np.mean([ctx.embeddings_ith(k) for k in range(len(ids))], axis=0)
            mean /= np.linalg.norm(mean)
            assert cosines(mean[None], vectors[i:i + 1])[0] >= 0.9999


def test_llama_embeddings_batch_equals_singles(smollm_engine):
    # Looser than for MiniLM: SmolLM2 is Q4_1, and ggml quantizes activations differently in
    # its small-batch and large-batch matmul kernels (measured: cosine 0.99987 between a
    # single input and the same input in a 40-input batch; 1.0 once both take the same path).
    texts = many_sentences(40)
    batched, _ = smollm_engine.embed(texts)
    singles = np.concatenate([smollm_engine.embed([t])[0] for t in texts[:6]])
    assert cosines(batched[:6], singles).min() >= 0.999
    for i, text in enumerate(texts[:3]):  # one at a time: the same kernels as the singles
        ids = smollm_engine.model.tokenize(text, add_special=True, parse_special=True)
        assert cosines(smollm_engine.embed([ids])[0], singles[i:i + 1])[0] >= SAME_COSINE
    distinct = cosines(batched[:-1], batched[1:])
    assert distinct.max() < 0.9999  # every row is its own input, in order


def test_llama_embeddings_refuse_bad_input(smollm_engine):
    with pytest.raises(InvalidRequest, match="empty"):
        smollm_engine.embed([[]])
    with pytest.raises(InvalidRequest, match="outside the vocabulary"):
        smollm_engine.embed([[smollm_engine.model.n_vocab]])
    with pytest.raises(ContextLengthExceeded):
        smollm_engine.embed(["word " * 3000])
