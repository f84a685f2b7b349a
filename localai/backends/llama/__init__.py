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

import logging
import socket
from typing import TYPE_CHECKING

from localai.backends import Shared
from localai.backends.llama.engine import LlamaEngine
from localai.config import ModelConfig
from localai.errors import ConfigError, WorkerUnreachable
from localai.settings import Settings

log = logging.getLogger("localai.llama")

if TYPE_CHECKING:
    from localai.backends.isolated import IsolatedEngine
    from localai.bindings import llama as L

__all__ = ["LlamaEngine", "load", "load_split"]


def rpc_workers(config: ModelConfig, settings: Settings) -> list[str]:
    """The ggml RPC workers holding part of this model: its YAML's, else the server's."""
    return list(config.rpc_workers or settings.rpc_workers)


def load(config: ModelConfig, settings: Settings, shared: Shared | None = None) -> "LlamaEngine | IsolatedEngine":
    """Backend factory: a ``LlamaEngine`` for a model config (see ``localai.backends``); one
    split over RPC workers runs in a child process (``localai.backends.isolated``)."""
    if rpc_workers(config, settings):
        from localai.backends.isolated import IsolatedEngine

        return IsolatedEngine(config, settings)
    return _engine(config, settings, shared)


def load_split(config: ModelConfig, settings: Settings) -> LlamaEngine:
    """In the model's own process: the engine with its layers split over the RPC workers."""
    from localai.bindings import llama as L

    if not L.rpc_available():
        raise ConfigError(f"{config.name}: this build has no ggml RPC backend (built with --no-rpc), so "
                          "rpc_workers cannot be used")
    workers = rpc_workers(config, settings)
    servers = []
    for endpoint in workers:
        # ggml-rpc aborts the process when a server does not answer: ask first, ourselves.
        server = L.rpc_add_server(endpoint) if _answers(endpoint) else None
        if server is None or not server.devices:
            raise WorkerUnreachable(f"{config.name}: the RPC worker {endpoint} does not answer; start it with "
                                    f"`localai worker --address {endpoint}` (or fix rpc_workers)")
        servers.append(server)
    split = _split(config, servers, config.model_path(settings.models_path))
    log.info("model %s: %s layers on the RPC workers %s (shares %s; the rest on this process's CPU)", config.name,
             "all" if split.gpu_layers < 0 else split.gpu_layers, ", ".join(workers),
             ", ".join(f"{w:.3g}" for w in split.tensor_split))
    return _engine(config, settings, None, split=split)


def _answers(endpoint: str, timeout: float = 5.0) -> bool:
    """Whether something accepts TCP connections at "host:port"."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _split(config: ModelConfig, servers: list, path) -> "L.Split":
    """Layers on the workers and their shares: from tensor_split (this process first, then each
    worker) when the YAML has it, else by free memory (this machine's available RAM, the
    workers' reported free memory); gpu_layers overrides how many go to the workers."""
    from localai.bindings import llama as L

    weights = list(config.tensor_split)
    if weights and len(weights) != len(servers) + 1:
        raise ConfigError(f"{config.name}: tensor_split needs {len(servers) + 1} weights (this process, then each "
                          f"of the {len(servers)} RPC workers), got {len(weights)}")
    if not weights:
        weights = [float(_available_ram())] + [float(s.free_bytes) for s in servers]
    worker_weights = []
    for server, weight in zip(servers, weights[1:]):
        worker_weights += [weight / server.devices] * server.devices
    layers = config.gpu_layers
    if layers is None:
        total = sum(weights)
        share = sum(weights[1:]) / total if total > 0 else 1.0
        layers = -1 if share >= 1.0 else _offloadable_layers(path) * share
    return L.Split(tuple(s.endpoint for s in servers), gpu_layers=int(round(layers)),
                   tensor_split=tuple(worker_weights))


def _offloadable_layers(path) -> int:
    """llama.cpp's count for n_gpu_layers: the blocks and the output layer."""
    from localai.bindings import llama as L

    model = L.Model(path, vocab_only=True)
    try:
        arch = model.meta("general.architecture") or "llama"
        return int(model.meta(f"{arch}.block_count") or 0) + 1
    finally:
        model.close()


def _available_ram() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _engine(config: ModelConfig, settings: Settings, shared: Shared | None, split=None) -> LlamaEngine:
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
        split=split,
    )
