"""The Werkzeug application: URL map, auth, errors, one log line per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from werkzeug.datastructures import Headers
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from localai.api import text
from localai.api.errors import APIError, bad_request, from_exception
from localai.errors import ModelNotFound
from localai.manager import ModelManager
from localai.settings import Settings

log = logging.getLogger("localai.http")


def _routes(path: str, endpoint: str, methods: list[str]) -> list[Rule]:
    """OpenAI clients use /v1/...; LocalAI also serves the same routes without the prefix."""
    return [Rule(f"/v1{path}", endpoint=endpoint, methods=methods),
            Rule(path, endpoint=endpoint, methods=methods)]


def _model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "localai"}


class App:
    def __init__(self, settings: Settings, manager: ModelManager | None = None) -> None:
        self.settings = settings
        self.manager = manager or ModelManager(settings)
        self.url_map = Map([
            *_routes("/models", "models", ["GET"]),
            *_routes("/models/<path:model_id>", "model", ["GET"]),
            *_routes("/tokenize", "tokenize", ["POST"]),
            *_routes("/chat/completions", "chat", ["POST"]),
            *_routes("/completions", "completions", ["POST"]),
            *_routes("/edits", "edits", ["POST"]),
            *_routes("/embeddings", "embeddings", ["POST"]),
            *_routes("/audio/transcriptions", "transcriptions", ["POST"]),
            *_routes("/audio/translations", "translations", ["POST"]),
            *_routes("/images/generations", "images", ["POST"]),
            Rule("/generated-images/<path:filename>", endpoint="generated_image", methods=["GET"]),
            Rule("/backend/monitor", endpoint="monitor", methods=["GET", "POST"]),
            Rule("/healthz", endpoint="health", methods=["GET"]),
            Rule("/readyz", endpoint="health", methods=["GET"]),
        ])
        self.handlers: dict[str, Callable[[Request], Response]] = {
            "models": self.on_models,
            "model": self.on_model,
            "tokenize": self.on_tokenize,
            "chat": lambda r: text.chat(self, r),
            "completions": lambda r: text.completions(self, r),
            "edits": lambda r: text.edits(self, r),
            "health": lambda r: json_response({"status": "ok"}),
            "monitor": self.on_monitor,
            # Handlers of the other capabilities are imported on first use.
            "embeddings": self._lazy("localai.api.embeddings", "embeddings"),
            "transcriptions": self._lazy("localai.api.audio", "transcriptions"),
            "translations": self._lazy("localai.api.audio", "translations"),
            "images": self._lazy("localai.api.images", "generations"),
            "generated_image": self._lazy("localai.api.images", "generated_image"),
        }

    def _lazy(self, module: str, name: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            import importlib

            return getattr(importlib.import_module(module), name)(self, request)
        return handler

    # ---- helpers for handlers ----
    def bearer(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        prefix = "Bearer "
        return header[len(prefix):].strip() or None if header.startswith(prefix) else None

    def check_auth(self, request: Request) -> None:
        if not self.settings.api_keys:
            return
        if self.bearer(request) not in self.settings.api_keys:
            raise APIError(401, "Incorrect API key provided.", type="invalid_request_error",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def model_from_bearer(self, request: Request) -> str | None:
        # With API keys configured the bearer token is a key, not a model name.
        return None if self.settings.api_keys else self.bearer(request)

    # ---- handlers ----
    def on_models(self, request: Request) -> Response:
        created = int(time.time())
        return json_response({"object": "list", "data": [_model_object(name, created) for name in self.manager.names()]})

    def on_model(self, request: Request) -> Response:
        """OpenAI's retrieve-model: GET /v1/models/{id}; an unknown id is a 404 model_not_found."""
        model_id = request.environ["localai.route_values"]["model_id"]
        if model_id not in self.manager.names():
            raise ModelNotFound(model_id)
        return json_response(_model_object(model_id, int(time.time())))

    def on_tokenize(self, request: Request) -> Response:
        """LocalAI's POST /v1/tokenize: {"model", "content"} -> {"tokens": [ids]} with the model's tokenizer."""
        body = read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise bad_request("'content' must be a string.", param="content")
        config = self.manager.resolve(body.get("model"), self.model_from_bearer(request))
        request.environ["localai.model"] = config.name
        tokenize = getattr(self.manager.engine(config), "tokenize", None)
        if tokenize is None:
            raise bad_request(f"The model `{config.name}` (backend {config.backend}) has no tokenizer.",
                              param="model")
        tokens = tokenize(body["content"])
        request.environ["localai.tokens"] = len(tokens)
        return json_response({"tokens": tokens})

    def on_monitor(self, request: Request) -> Response:
        """LocalAI's backend monitor: whether a model is loaded and what its scheduler is doing."""
        name = request.args.get("model")
        if name is None and request.method == "POST":
            name = (read_json(request) or {}).get("model")
        config = self.manager.resolve(name)
        engine = self.manager.loaded_engine(config.name)
        status = {"model": config.name, "backend": config.backend, "loaded": engine is not None}
        if engine is not None and hasattr(engine, "status"):
            status.update(engine.status())
        return json_response(status)

    # ---- WSGI ----
    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
            if endpoint != "health":
                self.check_auth(request)
            request.environ["localai.route_values"] = values
            return self.handlers[endpoint](request)
        except Exception as exc:  # every failure becomes an OpenAI error body
            error = from_exception(exc)
            if error.code >= 500:
                log.exception("error in %s %s", request.method, request.path)
            return error.get_response()

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = int(self.settings.upload_limit_mb * 1024 * 1024)
        started = time.perf_counter()
        response = self.dispatch(request)
        if self.settings.cors:
            response.headers["Access-Control-Allow-Origin"] = "*"
        body = response(environ, start_response)
        return _LoggedBody(body, request, response.status_code, started)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    def close(self) -> None:
        self.manager.close()


class _LoggedBody:
    """Logs the request line when the body is done (streams included): method path status model tokens ms."""

    def __init__(self, body: Iterable[bytes], request: Request, status: int, started: float):
        self.body, self.request, self.status, self.started = body, request, status, started

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            env = self.request.environ
            log.info("%s %s %s model=%s tokens=%s %.0fms", self.request.method, self.request.path, self.status,
                     env.get("localai.model", "-"), env.get("localai.tokens", "-"),
                     (time.perf_counter() - self.started) * 1000)


def json_response(payload: Any, status: int = 200, headers: Headers | None = None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json",
                    headers=headers)


def read_json(request: Request) -> Any:
    from localai.api.errors import bad_request

    data = request.get_data(cache=False)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("We could not parse the JSON body of your request. The OpenAI API expects a JSON "
                          "payload.") from None


def create_app(settings: Settings, manager: ModelManager | None = None) -> App:
    """A fresh application; nothing is shared between two apps in one process."""
    app = App(settings, manager)
    for name in settings.preload:
        app.manager.engine(app.manager.resolve(name))
    return app
