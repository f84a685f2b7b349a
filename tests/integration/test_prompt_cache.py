"""The host-RAM prompt cache on the real model: a restored prefix continues exactly as the
slot-resident one did, the byte limit holds, scopes and models stay apart, persistence, and
the models it must stay off for."""

from __future__ import annotations

import threading

import pytest

from localai.backends.llama import LlamaEngine
from localai.capabilities import Delta, GenerationOptions
from localai.prompt_cache import PromptCache
from localai.sampling import SamplingParams

SYSTEM = ("You are the support assistant of a small bookshop. Answer briefly and politely, and never invent "
          "opening hours. ") * 12
QUESTIONS = ["Do you sell maps?", "Can I order a book that is out of print?", "Where is the shop?"]


def engine_with(cache: PromptCache, path, *, name: str = "smollm", parallel: int = 2, **extra) -> LlamaEngine:
    return LlamaEngine(str(path), context_size=1024, parallel=parallel, threads=2, name=name, prompt_cache=cache,
                       **extra)


def ask(engine: LlamaEngine, text: str, *, scope: str = "", tokens: int = 8) -> tuple[str, list[float], int]:
    """(greedy text, its token logprobs, prompt tokens reused)."""
    options = GenerationOptions(max_tokens=tokens, logprobs=0, sampling=SamplingParams(temperature=0),
                                cache_scope=scope)
    deltas, finished = engine.generate([text], options).collect()
    text_out = "".join(d.text for d in deltas[0] if isinstance(d, Delta))
    logprobs = [lp.logprob for d in deltas[0] if isinstance(d, Delta) for lp in d.logprobs]
    return text_out, logprobs, finished[0].cached_tokens


