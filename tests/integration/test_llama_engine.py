"""The continuous-batching engine through real SmolLM2 weights, without the HTTP layer."""

from __future__ import annotations

import pytest

from localai.bindings.llama import SamplingParams


@pytest.fixture(scope="module")
def engine(smollm_path):
    from localai.backends.llama import LlamaEngine

    engine = LlamaEngine(str(smollm_path), context_size=1024, parallel=2, threads=2)
    yield engine
    engine.close()


def test_a_finished_request_has_already_released_its_slot(engine):
    """Whoever hears "finished" (an HTTP handler about to answer) must find the slot free: a
    client that gets its answer and at once asks /backend/monitor sees no sequence left."""
    from localai.backends.llama import Finished, GenerationRequest

    prompt = engine.tokenize("Name a colour:")
    for i in range(20):
        request = engine.submit(GenerationRequest(prompt=prompt + [1000 + i], max_tokens=3,
                                                  sampling=SamplingParams(temperature=0)))
        events = list(request.stream())
        assert isinstance(events[-1], Finished)
        assert engine.status()["active_sequences"] == 0, f"request {i}"


def test_a_cancelled_request_ends_with_its_tokens_so_far(engine):
    from localai.backends.llama import Delta, Finished, GenerationRequest

    request = engine.submit(GenerationRequest(prompt=engine.tokenize("Tell a long story."), max_tokens=500,
                                              ignore_eos=True, sampling=SamplingParams(temperature=0)))
    first = next(request.stream())
    assert isinstance(first, Delta)
    request.cancel()
    rest = list(request.stream())
    assert isinstance(rest[-1], Finished) and rest[-1].completion_tokens < 500
    assert engine.status()["active_sequences"] == 0
