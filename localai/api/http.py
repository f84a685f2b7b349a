"""HTTP helpers every route uses: JSON bodies in and out, SSE, OpenAI error bodies, and the
per-request record the access log reads. Imports nothing from the app or the routes.

Errors are mapped from exception *classes* to status codes here (``error_response``), never
from message text.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import numpy as np
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from localai import errors
from localai.api.metrics import Metrics
from localai.config import ModelConfig
from localai.api.response_store import ResponseStore
from localai.gallery import GalleryService
from localai.manager import ModelManager
from localai.settings import Settings

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class RequestRecord:
    """What one request did, for its access log line and metrics: set by the route, read once at the end."""

    model: str | None = None
    tokens: int | None = None  # completion tokens for text, prompt tokens for embeddings
    route: str = "-"  # the route's path pattern (a metrics label)
    key_scope: str | None = None  # which API key it came with (its digest prefix), when keys are set
    release: Callable[[], None] | None = None  # frees what admission took (a worker-thread slot)


class ApiRequest(Request):
    """A werkzeug request with its record."""

    def __init__(self, environ: dict, *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        self.record = RequestRecord()


def client_gone(request: Request) -> Callable[[], bool]:
    """Whether the client of a request has disconnected (Waitress tells, with request lookahead on)."""
    check = request.environ.get("waitress.client_disconnected")
    return check if callable(check) else (lambda: False)


def deadline(settings: Settings) -> float | None:
    """When a request started now must stop (time.monotonic()), by --request-timeout; None: never."""
    return time.monotonic() + settings.request_timeout if settings.request_timeout else None


class Server(Protocol):
    """What a route handler may use of the application."""

    settings: Settings
    manager: ModelManager
    metrics: Metrics
    routes: tuple[Route, ...]
    ready: bool
    gallery: GalleryService
    responses: ResponseStore

    def cache_scope(self, request: ApiRequest) -> str:
        """Whose prompt prefixes a request may reuse: its API key's when the cache is isolated."""
        ...

    def resolve_model(self, request: ApiRequest, requested: Any) -> ModelConfig:
        """The model that answers: the request's ``model``, else the bearer token when it names a
        model (only without API keys), else the first configured model; recorded for the log."""
        ...


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    path: str
    handler: Handler
    methods: tuple[str, ...]
    v1: bool = True  # also served under /v1
    public: bool = False  # answered without an API key
    body: str = "json"  # what a POST carries: "json" (up to --json-limit) or "multipart" (--upload-limit)
    heavy: bool = False  # runs a model: counted against the server's worker threads
    schema: str | None = None  # the name of its request body's schema in localai.api.schemas
    summary: str = ""
    errors: str = "openai"  # the error body's shape: "openai", or "anthropic" on Anthropic's routes

    @property
    def paths(self) -> list[str]:
        return [f"/v1{self.path}", self.path] if self.v1 else [self.path]


# ---- bodies -----------------------------------------------------------------------------------------

def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json",
                    headers=headers)


def text_response(text: str) -> Response:
    return Response(text, status=200, mimetype="text/plain")


MAX_JSON_DEPTH = 64  # nesting of objects and arrays in a body (tool schemas rarely go past 10)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # the "unrolled loop" form: no per-character alternation
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def json_depth(data: bytes) -> int:
    """How deeply a JSON text nests objects and arrays (an upper bound when that is small),
    computed in C over the raw bytes (its
    strings set aside), so a hostile body is refused before a recursive parser sees it."""
    openings = data.count(b"[") + data.count(b"{")
    if openings <= MAX_JSON_DEPTH:  # most bodies: too few brackets to nest too deep, whatever their order
        return openings
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return int(np.cumsum(_DEPTH_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int64).max())


