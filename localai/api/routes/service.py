"""The server's own routes: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Server, json_response
from localai.api.openapi import openapi_document


def on_healthz(app: Server, request: ApiRequest) -> Response:
    """The process answers (public: liveness probes carry no key)."""
    return json_response({"status": "ok"})


def on_readyz(app: Server, request: ApiRequest) -> Response:
    """Ready to serve: 503 while start-up work (installing and preloading models) runs."""
    if not app.ready:
        return json_response({"status": "loading"}, status=503, headers={"Retry-After": "2"})
    return json_response({"status": "ok"})


def on_metrics(app: Server, request: ApiRequest) -> Response:
    body, content_type = app.metrics.exposition()
    return Response(body, content_type=content_type)


def on_openapi(app: Server, request: ApiRequest) -> Response:
    return json_response(openapi_document(app.routes, base_url=request.host_url.rstrip("/")))
