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
from typing import TYPE_CHECKING, Any

import numpy as np
from werkzeug.wrappers import Request, Response

from localai.api.errors import bad_request

if TYPE_CHECKING:
    from localai.api.app import App

MAX_INPUTS = 2048  # OpenAI's limit per request
ENCODINGS = ("float", "base64")


def parse_input(value: Any) -> list[str] | list[list[int]]:
    """OpenAI's ``input`` forms as a list of texts or a list of token lists (400 on anything else)."""
    if value is None:
        raise bad_request("you must provide an input: a string, a list of strings, a list of token ids or a list "
                          "of token-id lists.", param="input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise bad_request("'input' must be a string, a list of strings, a list of token ids or a list of token-id "
                          "lists.", param="input")
    if not value:
        raise bad_request("'input' must not be empty.", param="input")
    if len(value) > MAX_INPUTS:
        raise bad_request(f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed per request.",
                          param="input")
    if all(isinstance(x, str) for x in value):
        for i, text in enumerate(value):
            if not text:
                raise bad_request(f"input[{i}] is an empty string; every input must contain text.", param="input")
        return value
    if all(_is_token(x) for x in value):
        return [value]
    if all(isinstance(x, list) for x in value):
        for i, ids in enumerate(value):
            if not ids:
                raise bad_request(f"input[{i}] is an empty list of tokens.", param="input")
            if not all(_is_token(t) for t in ids):
                raise bad_request(f"input[{i}] must be a list of integer token ids.", param="input")
        return value
    raise bad_request("'input' must be a string, a list of strings, a list of token ids or a list of token-id "
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
    try:
        from localai.bindings.bert import rows_to_json  # formats in C, twice as fast as json.dumps
    except ImportError:
        return [json.dumps(row) for row in vectors.astype(np.float64).tolist()]
    return rows_to_json(vectors)


def embeddings(app: "App", request: Request) -> Response:
    from localai.api.app import read_json

    body = read_json(request)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    config = app.manager.resolve(body.get("model"), app.model_from_bearer(request))
    request.environ["localai.model"] = config.name
    inputs = parse_input(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise bad_request(f"encoding_format must be one of {', '.join(ENCODINGS)}, got {encoding!r}.",
                          param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_token(dimensions) or dimensions < 1):
        raise bad_request("dimensions must be a positive integer.", param="dimensions")
    if not config.embeddings:
        raise bad_request(f"The model `{config.name}` does not serve embeddings: its configuration does not enable "
                          "them (set `embeddings: true` in its YAML).", param="model", code="model_not_embedding")
    engine = app.manager.engine(config)
    embed = getattr(engine, "embed", None)
    if embed is None:
        raise bad_request(f"The model `{config.name}` (backend {config.backend}) cannot produce embeddings.",
                          param="model", code="model_not_embedding")
    vectors, prompt_tokens = embed(inputs)
    request.environ["localai.tokens"] = prompt_tokens
    if dimensions is not None and dimensions != vectors.shape[1]:
        if dimensions > vectors.shape[1]:
            raise bad_request(f"dimensions {dimensions} is larger than the model's {vectors.shape[1]}.",
                              param="dimensions")
        vectors = shorten(vectors, dimensions)
    # The body is assembled from JSON fragments: the vectors are already JSON text.
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{vector}}}'
                    for i, vector in enumerate(encode_vectors(vectors, encoding)))
    usage = json.dumps({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens})
    body = f'{{"object":"list","data":[{data}],"model":{json.dumps(config.name)},"usage":{usage}}}'
    return Response(body, mimetype="application/json")