def _reject_constant(name: str) -> Any:
    raise errors.InvalidRequest(f"{name} is not a JSON number; numbers must be finite.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to infinity
        raise errors.InvalidRequest(f"The number {text[:40]} is too large; numbers must be finite.")
    return value


def read_json(request: Request) -> Any:
    """The JSON body: strict JSON (no NaN or Infinity), at most MAX_JSON_DEPTH levels deep, and
    only well-formed Unicode (no unpaired UTF-16 surrogate escapes)."""
    data = request.get_data(cache=False)
    if json_depth(data) > MAX_JSON_DEPTH:
        raise errors.InvalidRequest(f"The JSON body nests objects and arrays more than {MAX_JSON_DEPTH} levels "
                                    "deep.")
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidRequest("We could not parse the JSON body of your request. The OpenAI API expects a "
                                    "JSON payload.") from None
    if b"\\u" in data and (b"\\ud" in data.lower()):  # only a \udXXX escape can make a lone surrogate
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise errors.InvalidRequest("The JSON body contains an unpaired UTF-16 surrogate (a \\udXXX escape "
                                        "without its pair): it is not valid Unicode text.") from None
    return value


def read_json_object(request: Request) -> dict:
    body = read_json(request)
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    return body


# ---- server-sent events -----------------------------------------------------------------------------

def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def stream_response(chunks: Iterator[bytes], on_close: Callable[[], None]) -> Response:
    """An SSE response whose first chunk is produced before any header goes out, so an early
    failure is still a JSON error; ``on_close`` runs when the stream ends or the client leaves."""
    try:
        first = next(chunks)
    except StopIteration:
        first = b""
    except Exception:
        on_close()
        raise

    def body() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from chunks
        finally:
            on_close()

    return Response(body(), status=200, mimetype="text/event-stream", headers=SSE_HEADERS, direct_passthrough=True)


# ---- errors -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorInfo:
    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Most specific first: the first class an exception is an instance of decides its status.
_CLIENT_STATUS: tuple[tuple[type[errors.RequestError], int], ...] = (
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.ModelNotFound, 404),
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.Conflict, 409),
    (errors.RequestTimedOut, 408),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.TooManyRequests, 429),
    (errors.RequestError, 400),
)
# A model that cannot load is unavailable, not a crash: 503, and it is tried again on the next request.
_SERVER_STATUS: tuple[tuple[type[errors.LocalAIError], int, str | None], ...] = (
    (errors.CapabilityUnavailable, 501, "not_implemented"),
    (errors.NotReady, 503, "not_ready"),
    (errors.ConfigError, 503, "model_load_failed"),
    (errors.WorkerUnreachable, 503, "rpc_worker_unreachable"),
    (errors.ModelLoadError, 503, "model_load_failed"),
    (errors.BindingsNotBuilt, 503, "model_load_failed"),
    (errors.WorkerLost, 503, "rpc_worker_lost"),
    (errors.ModelUnloaded, 503, "model_unloaded"),
    (errors.LocalAIError, 500, None),
)
INTERNAL_ERROR = "The server had an error while processing your request."


def error_info(exc: BaseException) -> ErrorInfo:
    """The status and OpenAI error body of an exception, by its class."""
    if isinstance(exc, errors.RequestError):
        status = next(code for cls, code in _CLIENT_STATUS if isinstance(exc, cls))
        headers: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, errors.Unauthorized):
            headers = (("WWW-Authenticate", "Bearer"),)
        elif isinstance(exc, errors.TooManyRequests):
            headers = (("Retry-After", str(exc.retry_after)),)
        elif isinstance(exc, errors.MethodNotAllowed) and exc.allowed:
            headers = (("Allow", ", ".join(exc.allowed)),)
        return ErrorInfo(status, "invalid_request_error", exc.message, exc.param, exc.code, headers)
    if isinstance(exc, errors.LocalAIError):
        status, code = next((s, c) for cls, s, c in _SERVER_STATUS if isinstance(exc, cls))
        return ErrorInfo(status, "server_error", str(exc), None, code)
    if isinstance(exc, RecursionError):  # a safety net: bodies and schemas have depth limits before this
        return ErrorInfo(400, "invalid_request_error", "The request is nested too deeply to process.", None,
                         "invalid_value")
    if isinstance(exc, RequestEntityTooLarge):
        return ErrorInfo(413, "invalid_request_error", "The request body is larger than this server accepts.",
                         None, errors.PayloadTooLarge.code)
    if isinstance(exc, HTTPException) and exc.code:
        kind = "invalid_request_error" if exc.code < 500 else "server_error"
        return ErrorInfo(exc.code, kind, exc.description or exc.name)
    return ErrorInfo(500, "server_error", INTERNAL_ERROR)


def mid_stream_error(exc: BaseException, log: logging.Logger, what: str) -> ErrorInfo:
    """The error of a stream whose headers are out (it becomes the stream's last event); a
    server-side one is logged with its traceback, as ``App.dispatch`` logs the others."""
    info = error_info(exc)
    if info.status >= 500:
        log.exception("%s failed mid-stream", what)
    return info


def error_response(info: ErrorInfo) -> Response:
    return json_response(info.body(), status=info.status, headers=dict(info.headers))
