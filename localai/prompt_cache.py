"""The host-RAM prompt cache: KV cells of prompts that left their slot, kept as a radix tree.

A slot's KV is saved (llama.cpp's per-sequence state) when its content is about to be
discarded; a new request whose prompt shares a longer prefix with the tree than with any
free slot gets that prefix restored into a slot and processes only the rest.

Keying: one radix tree per (model, scope) — scope is the API key when the cache is isolated —
over token ids. Each node holds a run of tokens and the K and V rows of exactly those
positions, valid only below its ancestors (a prefix is stored once however many prompts
share it; a partial match of a node is still used). Token-granular, as SGLang's
RadixAttention: a prompt that diverges mid-run splits the node.

Bounds: every node's bytes are counted against one limit (``--cache-ram``) shared by all
models of the process; least-recently-used leaves are evicted first, never the path being
stored, and what does not fit is not stored. Restoring a prefix builds a state of exactly
its cells, so the restored sequence holds the same bytes the original computation wrote.

We split llama.cpp's sequence-state format (documented by ``llama_kv_cache::state_write``):
magic, seq id, stream count; per stream a cell count, per cell (pos, n_seq_id, seq_id), then
per layer K rows and V rows (or V transposed per element). Layouts we do not know how to
split (per-layer row sizes that differ, cell extensions of M-RoPE models, sliding-window or
recurrent memory) are not cached: the model runs without the host cache, never wrong.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import struct
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localai.files import atomic_output

log = logging.getLogger("localai.llama")

STATE_MAGIC = 0xAF143CD8
FILE_MAGIC = b"LOCALAI-PROMPT-CACHE\n"
FILE_FORMAT = 1
_CELL = np.dtype([("pos", "<i4"), ("n_seq", "<u4"), ("seq", "<i4")])


# ---- the sequence-state format --------------------------------------------------------------------

@dataclass(frozen=True)
class KvLayout:
    """What one model's sequence states are made of (every layer alike)."""

    n_stream: int
    n_layer: int
    k_type: int
    k_row: int  # bytes of one cell's K in one layer
    v_trans: bool
    v_type: int
    v_row: int  # non-transposed: bytes of one cell's V in one layer
    v_el: int = 0  # transposed: bytes of one element, and elements per cell
    n_embd_v: int = 0

    @property
    def bytes_per_token(self) -> int:
        v = self.v_el * self.n_embd_v if self.v_trans else self.v_row
        return self.n_layer * (self.k_row + v)


@dataclass
class ParsedState:
    layout: KvLayout
    positions: np.ndarray  # position of each cell
    k: np.ndarray  # (n_layer, cells) of k_row-byte rows: a view into the state
    v: np.ndarray  # (n_layer, cells) of v_row-byte rows, or transposed (n_layer, n_embd_v, cells) of v_el bytes


def unit(item: int) -> np.dtype:
    """The dtype of one ``item``-byte K/V row or element: a row is one element, so numpy copies
    rows with memcpy rather than byte by byte (ten times faster on a 512-token state)."""
    return np.dtype({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(item, (np.void, item)))


def _rows(buf: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], item: int) -> np.ndarray:
    """A strided view of ``buf`` (from ``offset``) with ``item``-byte elements."""
    return np.ndarray(shape, dtype=unit(item), buffer=buf, offset=offset, strides=strides)


def parse_state(buf: np.ndarray) -> ParsedState | None:
    """Views of a sequence state's cells, or None for a layout we do not split."""
    try:
        return _parse(np.asarray(buf, dtype=np.uint8))
    except (ValueError, struct.error, IndexError):
        return None


