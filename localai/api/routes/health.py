"""GET /healthz (the process answers) and GET /readyz (it is ready to serve)."""

from __future__ import annotations

from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Server, json_response


def on_healthz(app: Server, request: ApiRequest) -> Response:
    return json_response({"status": "ok"})


def on_readyz(app: Server, request: ApiRequest) -> Response:
    return json_response({"status": "ok"})
