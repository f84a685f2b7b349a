"""GET /v1/models and GET /v1/models/{id}: the configured models, in OpenAI's model objects."""

from __future__ import annotations

import time

from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Server, json_response
from localai.errors import ModelNotFound


def _model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "localai"}


def on_models(app: Server, request: ApiRequest) -> Response:
    created = int(time.time())
    return json_response({"object": "list", "data": [_model_object(name, created) for name in app.manager.names()]})


def on_model(app: Server, request: ApiRequest, model_id: str) -> Response:
    """OpenAI's retrieve-model; an unknown id is a 404 model_not_found."""
    if model_id not in app.manager.names():
        raise ModelNotFound(model_id)
    return json_response(_model_object(model_id, int(time.time())))
