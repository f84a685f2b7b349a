"""Backend registry: a backend name (the YAML ``backend:`` field) maps to a factory and the
capabilities its engines have.

Built-in backends register exactly as an extra one would, by name, an import path resolved
on first use (so a server that never transcribes never imports whisper) and the
capabilities they declare, which the API relies on through ``ModelManager.engine_for``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from localai.capabilities import Capability
from localai.errors import ConfigError

Factory = Callable[[Any, Any, "Shared"], Any]  # (ModelConfig, Settings, Shared) -> engine


@dataclass
class Shared:
    """What the engines of one model manager share (the host-RAM prompt cache)."""

    prompt_cache: Any = None


@dataclass
class Backend:
    name: str
    target: str | Factory  # a factory, or "module:function" imported when first used
    capabilities: frozenset[Capability]

    def factory(self) -> Factory:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target


class BackendRegistry:
    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    def register(self, name: str, target: str | Factory, capabilities: set[Capability] | frozenset[Capability]) -> None:
        self._backends[name] = Backend(name, target, frozenset(capabilities))

    def names(self) -> list[str]:
        return sorted(self._backends)

    def backend(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            raise ConfigError(f"unknown backend {name!r}; known backends: {', '.join(self.names())}")
        return backend

    def factory(self, name: str) -> Factory:
        return self.backend(name).factory()


def default_registry() -> BackendRegistry:
    registry = BackendRegistry()
    text = {Capability.TEXT, Capability.EMBEDDINGS, Capability.TOKENIZE}
    for name in ("llama", "llama-cpp", "llama.cpp"):
        registry.register(name, "localai.backends.llama:load", text)
    registry.register("whisper", "localai.backends.whisper:load", {Capability.TRANSCRIPTION})
    registry.register("bert-embeddings", "localai.backends.bert:load", {Capability.EMBEDDINGS, Capability.TOKENIZE})
    registry.register("stablediffusion", "localai.backends.stablediffusion:load", {Capability.IMAGES})
    return registry
