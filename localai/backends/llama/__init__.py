"""The ``llama`` backend: text generation (continuous batching), tokenizing and embeddings on llama.cpp.

- ``engine``: ``LlamaEngine``, the public face: prepares requests and owns what it creates.
- ``scheduler``: the thread that batches every active sequence into each ``llama_decode``.
- ``generation``: one request's sequences merged into one event stream.
- ``embedder``: pooled embeddings from a second context on the same model.
- ``text``: token bytes to text deltas (UTF-8 safe, stop strings withheld).

The host-RAM prompt cache the scheduler saves evicted slots into is ``localai.prompt_cache``
(shared by every model of a manager, so it imports no bindings).
"""

from __future__ import annotations

from localai.backends import Shared
from localai.backends.llama.engine import LlamaEngine
from localai.config import ModelConfig
from localai.settings import Settings

__all__ = ["LlamaEngine", "load"]


def load(config: ModelConfig, settings: Settings, shared: Shared | None = None) -> LlamaEngine:
    """Backend factory: a ``LlamaEngine`` for a model config (see ``localai.backends``)."""
    path = config.model_path(settings.models_path)
    return LlamaEngine(
        str(path),
        context_size=config.context_size or settings.context_size,
        parallel=config.parallel or settings.parallel,
        threads=config.threads or settings.threads,
        use_mmap=config.mmap,
        use_mlock=config.mlock,
        name=config.name,
        max_queue=settings.max_queue,
        prompt_cache=shared.prompt_cache if shared is not None else None,
        prompt_cache_dir=settings.prompt_cache_dir,
    )
