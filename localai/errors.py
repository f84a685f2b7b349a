"""Every exception class the package raises, under one root.

The HTTP layer maps exception *classes* to status codes (``localai.api.http``), never message
text, so raise the most specific class that fits. Leaves may also subclass a builtin
(``ValueError``, ``LookupError``...) so callers outside the package can catch them naturally.
"""

from __future__ import annotations


class LocalAIError(Exception):
    """Root of every error this package raises on purpose."""


# ---- what a client did wrong (HTTP 4xx) ---------------------------------------------------------

class RequestError(LocalAIError):
    """A request we refuse. ``param`` names the offending request field, ``code`` is the
    machine-readable reason of OpenAI's error body (a class default, or given per raise)."""

    code: str | None = None
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(RequestError, ValueError):
    """The client sent something we cannot serve (HTTP 400)."""


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class CapabilityMissing(InvalidRequest):
    """The requested model exists but cannot do what the route needs (e.g. embed with a
    whisper model)."""

    param = "model"


class GrammarError(InvalidRequest):
    """A GBNF grammar that llama.cpp would refuse, or that exceeds our limits."""

    code = "invalid_grammar"
    param = "grammar"

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        self.line, self.col = line, col
        super().__init__(f"line {line}, column {col}: {message}" if line is not None else message)
        self.reason = message


class LeftRecursion(GrammarError):
    """A rule that can reach itself without consuming input (llama.cpp rejects these)."""


class UnsupportedSchema(InvalidRequest):
    """A JSON Schema uses something the grammar converter cannot enforce."""

    code = "unsupported_schema"

    def __init__(self, feature: str, path: str = "#", *, param: str | None = None, message: str | None = None):
        self.feature, self.path = feature, path
        super().__init__(message or f"unsupported JSON Schema at {path}: {feature}", param=param)


class Unsatisfiable(UnsupportedSchema):
    """No JSON value (that we could generate) satisfies this (sub)schema."""

    def __init__(self, feature: str, path: str = "#"):
        super().__init__(f"unsatisfiable: {feature}", path)


class AudioDecodeError(InvalidRequest):
    """The upload is not audio we can decode."""

    code = "invalid_audio"


class AudioTooLong(InvalidRequest):
    """The decoded audio would exceed the server's duration limit."""

    code = "audio_too_long"


class Unauthorized(RequestError):
    """A missing or wrong API key (HTTP 401)."""

    code = "invalid_api_key"


class Forbidden(RequestError):
    """A request refused for where it came from: a foreign Host or Origin (HTTP 403)."""


class ModelNotFound(RequestError, LookupError):
    """No model of that name is configured (HTTP 404)."""

    code = "model_not_found"
    param = "model"

    def __init__(self, name: str):
        super().__init__(f"The model `{name}` does not exist or you do not have access to it.")
        self.name = name


class NotFound(RequestError, LookupError):
    """No such route, file or object (HTTP 404)."""

    code = "not_found"


class MethodNotAllowed(RequestError):
    """The route exists but not for this HTTP method (HTTP 405)."""

    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: list[str] | None = None):
        super().__init__(message)
        self.allowed = allowed or []


class Conflict(RequestError):
    """The request conflicts with the state of the server (HTTP 409)."""

    code = "conflict"


class PayloadTooLarge(RequestError):
    """The body is larger than the server accepts (HTTP 413)."""

    code = "request_too_large"


class UnsupportedMediaType(RequestError):
    """The body's Content-Type is not what the route reads (HTTP 415)."""

    code = "unsupported_media_type"


class RequestTimedOut(RequestError):
    """The work took longer than the server's per-request limit (HTTP 408)."""

    code = "request_timeout"


class TooManyRequests(RequestError):
    """The model's wait queue is full (HTTP 429); try again after ``retry_after`` seconds."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


# ---- what the server could not do (HTTP 5xx) ---------------------------------------------------

class CapabilityUnavailable(LocalAIError):
    """The server was built without what the request needs (e.g. the image backend)."""


class NotReady(LocalAIError):
    """The server is still starting (preloading or loading models)."""


class BindingsNotBuilt(LocalAIError, ImportError):
    """The compiled cffi modules are missing or stale: run `python3 build.py`."""


class NativeError(LocalAIError, RuntimeError):
    """A native library call failed."""


class DecodeError(NativeError):
    """llama_decode failed; ``status`` 1 means no KV slot was free for the batch."""

    def __init__(self, status: int):
        super().__init__(f"llama_decode returned {status}")
        self.status = status


class ModelLoadError(NativeError):
    """A model file could not be loaded by its engine."""


class ModelUnloaded(NativeError):
    """The model was unloaded (the server is shutting down) while a request needed it."""


class WorkerLost(ModelUnloaded):
    """A ggml RPC worker holding part of the model stopped answering mid-request; the model
    is loaded again on the next request."""


class WorkerUnreachable(ModelLoadError):
    """A ggml RPC worker of the model's configuration does not answer at load time."""


class ConfigError(LocalAIError, ValueError):
    """A model configuration (YAML) or server setting is invalid."""


class ConfigKeyError(ConfigError):
    """One key of a model configuration is invalid: ``key`` is its dotted path."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


class FetchError(LocalAIError, RuntimeError):
    """A pinned archive could not be fetched or did not match its manifest."""


class HashMismatch(FetchError):
    """A file's sha256 differs from the one it was pinned with."""


class GalleryError(LocalAIError):
    """A gallery entry could not be installed."""


class ConversionError(LocalAIError, ValueError):
    """Model weights could not be converted to the format an engine loads."""
