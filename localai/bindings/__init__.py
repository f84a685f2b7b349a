"""Thin typed wrappers over the compiled cffi modules: own the native handles, raise package errors."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable

from localai import __version__
from localai.errors import BindingsNotBuilt, NativeError


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


class NativeHandle:
    """Owns one native pointer (``_ptr``). ``close()`` frees it once with ``_free`` (or a
    subclass's own close), ``with`` closes it, use after close raises ``NativeError``, and
    ``__del__`` is only a backstop: owners close explicitly. A cffi pointer is false when NULL,
    so ``_ptr`` may be None or a NULL cdata alike."""

    _ptr: Any = None
    _free: Callable[[Any], None] | None = None

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr and self._free is not None:
            type(self)._free(ptr)

    @property
    def closed(self) -> bool:
        return not self._ptr

    def _live(self) -> Any:
        if not self._ptr:
            raise NativeError(f"{type(self).__name__} is closed")
        return self._ptr

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
