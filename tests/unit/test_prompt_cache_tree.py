"""The prompt cache's pure parts on synthetic states: the state format both ways, the radix
tree (sharing, splitting, partial matches), eviction under the byte limit, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from localai.prompt_cache import KvLayout, PromptCache, build_state, parse_state, unit

PLAIN = KvLayout(n_stream=2, n_layer=3, k_type=1, k_row=8, v_trans=False, v_type=1, v_row=8)
TRANSPOSED = KvLayout(n_stream=1, n_layer=2, k_type=1, k_row=4, v_trans=True, v_type=1, v_row=0, v_el=2, n_embd_v=3)


def kv(layout: KvLayout, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """K and V (rows as single elements, as the cache holds them) whose bytes encode (layer,
    token): a restored cell shows where it came from."""
    n = len(tokens)
    k = np.zeros((layout.n_layer, n, layout.k_row), dtype=np.uint8)
    for layer in range(layout.n_layer):
        k[layer] = (np.array(tokens, dtype=np.uint16)[:, None] * 3 + layer) % 251
    if layout.v_trans:
        v = np.zeros((layout.n_layer, layout.n_embd_v, n, layout.v_el), dtype=np.uint8)
        v[:] = (np.array(tokens)[None, None, :, None] + 7) % 251
        v = v.view(unit(layout.v_el)).reshape(layout.n_layer, layout.n_embd_v, n)
    else:
        v = (k + 1).astype(np.uint8).view(unit(layout.v_row)).reshape(layout.n_layer, n)
    return k.view(unit(layout.k_row)).reshape(layout.n_layer, n), v


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bytes and shape (row views hold opaque multi-byte elements)."""
    return a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def state(layout: KvLayout, tokens: list[int], seq_id: int = 0) -> np.ndarray:
    return build_state(layout, [kv(layout, tokens)], seq_id)


@pytest.mark.parametrize("layout", [PLAIN, TRANSPOSED])
def test_state_round_trip(layout):
    tokens = list(range(10, 30))
    parsed = parse_state(state(layout, tokens, seq_id=3))
    assert parsed.layout == layout and parsed.positions.tolist() == list(range(20))
    k, v = kv(layout, tokens)
    assert same(parsed.k, k) and same(parsed.v, v)


def test_unknown_layouts_are_not_parsed():
    good = state(PLAIN, [1, 2, 3])
    assert parse_state(good[:-1]) is None  # truncated
    bad = good.copy()
    bad[0] ^= 1
    assert parse_state(bad) is None  # magic
    ext = good.copy()
    ext[20:24] = [2, 0, 0, 0]  # a cell with two sequences (n_seq_id 2)
    assert parse_state(ext) is None


@pytest.mark.parametrize("layout", [PLAIN, TRANSPOSED])
def test_prefixes_are_shared_split_and_partially_matched(layout):
    cache = PromptCache(1 << 20)
    cache.register("m", layout)
    a = [1, 2, 3, 4, 5, 6, 7, 8]
    b = [1, 2, 3, 4, 9, 9, 9]
    assert cache.store("m", "", a, state(layout, a)) == 8
    assert cache.store("m", "", b, state(layout, b)) == 3  # only what differs is added
    assert cache.stats("m").tokens == 11
    n, restored = cache.restore("m", "", [1, 2, 3, 4, 9, 9, 1, 1], limit=7, seq_id=2)
    assert n == 6
    parsed = parse_state(restored)
    k, v = kv(layout, [1, 2, 3, 4, 9, 9])
    assert same(parsed.k, k) and same(parsed.v, v)
    assert cache.held("m", "", [1, 2, 3, 4, 5, 0]) == 5
    assert cache.held("m", "other-scope", a) == 0 and cache.held("other-model", "", a) == 0
    assert cache.store("m", "", a[:5], state(layout, a[:5])) == 0  # all held already
    cache.check()


def test_least_recently_used_leaves_go_first_and_the_limit_holds():
    per_token = PLAIN.bytes_per_token
    cache = PromptCache(20 * per_token)
    cache.register("m", PLAIN)
    first, second, third = [1] + [2] * 9, [3] + [4] * 9, [5] + [6] * 9
    cache.store("m", "", first, state(PLAIN, first))
    cache.store("m", "", second, state(PLAIN, second))
    cache.restore("m", "", first, limit=10, seq_id=0)  # first is now the most recent
    cache.store("m", "", third, state(PLAIN, third))
    assert cache.held("m", "", first) == 10 and cache.held("m", "", second) == 0 and cache.held("m", "", third) == 10
    big = [7] * 30
    assert cache.store("m", "", big, state(PLAIN, big)) == 20  # what fits, after evicting the rest
    assert cache.used == 20 * per_token
    cache.check()


def test_persistence_round_trip_and_identity(tmp_path):
    cache = PromptCache(1 << 20)
    cache.register("m", PLAIN)
    for tokens in ([1, 2, 3, 4], [1, 2, 5, 6, 7]):
        cache.store("m", "scope", tokens, state(PLAIN, tokens))
    path = tmp_path / "m.promptcache"
    assert cache.save("m", path, "id-1") == 7
    fresh = PromptCache(1 << 20)
    fresh.register("m", PLAIN)
    assert fresh.load("m", path, "id-2") == 0  # another model file
    assert fresh.load("m", path, "id-1") == 7
    n, restored = fresh.restore("m", "scope", [1, 2, 5, 6, 7, 0], limit=5, seq_id=0)
    assert n == 5 and same(parse_state(restored).k, kv(PLAIN, [1, 2, 5, 6, 7])[0])
    small = PromptCache(3 * PLAIN.bytes_per_token)
    small.register("m", PLAIN)
    assert small.load("m", path, "id-1") <= 3
    small.check()
    other = PromptCache(1 << 20)
    other.register("m", TRANSPOSED)
    assert other.load("m", path, "id-1") == 0  # another KV layout
