"""The Werkzeug application: the route table, authentication, errors, one log line per request.

``ROUTES`` is the one table of endpoints: each URL (served with and without the ``/v1``
prefix where OpenAI has one, as LocalAI does) maps straight to its handler in
``localai.api.routes``. Handlers are ``on_<endpoint>(app, request, **route_values)``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, ErrorInfo, Route, error_info, error_response, json_response
from localai.api.response_store import ResponseStore
from localai.api.metrics import Metrics
from localai.api.security import Guard, presented_key
from localai.api.routes import (anthropic, audio, chat, completions, edits, embeddings, gallery, images, models,
                                monitor, responses, service, tokenize, webui)
from localai.config import ModelConfig
from localai.errors import (InvalidRequest, LocalAIError, MethodNotAllowed, NotFound, TooManyRequests,
                            UnsupportedMediaType)
from localai.gallery import GalleryService
from localai.manager import ModelManager
from localai.settings import Settings

log = logging.getLogger("localai.http")


ROUTES: tuple[Route, ...] = (
    Route("/models", models.on_models, ("GET",), summary="List the configured models"),
    Route("/models/<path:model_id>", models.on_model, ("GET",), summary="Retrieve a model"),
    Route("/tokenize", tokenize.on_tokenize, ("POST",), schema="tokenize", summary="Tokenize text (LocalAI)"),
    Route("/chat/completions", chat.on_chat, ("POST",), heavy=True, schema="chat", summary="Chat completion"),
    Route("/completions", completions.on_completions, ("POST",), heavy=True, schema="completion",
          summary="Text completion"),
    Route("/responses", responses.on_create, ("POST",), heavy=True, schema="responses",
          summary="Create a response (OpenAI's Responses API)"),
    Route("/responses/input_tokens", responses.on_input_tokens, ("POST",), schema="responses",
          summary="Count a response's input tokens"),
    Route("/responses/<response_id>", responses.on_retrieve, ("GET",), summary="A stored response"),
    Route("/responses/<response_id>", responses.on_delete, ("DELETE",), summary="Delete a stored response"),
    Route("/responses/<response_id>/input_items", responses.on_input_items, ("GET",),
          summary="A stored response's input items"),
    Route("/messages", anthropic.on_messages, ("POST",), heavy=True, schema="messages", errors="anthropic",
          summary="Create a message (Anthropic's Messages API)"),
    Route("/messages/count_tokens", anthropic.on_count_tokens, ("POST",), schema="messages_count",
          errors="anthropic", summary="Count a message's input tokens (Anthropic)"),
    Route("/edits", edits.on_edits, ("POST",), heavy=True, schema="edit", summary="Edit (LocalAI)"),
    Route("/embeddings", embeddings.on_embeddings, ("POST",), heavy=True, schema="embeddings",
          summary="Embeddings"),
    Route("/audio/transcriptions", audio.on_transcriptions, ("POST",), body="multipart", heavy=True,
          schema="audio", summary="Transcribe audio"),
    Route("/audio/translations", audio.on_translations, ("POST",), body="multipart", heavy=True,
          schema="audio", summary="Translate audio into English"),
    Route("/images/generations", images.on_images, ("POST",), heavy=True, schema="images",
          summary="Generate images"),
    Route("/generated-images/<path:filename>", images.on_generated_image, ("GET",), v1=False,
          summary="A generated image"),
    Route("/models/apply", gallery.on_apply, ("POST",), v1=False, schema="gallery_apply",
          summary="Install a model from a gallery or a definition (LocalAI)"),
    Route("/models/available", gallery.on_available, ("GET",), v1=False, summary="The galleries' models (LocalAI)"),
    Route("/models/galleries", gallery.on_galleries, ("GET",), v1=False, summary="The galleries (LocalAI)"),
    Route("/models/jobs", gallery.on_jobs, ("GET",), v1=False, summary="Gallery jobs by uuid (LocalAI)"),
    Route("/models/jobs/<job_id>", gallery.on_job, ("GET",), v1=False, summary="A gallery job (LocalAI)"),
    Route("/models/jobs/<job_id>/cancel", gallery.on_cancel, ("POST",), v1=False, summary="Cancel a gallery job"),
    Route("/models/delete/<name>", gallery.on_delete, ("POST",), v1=False,
          summary="Delete a model and the files only it uses (LocalAI)"),
    Route("/backend/monitor", monitor.on_monitor, ("GET", "POST"), v1=False, summary="Backend monitor (LocalAI)"),
    Route("/openapi.json", service.on_openapi, ("GET",), v1=False, summary="This API's OpenAPI document"),
    Route("/metrics", service.on_metrics, ("GET",), v1=False, summary="Prometheus metrics"),
    Route("/healthz", service.on_healthz, ("GET",), v1=False, public=True, summary="Liveness"),
    Route("/readyz", service.on_readyz, ("GET",), v1=False, public=True, summary="Readiness"),
    Route("/", webui.on_index, ("GET",), v1=False, public=True, summary="The web playground (HTML; --disable-webui)"),
    Route("/static/<name>", webui.on_static, ("GET",), v1=False, public=True,
          summary="The web playground's script, style sheet and icon"),
    Route("/webui/models", webui.on_models, ("GET",), v1=False,
          summary="The models with their backends and capabilities (the playground's model list)"),
)
# Worker threads kept free of model work, so health checks, model lists and monitors are
# answered even when every other thread is busy generating.
RESERVED_THREADS = 2


def _url_map(routes: Iterable[Route]) -> Map:
    return Map([Rule(path, endpoint=route, methods=list(route.methods)) for route in routes for path in route.paths])


class App:
    """One application: its settings, its models, its routes. Nothing is shared between two."""

    def __init__(self, settings: Settings, manager: ModelManager | None = None) -> None:
        self.settings = settings
        self.manager = manager or ModelManager(settings)
        self.routes = ROUTES
        self.url_map = _url_map(ROUTES)
        self.guard = Guard(settings)
        self.metrics = Metrics(self.manager.loaded_engines)
        self.gallery = GalleryService(settings, self.manager)
        self.responses = ResponseStore(settings.responses_store_size)
        self.ready = True  # False while the server's start-up work (preloading models) runs
        isolate = settings.isolate_prompt_cache
        self._isolate_cache = self.guard.keys.configured if isolate is None else isolate
        self._heavy = threading.BoundedSemaphore(max(1, settings.server_threads - RESERVED_THREADS))
        self._in_flight = 0
        self._in_flight_lock = threading.Condition()

    # ---- what handlers use (localai.api.http.Server) ----
    def resolve_model(self, request: ApiRequest, requested: Any) -> ModelConfig:
        if requested is not None and not isinstance(requested, str):
            raise InvalidRequest("'model' must be a string.", param="model")
        config = self.manager.resolve(requested or None, self._model_from_bearer(request))
        request.record.model = config.name
        return config

    def cache_scope(self, request: ApiRequest) -> str:
        return (request.record.key_scope or "") if self._isolate_cache else ""

    def _model_from_bearer(self, request: ApiRequest) -> str | None:
        # With API keys configured the bearer token is a key, not a model name.
        return None if self.guard.keys.configured else presented_key(request)

    def _route_for(self, request: ApiRequest) -> tuple[Route, dict]:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            return adapter.match()
        except HTTPException as exc:  # werkzeug's routing: no such path, or not with this method
            if exc.code == 405:
                allowed = sorted(getattr(exc, "valid_methods", None) or [])
                raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}.",
                                       allowed=allowed) from None
            raise NotFound(f"No route {request.path}.") from None

    def _check_body_type(self, route: Route, request: ApiRequest) -> None:
        """A JSON route takes JSON, the audio routes multipart forms: a cross-site "simple"
        request (text/plain, no preflight) is refused, not read."""
        if request.method in ("GET", "HEAD") or not (request.content_length or request.headers.get(
                "Transfer-Encoding")):
            return
        mimetype = request.mimetype
        if route.body == "multipart":
            ok = mimetype == "multipart/form-data"
        else:
            ok = mimetype == "application/json" or mimetype.endswith("+json")
        if not ok:
            wanted = "multipart/form-data" if route.body == "multipart" else "application/json"
            raise UnsupportedMediaType(f"This route reads {wanted} bodies, not {mimetype or 'an unnamed type'}.")

    def _without_server_paths(self, info: ErrorInfo) -> ErrorInfo:
        """A load error names files by their place in the models folder, never by the server's
        absolute paths (the log keeps those)."""
        message = info.message
        for folder in {str(Path(self.settings.models_path).resolve()), str(self.settings.models_path)}:
            message = message.replace(folder.rstrip("/") + "/", "")
        return info if message == info.message else dataclasses.replace(info, message=message)

    # ---- WSGI ----
    def dispatch(self, request: ApiRequest) -> Response:
        route: Route | None = None
        try:
            self.guard.check_source(request)
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                return self.guard.preflight(request)
            route, values = self._route_for(request)
            request.record.route = route.path
            if not route.public and not (route.handler is service.on_metrics and self.settings.public_metrics):
                request.record.key_scope = self.guard.authenticate(request)
            self._check_body_type(route, request)
            request.max_content_length = (self.settings.upload_limit_bytes if route.body == "multipart"
                                          else self.settings.json_limit_bytes)
            if route.heavy:
                if not self._heavy.acquire(blocking=False):
                    raise TooManyRequests("Every worker thread of this server is busy with model requests; try "
                                          "again shortly.", retry_after=1)
                request.record.release = self._heavy.release
            return route.handler(self, request, **values)
        except Exception as exc:  # every failure becomes an OpenAI error body
            info = error_info(exc)
            if info.status >= 500:
                log.exception("error in %s %s", request.method, request.path)
                info = self._without_server_paths(info)
            if route is not None and route.errors == "anthropic":
                return json_response(anthropic.error_body(info), status=info.status, headers=dict(info.headers))
            return error_response(info)

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = ApiRequest(environ)
        started = time.perf_counter()
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            response = self.dispatch(request)
            self.guard.add_cors_headers(request, response)
            body = response(environ, start_response)
        except BaseException:
            self._done(request)
            raise
        return _LoggedBody(body, request, response.status_code, started, self._done)

    def _done(self, request: ApiRequest, status: int | None = None, seconds: float | None = None) -> None:
        """A request's body is over (sent, failed, or its client gone)."""
        release, request.record.release = request.record.release, None
        if release is not None:
            release()
        if status is not None:
            self.metrics.request_done(request.record.route, request.method, status, seconds or 0.0)
        with self._in_flight_lock:
            self._in_flight -= 1
            self._in_flight_lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (at most ``timeout`` seconds); whether it is."""
        deadline = time.monotonic() + timeout
        with self._in_flight_lock:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._in_flight_lock.wait(left)
        return True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    def start_up(self, before: Callable[[], None] | None = None) -> None:
        """The work before the server is ready: ``before`` (gallery installs), then the --preload models."""
        self.ready = False
        try:
            if before is not None:
                before()
            for name in self.settings.preload:
                try:
                    self.manager.preload(name)
                except LocalAIError as exc:  # a model that cannot load must not keep the server from starting
                    log.error("preloading model %s failed: %s", name, exc)
        finally:
            self.ready = True

    def close(self) -> None:
        self.gallery.close()
        self.manager.close()


class _LoggedBody:
    """Logs the request line when the body is done (streams included): method path status model tokens ms."""

    def __init__(self, body: Iterable[bytes], request: ApiRequest, status: int, started: float,
                 done: Callable[[ApiRequest], None]):
        self.body, self.request, self.status, self.started, self.done = body, request, status, started, done

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            seconds = time.perf_counter() - self.started
            self.done(self.request, self.status, seconds)
            record = self.request.record
            # the path is the client's: escaped, so it cannot write lines of its own into the log
            log.info("%s %s %s model=%s tokens=%s %.0fms", _printable(self.request.method),
                     _printable(self.request.full_path.rstrip("?")), self.status, _printable(record.model or "-"),
                     "-" if record.tokens is None else record.tokens, seconds * 1000)


def _printable(text: str) -> str:
    """Text as one log-safe line: control characters and backslashes escaped."""
    if all(c.isprintable() and c not in " \\" for c in text):
        return text
    return text.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")


def create_app(settings: Settings, manager: ModelManager | None = None, *, preload: bool = True) -> App:
    """A fresh application; nothing is shared between two apps in one process. With ``preload``
    the --preload models are loaded now; else the caller runs ``app.start_up()`` (the server
    does, in the background, answering /readyz with 503 until it is done)."""
    app = App(settings, manager)
    if preload:
        app.start_up()
    return app
