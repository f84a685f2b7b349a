"""Thin typed wrappers over the compiled cffi modules: own the native handles, raise package errors."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any, Callable, Mapping

from localai import __version__
from localai.errors import BindingsNotBuilt, LocalAIError, NativeError


# Native log lines that reach stderr: ggml's levels by name ("none" silences everything).
LOG_LEVELS = {"debug": 1, "info": 2, "warn": 3, "error": 4, "none": 99}
_log_level = "warn"


def set_native_log_level(level: str) -> None:
    """Which native (ggml, llama.cpp, whisper.cpp) log lines reach stderr, for the whole process.

    Called once from the server's settings; bindings loaded later apply it when they load.
    There is one C log sink (in the llama module), which every library logs through.
    """
    global _log_level
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown native log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    _log_level = level
    llama = sys.modules.get("localai.bindings.llama")
    if llama is not None:
        llama.apply_log_level()


def native_log_level() -> int:
    """The ggml log level (``GGML_LOG_LEVEL_*`` value) below which native lines are dropped."""
    return LOG_LEVELS[_log_level]


def default_threads() -> int:
    """CPU threads a native engine uses by default: the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def check_status(status: int, what: str, last_error: Callable[[], str],
                 errors: Mapping[int, Callable[[str], LocalAIError]]) -> int:
    """A C call's status: returned when it is a success (>= 0), else raised as the exception
    ``errors`` names for it (``NativeError`` when it names none), with the library's own
    message for this thread's last failure."""
    if status >= 0:
        return status
    message = last_error()
    message = f"{what}: {message}" if message and what else message or f"{what} failed with status {status}"
    raise errors.get(status, NativeError)(message)


def require(ok: bool, message: str, error: Callable[[str], LocalAIError] = NativeError) -> None:
    """Raise ``error(message)`` unless a C call that reports no status succeeded (e.g. returned non-NULL)."""
    if not ok:
        raise error(message)


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
