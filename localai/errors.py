"""The one exception root of the package, and its branches.

The HTTP layer maps exception *classes* to status codes (never message text), so raise the
most specific class that fits.
"""

from __future__ import annotations


class LocalAIError(Exception):
    """Root of every error this package raises on purpose."""


class BindingsNotBuilt(LocalAIError, ImportError):
    """The compiled cffi modules are missing or stale: run `python3 build.py`."""


class NativeError(LocalAIError, RuntimeError):
    """A native library call failed."""


class ModelLoadError(NativeError):
    """A model file could not be loaded by its engine."""


class ConfigError(LocalAIError, ValueError):
    """A model configuration (YAML) or server setting is invalid."""


class InvalidRequest(LocalAIError, ValueError):
    """The client sent something we cannot serve (HTTP 400)."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(LocalAIError, LookupError):
    """No model of that name is configured (HTTP 404)."""

    def __init__(self, name: str):
        super().__init__(f"The model `{name}` does not exist or you do not have access to it.")
        self.name = name


class CapabilityUnavailable(LocalAIError):
    """The server was built without what the request needs (e.g. the image backend)."""
