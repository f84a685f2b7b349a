"""Prefix reuse and ``cache_prompt``: what a reused prefix changes, measured, and what it must not."""

from __future__ import annotations

import pytest

from localai.capabilities import Delta, GenerationOptions
from localai.sampling import SamplingParams

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
QUESTIONS = ["What is the capital of France?", "Name three colours.", "How many legs has a spider?",
             "Translate 'good morning' into Spanish.", "What is two plus two?", "Who wrote Hamlet?"]
# A long request sharing the system block: its KV, that block's included, is computed in one ~300-token pass.
OTHER = "Summarise this for me: " + "The river bends past the mill, and the mill wheel turns all day. " * 16


def prompt(question: str) -> str:
    return f"{SYSTEM}{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(smollm_path):
    from localai.backends.llama import LlamaEngine

    engine = LlamaEngine(str(smollm_path), context_size=1024, parallel=1, threads=2)
    yield engine
    engine.close()


def first_token(engine, text: str, *, cache_prompt: bool) -> tuple[dict[str, float], int]:
    """The top-5 logprobs of the first generated token, and how many prompt tokens were reused."""
    generation = engine.generate([text], GenerationOptions(max_tokens=1, logprobs=5, cache_prompt=cache_prompt,
                                                           sampling=SamplingParams(temperature=0)))
    deltas, finished = generation.collect()
    entry = next(lp for d in deltas[0] if isinstance(d, Delta) for lp in d.logprobs)
    return {token: logprob for token, _, logprob in entry.top}, finished[0].cached_tokens


def test_cache_prompt_false_reuses_nothing(engine):
    first_token(engine, prompt(QUESTIONS[0]), cache_prompt=True)
    _, cached = first_token(engine, prompt(QUESTIONS[0]), cache_prompt=True)
    assert cached > 0  # the same prompt again: its prefix is reused ...
    _, cached = first_token(engine, prompt(QUESTIONS[0]), cache_prompt=False)
    assert cached == 0  # ... unless the request asks for a fresh computation


def test_a_reused_prefix_changes_logprobs_by_float_noise_only(engine):
    """The same prompt computed fresh, and reusing a system block whose KV was computed inside
    a long pass of another prompt: llama.cpp's CPU kernels for a ~300-token pass round
    differently from those for a ~30-token one, so the logprobs differ a little (on AVX-512
    with BF16, enough to flip a near-tie: see the README); a broken reuse would differ by whole
    nats."""
    worst = 0.0
    for question in QUESTIONS:
        fresh, cached = first_token(engine, prompt(question), cache_prompt=False)
        assert cached == 0
        first_token(engine, prompt(OTHER), cache_prompt=False)  # the slot now holds it, system block included
        reused, cached = first_token(engine, prompt(question), cache_prompt=True)
        assert cached >= len(engine.tokenize(SYSTEM)) - 1
        for token in set(fresh) & set(reused):
            worst = max(worst, abs(fresh[token] - reused[token]))
    print(f"\nmax |logprob(fresh) - logprob(reused prefix)| over {len(QUESTIONS)} prompts, top-5 tokens: {worst:.4f}")
    assert worst < 0.5
