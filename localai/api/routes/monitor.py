"""GET|POST /backend/monitor: LocalAI's backend monitor, whether a model is loaded and what its
scheduler is doing."""

from __future__ import annotations

from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Server, json_response, read_json_object


def on_monitor(app: Server, request: ApiRequest) -> Response:
    name = request.args.get("model")
    if name is None and request.method == "POST":
        name = read_json_object(request).get("model")
    config = app.resolve_model(request, name)
    engine = app.manager.loaded_engine(config.name)
    status = {"model": config.name, "backend": config.backend, "loaded": engine is not None}
    if engine is not None and hasattr(engine, "status"):
        status.update(engine.status())
    return json_response(status)
