"""The Werkzeug application: the route table, authentication, errors, one log line per request.

``ROUTES`` is the one table of endpoints: each URL (served with and without the ``/v1``
prefix where OpenAI has one, as LocalAI does) maps straight to its handler in
``localai.api.routes``. Handlers are ``on_<endpoint>(app, request, **route_values)``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Handler, error_info, error_response
from localai.api.routes import audio, chat, completions, edits, embeddings, health, images, models, monitor, tokenize
from localai.config import ModelConfig
from localai.errors import InvalidRequest, MethodNotAllowed, NotFound, TooManyRequests, Unauthorized
from localai.manager import ModelManager
from localai.settings import Settings

log = logging.getLogger("localai.http")


@dataclass(frozen=True)
class Route:
    path: str
    handler: Handler
    methods: tuple[str, ...]
    v1: bool = True  # also served under /v1
    public: bool = False  # answered without an API key
    body: str = "json"  # what a POST carries: "json" (up to --json-limit) or "multipart" (--upload-limit)
    heavy: bool = False  # runs a model: counted against the server's worker threads


ROUTES: tuple[Route, ...] = (
    Route("/models", models.on_models, ("GET",)),
    Route("/models/<path:model_id>", models.on_model, ("GET",)),
    Route("/tokenize", tokenize.on_tokenize, ("POST",)),
    Route("/chat/completions", chat.on_chat, ("POST",), heavy=True),
    Route("/completions", completions.on_completions, ("POST",), heavy=True),
    Route("/edits", edits.on_edits, ("POST",), heavy=True),
    Route("/embeddings", embeddings.on_embeddings, ("POST",), heavy=True),
    Route("/audio/transcriptions", audio.on_transcriptions, ("POST",), body="multipart", heavy=True),
    Route("/audio/translations", audio.on_translations, ("POST",), body="multipart", heavy=True),
    Route("/images/generations", images.on_images, ("POST",), heavy=True),
    Route("/generated-images/<path:filename>", images.on_generated_image, ("GET",), v1=False),
    Route("/backend/monitor", monitor.on_monitor, ("GET", "POST"), v1=False),
    Route("/healthz", health.on_healthz, ("GET",), v1=False, public=True),
    Route("/readyz", health.on_readyz, ("GET",), v1=False, public=True),
)
# Worker threads kept free of model work, so health checks, model lists and monitors are
# answered even when every other thread is busy generating.
RESERVED_THREADS = 2


def _url_map(routes: Iterable[Route]) -> Map:
    rules = []
    for route in routes:
        paths = [f"/v1{route.path}", route.path] if route.v1 else [route.path]
        rules += [Rule(path, endpoint=route, methods=list(route.methods)) for path in paths]
    return Map(rules)


class App:
    """One application: its settings, its models, its routes. Nothing is shared between two."""

    def __init__(self, settings: Settings, manager: ModelManager | None = None) -> None:
        self.settings = settings
        self.manager = manager or ModelManager(settings)
        self.url_map = _url_map(ROUTES)
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

    # ---- authentication ----
    @staticmethod
    def _bearer(request: ApiRequest) -> str | None:
        header = request.headers.get("Authorization", "")
        prefix = "Bearer "
        return header[len(prefix):].strip() or None if header.startswith(prefix) else None

    def _check_auth(self, request: ApiRequest) -> None:
        if not self.settings.api_keys:
            return
        if self._bearer(request) not in self.settings.api_keys:
            raise Unauthorized("Incorrect API key provided.")

    def _model_from_bearer(self, request: ApiRequest) -> str | None:
        # With API keys configured the bearer token is a key, not a model name.
        return None if self.settings.api_keys else self._bearer(request)

    # ---- WSGI ----
    def dispatch(self, request: ApiRequest) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            try:
                route, values = adapter.match()
            except HTTPException as exc:  # werkzeug's routing: no such path, or not with this method
                if exc.code == 405:
                    allowed = sorted(getattr(exc, "valid_methods", None) or [])
                    raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}.",
                                           allowed=allowed) from None
                raise NotFound(f"No route {request.path}.") from None
            if not route.public:
                self._check_auth(request)
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
            return error_response(info)

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = ApiRequest(environ)
        started = time.perf_counter()
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            response = self.dispatch(request)
            if self.settings.cors:
                response.headers["Access-Control-Allow-Origin"] = "*"
            body = response(environ, start_response)
        except BaseException:
            self._done(request)
            raise
        return _LoggedBody(body, request, response.status_code, started, self._done)

    def _done(self, request: ApiRequest) -> None:
        """A request's body is over (sent, failed, or its client gone)."""
        release, request.record.release = request.record.release, None
        if release is not None:
            release()
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

    def close(self) -> None:
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
            self.done(self.request)
            record = self.request.record
            log.info("%s %s %s model=%s tokens=%s %.0fms", self.request.method, self.request.path, self.status,
                     record.model or "-", "-" if record.tokens is None else record.tokens,
                     (time.perf_counter() - self.started) * 1000)


def create_app(settings: Settings, manager: ModelManager | None = None) -> App:
    """A fresh application; nothing is shared between two apps in one process."""
    app = App(settings, manager)
    for name in settings.preload:
        app.manager.preload(name)
    return app