def _parse(buf: np.ndarray) -> ParsedState | None:
    raw = buf.data
    magic, _seq, n_stream = struct.unpack_from("<IiI", raw, 0)
    if magic != STATE_MAGIC:
        return None
    o = 12
    found: ParsedState | None = None
    for _ in range(n_stream):
        (cells,) = struct.unpack_from("<I", raw, o)
        o += 4
        if cells == 0:
            continue
        if found is not None:
            return None  # a sequence spread over two streams
        meta = np.frombuffer(raw, dtype=_CELL, count=cells, offset=o)
        if not np.all(meta["n_seq"] == 1):
            return None  # cell extensions or shared cells: another record layout
        positions = meta["pos"].copy()
        o += cells * _CELL.itemsize
        v_trans, n_layer = struct.unpack_from("<II", raw, o)
        o += 8
        k_type, k_row = struct.unpack_from("<iQ", raw, o)
        k_section = 12 + cells * k_row
        for layer in range(n_layer):
            if struct.unpack_from("<iQ", raw, o + layer * k_section) != (k_type, k_row):
                return None
        k = _rows(buf, o + 12, (n_layer, cells), (k_section, k_row), k_row)
        o += n_layer * k_section
        if not v_trans:
            v_type, v_row = struct.unpack_from("<iQ", raw, o)
            v_section = 12 + cells * v_row
            for layer in range(n_layer):
                if struct.unpack_from("<iQ", raw, o + layer * v_section) != (v_type, v_row):
                    return None
            v = _rows(buf, o + 12, (n_layer, cells), (v_section, v_row), v_row)
            layout = KvLayout(n_stream, n_layer, k_type, int(k_row), False, v_type, int(v_row))
        else:
            v_type, v_el, n_embd_v = struct.unpack_from("<iII", raw, o)
            v_section = 12 + n_embd_v * cells * v_el
            for layer in range(n_layer):
                if struct.unpack_from("<iII", raw, o + layer * v_section) != (v_type, v_el, n_embd_v):
                    return None
            v = _rows(buf, o + 12, (n_layer, n_embd_v, cells), (v_section, cells * v_el, v_el), v_el)
            layout = KvLayout(n_stream, n_layer, k_type, int(k_row), True, v_type, 0, v_el, n_embd_v)
        o += n_layer * v_section
        found = ParsedState(layout, positions, k, v)
    if found is None or o != len(buf):
        return None
    return found


def build_state(layout: KvLayout, pieces: list[tuple[np.ndarray, np.ndarray]], seq_id: int,
                scratch: np.ndarray | None = None) -> np.ndarray:
    """A sequence state of positions 0..n-1 from (K, V) pieces in order (each covering the next
    cells), written into ``scratch`` when it is large enough."""
    n = sum(k.shape[1] for k, _ in pieces)
    v_section = 12 + (n * layout.n_embd_v * layout.v_el if layout.v_trans else n * layout.v_row)
    k_section = 12 + n * layout.k_row
    size = 12 + 4 + n * _CELL.itemsize + 8 + layout.n_layer * (k_section + v_section) + 4 * (layout.n_stream - 1)
    out = scratch[:size] if scratch is not None and scratch.size >= size else np.empty(size, dtype=np.uint8)
    out[size - 4 * (layout.n_stream - 1):] = 0  # the other streams: no cells
    raw = out.data
    struct.pack_into("<IiII", raw, 0, STATE_MAGIC, seq_id, layout.n_stream, n)
    o = 16
    meta = np.frombuffer(raw, dtype=_CELL, count=n, offset=o)
    meta["pos"] = np.arange(n, dtype=np.int32)
    meta["n_seq"] = 1
    meta["seq"] = seq_id
    o += n * _CELL.itemsize
    struct.pack_into("<II", raw, o, int(layout.v_trans), layout.n_layer)
    o += 8
    for layer in range(layout.n_layer):
        struct.pack_into("<iQ", raw, o + layer * k_section, layout.k_type, layout.k_row)
    k_out = _rows(out, o + 12, (layout.n_layer, n), (k_section, layout.k_row), layout.k_row)
    o += layout.n_layer * k_section
    for layer in range(layout.n_layer):
        if layout.v_trans:
            struct.pack_into("<iII", raw, o + layer * v_section, layout.v_type, layout.v_el, layout.n_embd_v)
        else:
            struct.pack_into("<iQ", raw, o + layer * v_section, layout.v_type, layout.v_row)
    if layout.v_trans:
        v_out = _rows(out, o + 12, (layout.n_layer, layout.n_embd_v, n), (v_section, n * layout.v_el, layout.v_el),
                      layout.v_el)
    else:
        v_out = _rows(out, o + 12, (layout.n_layer, n), (v_section, layout.v_row), layout.v_row)
    at = 0
    for k, v in pieces:
        m = k.shape[1]
        k_out[:, at:at + m] = k
        if layout.v_trans:
            v_out[:, :, at:at + m] = v
        else:
            v_out[:, at:at + m] = v
        at += m
    return out  # the other streams' cell counts are the zeros at the end


