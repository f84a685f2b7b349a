"""Which model answers a request, and loading it (lazily, once) through its backend."""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal, overload

from localai.backends import BackendRegistry, Shared, default_registry
from localai.prompt_cache import PromptCache
from localai.capabilities import Capability, Embedder, ImageGenerator, TextGenerator, Tokenizer, Transcriber
from localai.config import ModelConfig, load_model_configs
from localai.errors import CapabilityMissing, ModelNotFound
from localai.settings import Settings

log = logging.getLogger("localai")


class ModelManager:
    def __init__(self, settings: Settings, registry: BackendRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.configs, self.config_errors = load_model_configs(settings.models_path)
        for error in self.config_errors:
            log.error("skipping model config %s", error)
        self.shared = Shared(prompt_cache=PromptCache(settings.cache_ram_bytes))
        self._engines: dict[str, Any] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def reload_configs(self) -> None:
        """Read the models folder again (models installed since start serve at once)."""
        self.configs, self.config_errors = load_model_configs(self.settings.models_path)
        for error in self.config_errors:
            log.error("skipping model config %s", error)

    def names(self) -> list[str]:
        return list(self.configs)

    def resolve(self, requested: str | None, bearer: str | None = None) -> ModelConfig:
        """The request's model; else the bearer token when it names a model; else the first model."""
        if requested:
            config = self.configs.get(requested)
            if config is None:
                raise ModelNotFound(requested)
            return config
        if bearer and bearer in self.configs:
            return self.configs[bearer]
        if not self.configs:
            raise ModelNotFound("(none configured)")
        return next(iter(self.configs.values()))

    def capabilities(self, config: ModelConfig) -> frozenset[Capability]:
        """What a model can do: its backend's capabilities; embeddings only where its YAML enables them."""
        declared = self.registry.backend(config.backend).capabilities
        return declared if config.embeddings else declared - {Capability.EMBEDDINGS}

    @overload
    def engine_for(self, config: ModelConfig, capability: Literal[Capability.TEXT]) -> TextGenerator: ...
    @overload
    def engine_for(self, config: ModelConfig, capability: Literal[Capability.EMBEDDINGS]) -> Embedder: ...
    @overload
    def engine_for(self, config: ModelConfig, capability: Literal[Capability.TRANSCRIPTION]) -> Transcriber: ...
    @overload
    def engine_for(self, config: ModelConfig, capability: Literal[Capability.IMAGES]) -> ImageGenerator: ...
    @overload
    def engine_for(self, config: ModelConfig, capability: Literal[Capability.TOKENIZE]) -> Tokenizer: ...

    def engine_for(self, config: ModelConfig, capability: Capability) -> Any:
        """The loaded engine of ``config`` for a route that needs ``capability``; refused with a
        400 naming the model, before anything loads, when its backend does not have it."""
        self.require(config, capability)
        return self._engine(config)

    def require(self, config: ModelConfig, capability: Capability) -> None:
        """Refuse (400, ``param: model``) a model whose backend does not have ``capability``."""
        if capability not in self.capabilities(config):
            if capability is Capability.EMBEDDINGS and Capability.EMBEDDINGS in self.registry.backend(
                    config.backend).capabilities:
                raise CapabilityMissing(f"The model `{config.name}` does not serve embeddings: its configuration does "
                                        "not enable them (set `embeddings: true` in its YAML).",
                                        code="model_not_embedding")
            raise CapabilityMissing(f"The model `{config.name}` (backend {config.backend}) does not "
                                    f"{capability.value}.",
                                    code="model_not_embedding" if capability is Capability.EMBEDDINGS else None)

    def _engine(self, config: ModelConfig) -> Any:
        """The loaded engine of ``config``, loading it on first use (one load per model)."""
        engine = self._engines.get(config.name)
        if engine is not None and not getattr(engine, "lost", None):
            return engine
        with self._lock:
            lock = self._loading.setdefault(config.name, threading.Lock())
        with lock:
            engine = self._engines.get(config.name)
            if engine is not None and getattr(engine, "lost", None):
                # Its process died (an RPC worker was lost): load it again, now.
                log.info("reloading model %s: %s", config.name, engine.lost)
                self.unload(config.name)
                engine = None
            if engine is None:
                log.info("loading model %s (backend %s)", config.name, config.backend)
                engine = self.registry.factory(config.backend)(config, self.settings, self.shared)
                self._engines[config.name] = engine
        return engine

    def preload(self, name: str) -> None:
        """Load a model now (``--preload``) rather than on its first request."""
        self._engine(self.resolve(name))

    def unload(self, name: str) -> bool:
        """Close a loaded model (its requests in flight end with 503 model_unloaded); whether it was loaded."""
        with self._lock:
            engine = self._engines.pop(name, None)
        if engine is None:
            return False
        log.info("unloading model %s", name)
        close = getattr(engine, "close", None)
        if close:
            close()
        return True

    def loaded_engine(self, name: str) -> Any | None:
        return self._engines.get(name)

    def loaded_engines(self) -> list[tuple[str, Any]]:
        """(name, engine) of every loaded model."""
        return list(self._engines.items())

    def close(self) -> None:
        with self._lock:
            engines, self._engines = self._engines, {}
        for engine in engines.values():
            close = getattr(engine, "close", None)
            if close:
                close()
