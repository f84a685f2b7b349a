"""Embeddings from any GGUF the llama backend loads (a YAML with ``backend: llama`` and
``embeddings: true``).

``LlamaEngine.embed`` delegates here. The embedder is a second llama.cpp context on the
engine's already loaded model, created (and closed) by the engine, with embeddings on and the pooling
the GGUF names (mean when it names none, as for chat models). Many inputs go into one
batch under distinct sequence ids; a batch is one micro-batch, because llama.cpp pools per
micro-batch and a sequence split across two would be pooled from half its tokens.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from localai.backends.embeddings import check_token_lists
from localai.bindings import llama as L
from localai.errors import ConfigError, ModelUnloaded

# The longest pass, and so the longest input. With a decoder model llama.cpp also computes
# and stores logits for every token of an embedding pass (n_vocab floats each), so a larger
# pass costs memory fast: 1024 tokens of a 49k-token vocabulary are ~200 MB.
MAX_BATCH_TOKENS = 1024
# Short inputs are packed into passes of about this many tokens: attention in a pass spans
# all of its tokens (other inputs masked out), so its cost grows with the square of the pass.
PASS_TOKENS = 256


class LlamaEmbedder:
    """Batched, pooled, L2-normalised embeddings over a llama.cpp model (thread-safe)."""

    def __init__(self, model: L.Model, *, threads: int | None = None, max_tokens: int | None = None) -> None:
        if model.has_encoder and model.has_decoder:
            raise ConfigError(f"{model.path}: encoder-decoder models do not produce embeddings here")
        pooling = model.pooling_type()
        if pooling in (L.POOLING_NONE, L.POOLING_UNSPECIFIED):
            pooling = L.POOLING_MEAN  # sentence-transformers' default
        if pooling == L.POOLING_RANK:
            raise ConfigError(f"{model.path} is a reranker (rank pooling), not an embedding model")
        arch = model.meta("general.architecture") or ""
        causal = model.meta(f"{arch}.attention.causal") != "false"
        limit = min(max_tokens or MAX_BATCH_TOKENS, MAX_BATCH_TOKENS)
        self.n_batch = max(1, min(limit, model.n_ctx_train or limit))
        self.model = model
        self.pooling = pooling
        # A decoder keeps the batch in its KV cache (n_ctx must hold it all); an encoder has
        # no cache and n_ctx only bounds positions, so leave it at the model's own.
        self.ctx = L.Context(model, n_ctx=self.n_batch if causal else 0, n_batch=self.n_batch,
                             n_ubatch=self.n_batch,
                             n_seq_max=min(L.max_parallel_sequences(), self.n_batch),
                             n_threads=threads, embeddings=True, pooling=pooling, kv_unified=True)
        self.max_tokens = self.n_batch
        self.dimensions = int(model.n_embd_out)
        self._batch = L.Batch(self.n_batch)
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text, add_special=True, parse_special=True)

    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """(embeddings [len(inputs), dimensions], prompt tokens); token lists are used as given."""
        if len(inputs) == 0:
            return np.empty((0, self.dimensions), dtype=np.float32), 0
        if all(isinstance(x, str) for x in inputs):
            tokens = [self.tokenize(x) for x in inputs]
        else:
            tokens = [list(x) for x in inputs]
        check_token_lists(tokens, self.model.n_vocab, self.max_tokens)
        out = np.empty((len(tokens), self.dimensions), dtype=np.float32)
        with self._lock:
            if self.ctx.closed:
                raise ModelUnloaded("the model was unloaded (the server is shutting down)")
            first = 0
            while first < len(tokens):
                last, used = first, 0
                budget = max(PASS_TOKENS, len(tokens[first]))  # a long input goes alone
                while (last < len(tokens) and last - first < self.ctx.n_seq_max
                       and used + len(tokens[last]) <= budget):
                    used += len(tokens[last])
                    last += 1
                self._pass(tokens, first, last, out)
                first = last
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)  # torch.nn.functional.normalize, as sentence-transformers
        return out, sum(len(t) for t in tokens)

    def _pass(self, tokens: list[list[int]], first: int, last: int, out: np.ndarray) -> None:
        batch = self._batch
        batch.clear()
        for seq, ids in enumerate(tokens[first:last]):
            # Pooling reads every token: all are outputs (llama.cpp warns and overrides otherwise).
            batch.add(ids, 0, seq, True, logits_all=True)
        self.ctx.memory_clear()  # nothing from the previous pass may be attended to
        self.ctx.decode(batch)
        for seq in range(last - first):
            out[first + seq] = self.ctx.embeddings_seq(seq)

    def close(self) -> None:
        with self._lock:
            self._batch.close()
            self.ctx.close()