def _take(layout: KvLayout, k: np.ndarray, v: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Owned copies of cells [start, end) of K and V views (an assignment into a new array: for
    strided row views several times faster than ``np.ascontiguousarray``)."""
    v_part = v[:, :, start:end] if layout.v_trans else v[:, start:end]
    k_part = k[:, start:end]
    k_copy, v_copy = np.empty(k_part.shape, k_part.dtype), np.empty(v_part.shape, v_part.dtype)
    k_copy[...] = k_part
    v_copy[...] = v_part
    return k_copy, v_copy


# ---- the radix tree ------------------------------------------------------------------------------

@dataclass(eq=False)
class _Node:
    tokens: list[int]
    k: Any = None
    v: Any = None
    parent: _Node | None = None
    children: dict[int, _Node] = field(default_factory=dict)
    last_used: int = 0
    tree: tuple[str, str] = ("", "")

    @property
    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


@dataclass
class CacheStats:
    bytes: int = 0
    tokens: int = 0
    restores: int = 0
    restored_tokens: int = 0
    stored_tokens: int = 0
    evicted_tokens: int = 0


class PromptCache:
    """The process's host-RAM prompt cache: radix trees per (model, scope) under one byte limit.
    Thread-safe (one lock; every operation is short: dictionary walks and memory copies)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, int(limit_bytes))
        self._lock = threading.Lock()
        self._roots: dict[tuple[str, str], _Node] = {}
        self._layouts: dict[str, KvLayout] = {}
        self._nodes: set[_Node] = set()
        self._clock = itertools.count(1)
        self.used = 0
        self._stats: dict[str, CacheStats] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def register(self, model: str, layout: KvLayout) -> None:
        with self._lock:
            self._layouts[model] = layout
            self._stats.setdefault(model, CacheStats())

    def layout(self, model: str) -> KvLayout | None:
        return self._layouts.get(model)

    def stats(self, model: str) -> CacheStats:
        with self._lock:
            return CacheStats(**asdict(self._stats.get(model, CacheStats())))

    # ---- lookups
    def _walk(self, tree: tuple[str, str], tokens: list[int], limit: int) -> tuple[int, list[tuple[_Node, int]]]:
        """How many leading tokens (at most ``limit``) the tree holds, and the (node, cells used) path."""
        node = self._roots.get(tree)
        path: list[tuple[_Node, int]] = []
        i = 0
        while node is not None and i < limit:
            child = node.children.get(tokens[i])
            if child is None:
                break
            used = _common(child.tokens, tokens[i:limit])
            path.append((child, used))
            i += used
            if used < len(child.tokens):
                break
            node = child
        return i, path

    def held(self, model: str, scope: str, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` are stored."""
        with self._lock:
            return self._walk((model, scope), tokens, len(tokens))[0]

    def restore(self, model: str, scope: str, tokens: list[int], limit: int, seq_id: int,
                scratch: np.ndarray | None = None) -> tuple[int, np.ndarray | None]:
        """The longest stored prefix of ``tokens`` (at most ``limit``) as a sequence state for
        ``seq_id`` (built in ``scratch`` when it is large enough): (tokens, state); (0, None)
        when nothing is stored."""
        with self._lock:
            layout = self._layouts.get(model)
            n, path = self._walk((model, scope), tokens, limit)
            if layout is None or n == 0:
                return 0, None
            now = next(self._clock)
            for node, _ in path:
                node.last_used = now
            pieces = [(node.k[:, :used], node.v[:, :, :used] if layout.v_trans else node.v[:, :used])
                      for node, used in path]
            state = build_state(layout, pieces, seq_id, scratch)
            stats = self._stats[model]
            stats.restores += 1
            stats.restored_tokens += n
            return n, state

    # ---- storing
    def store(self, model: str, scope: str, tokens: list[int], state: np.ndarray) -> int:
        """Keep what the tree lacks of a saved sequence (its cells must be ``tokens`` at positions
        0..n-1); the number of tokens newly stored."""
        parsed = parse_state(state)
        with self._lock:
            layout = self._layouts.get(model)
            if parsed is None or layout is None or parsed.layout != layout:
                return 0
            n = len(tokens)
            if len(parsed.positions) != n or not np.array_equal(parsed.positions, np.arange(n)):
                return 0  # the cells are not this prompt in order: nothing we could restore exactly
            tree = (model, scope)
            root = self._roots.get(tree)
            if root is None:
                root = self._roots[tree] = _Node([], tree=tree)
            now = next(self._clock)
            node, i = root, 0
            while i < n:
                child = node.children.get(tokens[i])
                if child is None:
                    break
                used = _common(child.tokens, tokens[i:])
                child.last_used = now
                if i + used >= n:
                    return 0  # all of it is held already
                if used < len(child.tokens):
                    self._split(child, used, layout)
                node, i = child, i + used
            if i >= n:
                return 0
            pinned = set()
            walker: _Node | None = node
            while walker is not None:
                pinned.add(walker)
                walker = walker.parent
            fit = self._make_room((n - i) * layout.bytes_per_token, layout.bytes_per_token, pinned)
            if fit == 0:
                return 0
            k, v = _take(layout, parsed.k, parsed.v, i, i + fit)
            leaf = _Node(list(tokens[i:i + fit]), k, v, node, last_used=now, tree=tree)
            node.children[leaf.tokens[0]] = leaf
            self._nodes.add(leaf)
            self.used += leaf.nbytes
            stats = self._stats[model]
            stats.bytes += leaf.nbytes
            stats.tokens += fit
            stats.stored_tokens += fit
            return fit

    def _split(self, node: _Node, at: int, layout: KvLayout) -> None:
        """Cut ``node`` after ``at`` tokens: it keeps the head, a new child the tail (and its children)."""
        tail_k, tail_v = _take(layout, node.k, node.v, at, len(node.tokens))
        head_k, head_v = _take(layout, node.k, node.v, 0, at)
        tail = _Node(node.tokens[at:], tail_k, tail_v, node, node.children, node.last_used, node.tree)
        for child in tail.children.values():
            child.parent = tail
        node.tokens, node.k, node.v = node.tokens[:at], head_k, head_v
        node.children = {tail.tokens[0]: tail}
        self._nodes.add(tail)

    def _make_room(self, wanted: int, per_token: int, pinned: set[_Node]) -> int:
        """Evict least-recently-used leaves (never ``pinned``) until ``wanted`` bytes fit, or as
        many whole tokens as can; the tokens that fit."""
        while self.used + wanted > self.limit:
            leaves = [n for n in self._nodes if not n.children and n not in pinned]
            if not leaves:
                break
            self._evict(min(leaves, key=lambda n: n.last_used))
        return max(0, min(wanted, self.limit - self.used)) // per_token

    def _evict(self, node: _Node) -> None:
        parent = node.parent
        if parent is not None:
            parent.children.pop(node.tokens[0], None)
        self._nodes.discard(node)
        self.used -= node.nbytes
        stats = self._stats[node.tree[0]]
        stats.bytes -= node.nbytes
        stats.tokens -= len(node.tokens)
        stats.evicted_tokens += len(node.tokens)
        if parent is not None and parent.parent is None and not parent.children:
            self._roots.pop(parent.tree, None)

    def drop(self, model: str) -> None:
        """Forget a model's trees (its engine closed without persistence)."""
        with self._lock:
            for node in [n for n in self._nodes if n.tree[0] == model]:
                self._nodes.discard(node)
                self.used -= node.nbytes
            for tree in [t for t in self._roots if t[0] == model]:
                del self._roots[tree]
            self._stats[model] = CacheStats()

    def check(self) -> None:
        """Invariants (tests): the byte count matches the nodes, and stays within the limit."""
        with self._lock:
            assert self.used == sum(n.nbytes for n in self._nodes) <= self.limit

    # ---- persistence
    def save(self, model: str, path: Path, identity: str) -> int:
        """Write a model's trees to ``path`` (atomically); the tokens written."""
        with self._lock:
            layout = self._layouts.get(model)
            if layout is None:
                return 0
            order: list[_Node] = []
            index: dict[int, int] = {}
            records = []
            for (tree_model, scope), root in self._roots.items():
                if tree_model != model:
                    continue
                stack = [(child, -1) for child in root.children.values()]
                while stack:
                    node, parent = stack.pop()
                    index[id(node)] = len(order)
                    order.append(node)
                    records.append({"scope": scope, "parent": parent, "tokens": node.tokens})
                    stack.extend((child, index[id(node)]) for child in node.children.values())
            header = json.dumps({"format": FILE_FORMAT, "identity": identity, "layout": asdict(layout),
                                 "nodes": records}).encode()
            with atomic_output(path) as fh:
                fh.write(FILE_MAGIC + struct.pack("<Q", len(header)) + header)
                for node in order:
                    fh.write(node.k.tobytes())
                    fh.write(node.v.tobytes())
            return sum(len(n.tokens) for n in order)

    def load(self, model: str, path: Path, identity: str) -> int:
        """Read trees written by ``save`` for the same model file and layout; the tokens loaded
        (as many as the limit allows, parents first). A file of another model is ignored."""
        layout = self._layouts.get(model)
        if layout is None or not path.is_file():
            return 0
        try:
            with open(path, "rb") as fh:
                if fh.read(len(FILE_MAGIC)) != FILE_MAGIC:
                    return 0
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length))
                if header.get("format") != FILE_FORMAT or header.get("identity") != identity \
                        or KvLayout(**header["layout"]) != layout:
                    log.info("prompt cache %s is for another model file or layout; not loaded", path.name)
                    return 0
                return self._load_nodes(model, layout, header["nodes"], fh)
        except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            log.warning("prompt cache %s could not be read: %s", path.name, exc)
            return 0

    def _load_nodes(self, model: str, layout: KvLayout, records: list[dict], fh: Any) -> int:
        loaded: list[_Node | None] = []
        total = 0
        v_unit = unit(layout.v_el if layout.v_trans else layout.v_row)
        v_shape = (lambda n: (layout.n_layer, layout.n_embd_v, n)) if layout.v_trans else \
            (lambda n: (layout.n_layer, n))
        with self._lock:
            for record in records:
                tokens = [int(t) for t in record["tokens"]]
                k_bytes = layout.n_layer * len(tokens) * layout.k_row
                v_bytes = len(tokens) * layout.bytes_per_token - k_bytes
                k = np.frombuffer(fh.read(k_bytes), dtype=unit(layout.k_row)).reshape(layout.n_layer, len(tokens))
                v = np.frombuffer(fh.read(v_bytes), dtype=v_unit).reshape(v_shape(len(tokens)))
                parent_index = record["parent"]
                tree = (model, str(record["scope"]))
                if parent_index >= 0:
                    parent = loaded[parent_index]
                else:
                    parent = self._roots.get(tree) or self._roots.setdefault(tree, _Node([], tree=tree))
                if parent is None or not tokens or tokens[0] in parent.children \
                        or self.used + k.nbytes + v.nbytes > self.limit:
                    loaded.append(None)  # its subtree is skipped with it
                    continue
                node = _Node(tokens, k.copy(), v.copy(), parent, last_used=next(self._clock), tree=tree)
                parent.children[tokens[0]] = node
                self._nodes.add(node)
                self.used += node.nbytes
                stats = self._stats[model]
                stats.bytes += node.nbytes
                stats.tokens += len(tokens)
                total += len(tokens)
                loaded.append(node)
        return total


def model_identity(path: str | os.PathLike) -> str:
    """A model file's identity for persisted caches: its size and hashes of its first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return f"{size}:{digest.hexdigest()}"


class ModelPromptCache:
    """One model's view of the shared cache, as its scheduler uses it."""

    def __init__(self, cache: PromptCache, model: str, layout: KvLayout) -> None:
        self.cache, self.model = cache, model
        cache.register(model, layout)

    def held(self, scope: str, tokens: list[int]) -> int:
        return self.cache.held(self.model, scope, tokens)

    def restore(self, scope: str, tokens: list[int], limit: int, seq_id: int,
                scratch: np.ndarray | None = None) -> tuple[int, np.ndarray | None]:
        return self.cache.restore(self.model, scope, tokens, limit, seq_id, scratch)

    def store(self, scope: str, tokens: list[int], state: np.ndarray) -> int:
        return self.cache.store(self.model, scope, tokens, state)

    def stats(self) -> CacheStats:
        return self.cache.stats(self.model)
