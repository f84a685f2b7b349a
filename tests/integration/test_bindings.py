"""Real models through the cffi bindings: llama.cpp and whisper.cpp in one process."""

from __future__ import annotations

import pytest

from localai.bindings import llama as L
from localai.bindings import whisper as W
from localai.errors import BindingsNotBuilt, LocalAIError, ModelLoadError, NativeError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
WHISPER_VOCAB_ONLY = ROOT / "native/whisper.cpp/upstream/models/for-tests-ggml-tiny.en.bin"


@pytest.fixture(scope="module")
def model(smollm_path):
    with L.Model(smollm_path) as m:
        yield m


def greedy(model: L.Model, prompt: str, n: int = 24) -> list[int]:
    with L.Context(model, n_ctx=512, n_threads=2) as ctx, L.Batch(512) as batch, \
            L.Sampler(model, L.SamplingParams(temperature=0)) as sampler:
        tokens = model.tokenize(prompt)
        index = batch.add(tokens, 0, 0, True)
        ctx.decode(batch)
        out, pos = [], len(tokens)
        for _ in range(n):
            token = sampler.sample(ctx, index)
            if model.is_eog(token):
                break
            out.append(token)
            batch.clear()
            index = batch.add([token], pos, 0, True)
            pos += 1
            ctx.decode(batch)
        return out


def test_model_metadata(model):
    assert model.n_vocab == 49152
    assert model.n_ctx_train == 8192
    assert "im_start" in model.chat_template()
    assert model.meta("general.architecture") == "llama"
    assert model.meta("no.such.key") is None


def test_tokenize_detokenize_round_trip(model):
    text = "Hello, world! Ünïcödé 日本語 and emoji 🦙"
    tokens = model.tokenize(text, add_special=False)
    assert tokens and all(0 <= t < model.n_vocab for t in tokens)
    assert model.detokenize(tokens) == text


def test_special_tokens_are_parsed(model):
    tokens = model.tokenize("<|im_start|>user", add_special=False)
    assert model.token_text(tokens[0]) == "<|im_start|>"


def test_greedy_decoding_is_deterministic(model):
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    first = greedy(model, prompt)
    assert first == greedy(model, prompt)
    assert "Paris" in model.detokenize(first)


def test_two_sequences_in_one_batch_match_single_runs(model):
    """Batched decoding of two sequences gives each the tokens it gets alone."""
    prompts = ["<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nCount to five.<|im_end|>\n<|im_start|>assistant\n"]
    alone = [greedy(model, p, 12) for p in prompts]
    with L.Context(model, n_ctx=1024, n_seq_max=2, n_threads=2) as ctx, L.Batch(512) as batch:
        samplers = [L.Sampler(model, L.SamplingParams(temperature=0)) for _ in prompts]
        toks = [model.tokenize(p) for p in prompts]
        idx = [batch.add(t, 0, s, True) for s, t in enumerate(toks)]
        pos = [len(t) for t in toks]
        outs: list[list[int]] = [[], []]
        ctx.decode(batch)
        for _ in range(12):
            nxt = [samplers[s].sample(ctx, idx[s]) for s in range(2)]
            batch.clear()
            for s in range(2):
                outs[s].append(nxt[s])
                idx[s] = batch.add([nxt[s]], pos[s], s, True)
                pos[s] += 1
            ctx.decode(batch)
        for s in samplers:
            s.close()
    for s in range(2):
        cut = alone[s]
        assert outs[s][: len(cut)] == cut


def test_kv_sequence_removal(model):
    with L.Context(model, n_ctx=256, n_seq_max=2, n_threads=2) as ctx, L.Batch(64) as batch:
        batch.add(model.tokenize("one two three"), 0, 1, True)
        ctx.decode(batch)
        assert ctx.seq_pos_max(1) >= 2
        assert ctx.seq_remove(1, 1, -1)
        assert ctx.seq_pos_max(1) == 0
        ctx.seq_remove(1)
        assert ctx.seq_pos_max(1) == -1


def test_close_is_idempotent(smollm_path):
    m = L.Model(smollm_path, vocab_only=True)
    m.close()
    m.close()
    with pytest.raises(NativeError):
        m.description()


def test_bad_model_file_raises(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError):
        L.Model(bad)
    with pytest.raises(ModelLoadError):
        L.Model(tmp_path / "missing.gguf")


def test_exception_root():
    assert issubclass(ModelLoadError, LocalAIError)
    assert issubclass(BindingsNotBuilt, ImportError)


def test_whisper_and_llama_in_one_process(model):
    """Both engines share one ggml: whisper loads and tokenizes while llama keeps working."""
    with W.WhisperModel(WHISPER_VOCAB_ONLY) as wm:
        assert not wm.multilingual
        assert wm.n_vocab == 51864
        assert wm.tokenize(" hello")
    assert "AVX" in W.system_info() or "SSE" in W.system_info()
    assert greedy(model, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 4)
    assert W.version().startswith("1.")
    assert L.ggml_version().startswith("0.")


def test_bad_whisper_file_raises(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ModelLoadError):
        W.WhisperModel(bad)
