"""Backend registry: a backend name (the YAML ``backend:`` field) maps to a factory.

Built-in backends register exactly as an extra one would, by name and an import path
resolved on first use, so a server that never transcribes never imports whisper.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from localai.errors import ConfigError

Factory = Callable[[Any, Any], Any]  # (ModelConfig, Settings) -> engine


class BackendRegistry:
    def __init__(self) -> None:
        self._targets: dict[str, str | Factory] = {}

    def register(self, name: str, target: str | Factory) -> None:
        """``target`` is a factory or "module:function" imported when first used."""
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def factory(self, name: str) -> Factory:
        target = self._targets.get(name)
        if target is None:
            raise ConfigError(f"unknown backend {name!r}; known backends: {', '.join(self.names())}")
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._targets[name] = target
        return target


def default_registry() -> BackendRegistry:
    registry = BackendRegistry()
    for name in ("llama", "llama-cpp", "llama.cpp"):
        registry.register(name, "localai.backends.llama:load")
    registry.register("whisper", "localai.backends.whisper:load")
    registry.register("bert-embeddings", "localai.backends.bert:load")
    registry.register("stablediffusion", "localai.backends.stablediffusion:load")
    return registry
