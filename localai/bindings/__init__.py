"""Thin typed wrappers over the compiled cffi modules: own the native handles, raise package errors."""

from __future__ import annotations

import importlib
from types import ModuleType

from localai import __version__
from localai.errors import BindingsNotBuilt


def load_native(module: str) -> ModuleType:
    """Import a compiled cffi module, refusing a missing or stale build with what to run."""
    try:
        native = importlib.import_module(f"localai._native.{module}")
    except ImportError as exc:
        raise BindingsNotBuilt(
            f"the native bindings ({module}) are not built or cannot load ({exc}). Run `python3 build.py`."
        ) from exc
    built_for = native.ffi.string(native.lib.localai_bindings_version()).decode()
    if built_for != __version__:
        raise BindingsNotBuilt(
            f"the native bindings were built for localai {built_for}, this is {__version__}. Run `python3 build.py`."
        )
    return native
