"""The continuous-batching engine through real SmolLM2 weights, without the HTTP layer."""

from __future__ import annotations

import pytest

from localai.capabilities import Delta, Finished, GenerationOptions
from localai.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


@pytest.fixture
def engine(smollm_engine):
    return smollm_engine


def test_a_finished_request_has_already_released_its_slot(engine):
    """Whoever hears "finished" (an HTTP handler about to answer) must find the slot free: a
    client that gets its answer and at once asks /backend/monitor sees no sequence left."""
    prompt = engine.tokenize("Name a colour:")
    for i in range(20):
        generation = engine.generate([prompt + [1000 + i]], GenerationOptions(max_tokens=3, sampling=GREEDY))
        events = [event for _, event in generation]
        assert isinstance(events[-1], Finished)
        assert engine.status()["active_sequences"] == 0, f"request {i}"


def test_a_cancelled_request_ends_with_its_tokens_so_far(engine):
    generation = engine.generate([engine.tokenize("Tell a long story.")],
                                 GenerationOptions(max_tokens=500, ignore_eos=True, sampling=GREEDY))
    events = iter(generation)
    _, first = next(events)
    assert isinstance(first, Delta)
    generation.cancel()
    rest = [event for _, event in events]
    assert isinstance(rest[-1], Finished) and rest[-1].completion_tokens < 500
    assert engine.status()["active_sequences"] == 0


def _prompt_logprobs(engine, prompt: list[int]) -> list:
    generation = engine.generate([prompt], GenerationOptions(max_tokens=0, logprobs=0, prompt_logprobs=True))
    return [lp for _, e in generation if isinstance(e, Delta) for lp in e.logprobs or []]


def test_prompt_logprobs_are_the_same_across_prompt_chunks(engine, smollm_path):
    """A prompt read in 16-token chunks: each chunk's last logits score the next chunk's first token."""
    from localai.backends.llama import LlamaEngine

    prompt = engine.tokenize("The quick brown fox jumps over the lazy dog. " * 4)
    assert len(prompt) > 40
    whole = _prompt_logprobs(engine, prompt)
    small = LlamaEngine(str(smollm_path), context_size=256, parallel=1, threads=2, batch_size=16)
    try:
        chunked = _prompt_logprobs(small, prompt)
    finally:
        small.close()
    assert len(whole) == len(chunked) == len(prompt)
    assert whole[0].logprob is None and chunked[0].logprob is None
    assert [lp.token for lp in whole] == [lp.token for lp in chunked]
    for a, b in zip(whole[1:], chunked[1:]):
        assert abs(a.logprob - b.logprob) < 0.02
    # a repeated sentence is predictable: its second copy scores far higher than its first
    quarter = len(prompt) // 4
    first = sum(lp.logprob for lp in whole[1:quarter])
    second = sum(lp.logprob for lp in whole[quarter + 1:2 * quarter])
    assert second > first + 10
    assert engine.status()["active_sequences"] == 0
