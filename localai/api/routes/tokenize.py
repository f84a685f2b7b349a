"""POST /v1/tokenize: LocalAI's tokenizer endpoint, ``{"model", "content"}`` -> ``{"tokens": [ids]}``."""

from __future__ import annotations

from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.http import ApiRequest, Server, json_response, read_json
from localai.capabilities import Capability


def on_tokenize(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("tokenize", read_json(request))
    config = app.resolve_model(request, body.get("model"))
    tokens = app.manager.engine_for(config, Capability.TOKENIZE).tokenize(body["content"])
    request.record.tokens = len(tokens)
    return json_response({"tokens": tokens})
