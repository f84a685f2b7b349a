"""POST /v1/edits: LocalAI's edits (instruction + input through the model's ``edit`` template)."""

from __future__ import annotations

import time

from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.generation import generation_options, postprocess, record
from localai.api.http import ApiRequest, Server, client_gone, json_response, read_json
from localai.capabilities import Capability
from localai.templates import render_edit_prompt


def on_edits(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("edit", read_json(request))
    config = app.resolve_model(request, body.get("model"))
    engine = app.manager.engine_for(config, Capability.TEXT)
    prompt = render_edit_prompt(body["instruction"], body.get("input") or "", config.template.edit)
    generation = engine.generate([prompt], generation_options(app, request, body, config), n=int(body.get("n") or 1))
    deltas, finished = generation.collect(abandoned=client_gone(request))
    totals = record(app, request, generation, finished)
    return json_response({
        "object": "edit", "created": int(time.time()), "model": config.name,
        "choices": [{"index": i, "text": postprocess("".join(e.text for e in choice), config)}
                    for i, choice in enumerate(deltas)],
        "usage": totals,
    })
