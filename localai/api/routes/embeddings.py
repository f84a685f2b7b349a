"""/v1/embeddings: OpenAI's embeddings endpoint over any engine that has ``embed(inputs)``.

``input`` may be a string, a list of strings, a list of token ids or a list of token-id
lists (OpenAI's four forms). Vectors come back L2-normalised, in input order, as JSON
floats or, with ``encoding_format: base64`` (what the openai SDK asks for by default), as
base64 of little-endian float32 bytes. ``dimensions`` shortens each vector the way OpenAI
does for its v3 models: keep the first N components and renormalise.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.http import ApiRequest, Server, read_json
from localai.backends.embeddings import vectors_json
from localai.capabilities import Capability
from localai.errors import InvalidRequest

MAX_INPUTS = schemas.MAX_EMBEDDING_INPUTS  # OpenAI's limit per request
ENCODINGS = ("float", "base64")


def parse_input(value: Any) -> list[str] | list[list[int]]:
    """OpenAI's ``input`` forms as a list of texts or a list of token lists (400 on anything else)."""
    if value is None:
        raise InvalidRequest("you must provide an input: a string, a list of strings, a list of token ids or a list "
                             "of token-id lists.", param="input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string, a list of strings, a list of token ids or a list of token-id "
                             "lists.", param="input")
    if not value:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed per request.",
                             param="input")
    if all(isinstance(x, str) for x in value):
        for i, text in enumerate(value):
            if not text:
                raise InvalidRequest(f"input[{i}] is an empty string; every input must contain text.", param="input")
        return value
    if all(_is_token(x) for x in value):
        return [value]
    if all(isinstance(x, list) for x in value):
        for i, ids in enumerate(value):
            if not ids:
                raise InvalidRequest(f"input[{i}] is an empty list of tokens.", param="input")
            if not all(_is_token(t) for t in ids):
                raise InvalidRequest(f"input[{i}] must be a list of integer token ids.", param="input")
        return value
    raise InvalidRequest("'input' must be a string, a list of strings, a list of token ids or a list of token-id "
                         "lists (not a mixture).", param="input")


def _is_token(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def shorten(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Keep the first ``dimensions`` components and renormalise (OpenAI's v3 ``dimensions``)."""
    cut = np.array(vectors[:, :dimensions], dtype=np.float32)  # a copy: the caller's array stays intact
    cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut


def encode_vectors(vectors: np.ndarray, encoding: str) -> list[str]:
    """Each vector as JSON text: an array of numbers, or a base64 string of little-endian float32."""
    if encoding == "base64":
        little = np.ascontiguousarray(vectors, dtype="<f4")
        return ['"' + base64.b64encode(row.tobytes()).decode("ascii") + '"' for row in little]
    return vectors_json(vectors)


def on_embeddings(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("embeddings", read_json(request))
    config = app.resolve_model(request, body.get("model"))
    inputs = parse_input(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding_format must be one of {', '.join(ENCODINGS)}, got {encoding!r}.",
                             param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_token(dimensions) or dimensions < 1):
        raise InvalidRequest("dimensions must be a positive integer.", param="dimensions")
    engine = app.manager.engine_for(config, Capability.EMBEDDINGS)
    vectors, prompt_tokens = engine.embed(inputs)
    request.record.tokens = prompt_tokens
    if dimensions is not None and dimensions != vectors.shape[1]:
        if dimensions > vectors.shape[1]:
            raise InvalidRequest(f"dimensions {dimensions} is larger than the model's {vectors.shape[1]}.",
                                 param="dimensions")
        vectors = shorten(vectors, dimensions)
    # The body is assembled from JSON fragments: the vectors are already JSON text.
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{vector}}}'
                    for i, vector in enumerate(encode_vectors(vectors, encoding)))
    usage = json.dumps({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens})
    body = f'{{"object":"list","data":[{data}],"model":{json.dumps(config.name)},"usage":{usage}}}'
    return Response(body, mimetype="application/json")