def flood(engine: LlamaEngine, tag: str, n: int) -> None:
    """n unrelated requests at once, so every slot is taken and what it held is evicted."""
    threads = [threading.Thread(target=ask, args=(engine, f"{tag} number {i}: " + "lorem ipsum " * 30))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def cache():
    return PromptCache(256 << 20)


def test_a_restored_prefix_continues_exactly_as_the_slot_did(smollm_path):
    """The same prompt continuing from the same prefix bytes, once from the slot and once from
    host RAM after the slot was overwritten: greedy text and logprobs identical. Both for a
    prompt asked again, and for another prompt sharing the system block."""
    engine = engine_with(PromptCache(256 << 20), smollm_path)
    try:
        ask(engine, SYSTEM + QUESTIONS[0])
        in_slot_partial = ask(engine, SYSTEM + QUESTIONS[1])  # the system block from the slot of another prompt
        in_slot_same = ask(engine, SYSTEM + QUESTIONS[1])  # all but the last token from the slot
        flood(engine, "unrelated", 2)
        assert engine.status()["prompt_cache"]["restores"] == 0
        restored_same = ask(engine, SYSTEM + QUESTIONS[1])
        assert engine.status()["prompt_cache"]["restores"] == 1
        assert restored_same == in_slot_same and in_slot_same[2] > 100
    finally:
        engine.close()
    cache = PromptCache(256 << 20)
    engine = engine_with(cache, smollm_path)  # a fresh engine: only the first prompt is ever stored
    try:
        ask(engine, SYSTEM + QUESTIONS[0])
        flood(engine, "unrelated", 2)
        restored_partial = ask(engine, SYSTEM + QUESTIONS[1])
        assert engine.status()["prompt_cache"]["restored_tokens"] == restored_partial[2] == in_slot_partial[2]
        assert restored_partial == in_slot_partial
    finally:
        engine.close()
    cache.check()


def test_the_byte_limit_holds_under_churn(smollm_path):
    cache = PromptCache(3 << 20)  # ~130 tokens of SmolLM2's KV
    engine = engine_with(cache, smollm_path)
    try:
        for round_ in range(3):
            flood(engine, f"round {round_}", 2)
            cache.check()
        status = engine.status()["prompt_cache"]
        assert 0 < status["bytes"] <= 3 << 20 and status["evicted_tokens"] > 0
    finally:
        engine.close()
    assert cache.used == 0  # closing without persistence frees the model's part


def test_scopes_do_not_share_prefixes(smollm_path, cache):
    engine = engine_with(cache, smollm_path)
    try:
        ask(engine, SYSTEM + QUESTIONS[0], scope="tenant-a")
        flood(engine, "evict", 2)
        assert ask(engine, SYSTEM + QUESTIONS[1], scope="tenant-b")[2] == 0
        flood(engine, "evict again", 2)
        assert ask(engine, SYSTEM + QUESTIONS[1], scope="tenant-a")[2] > 100
    finally:
        engine.close()


def test_two_models_share_the_limit_not_their_prefixes(smollm_path):
    cache = PromptCache(64 << 20)
    first, second = engine_with(cache, smollm_path, name="one"), engine_with(cache, smollm_path, name="two")
    try:
        ask(first, SYSTEM + QUESTIONS[0])
        flood(first, "fill", 2)
        assert ask(second, SYSTEM + QUESTIONS[1])[2] == 0  # the other model's entries are not its
        flood(second, "fill", 2)
        assert ask(first, SYSTEM + QUESTIONS[1])[2] > 100
        assert first.status()["prompt_cache"]["bytes"] + second.status()["prompt_cache"]["bytes"] == cache.used
        cache.check()
    finally:
        first.close()
        second.close()


def test_the_cache_persists_across_restarts(smollm_path, tmp_path):
    engine = engine_with(PromptCache(64 << 20), smollm_path, prompt_cache_dir=tmp_path)
    try:
        expected = ask(engine, SYSTEM + QUESTIONS[2])
    finally:
        engine.close()  # idle slots are saved, then the cache written
    assert list(tmp_path.glob("*.promptcache"))
    cache = PromptCache(64 << 20)
    engine = engine_with(cache, smollm_path, prompt_cache_dir=tmp_path)
    try:
        assert engine.status()["prompt_cache"]["tokens"] > 100
        again = ask(engine, SYSTEM + QUESTIONS[2])
        assert again[2] > 100 and engine.status()["prompt_cache"]["restores"] == 1
        assert again[0] == expected[0]
    finally:
        engine.close()
    other = tmp_path / "other"
    other.mkdir()
    for file in tmp_path.glob("*.promptcache"):  # the same file under another model's name is not loaded
        (other / file.name.replace("smollm", "renamed", 1)).write_bytes(file.read_bytes())
    engine = engine_with(PromptCache(64 << 20), smollm_path, name="renamed", prompt_cache_dir=other)
    try:
        assert engine.status()["prompt_cache"]["tokens"] == 0
    finally:
        engine.close()


def test_off_when_the_limit_is_zero(smollm_path):
    engine = engine_with(PromptCache(0), smollm_path)
    try:
        assert "prompt_cache" not in engine.status() and engine.host_cache is None
    finally:
        engine.close()


def test_sliding_window_models_run_without_it(tmp_path):
    """Gemma 3's sliding-window layers drop old cells: a prefix cannot be restored from them, so
    the model serves without the host cache (correct, only slower)."""
    from localai.gallery import GalleryService
    from localai.settings import Settings

    service = GalleryService(Settings(models_path=tmp_path))
    try:
        installed, failures = service.preload([{"id": "localai@gemma-3-270m"}])
    finally:
        service.close()
    assert not failures, failures
    engine = engine_with(PromptCache(64 << 20), tmp_path / "gemma-3-270m-q4_k_m.gguf", name="gemma")
    try:
        assert engine.model.n_swa > 0 and engine.host_cache is None
        assert ask(engine, "1, 2, 3, 4, 5,", tokens=2)[0].strip().startswith("6")
    finally:
        engine.close()
