"""The OpenAPI 3.1 document of the server, generated from its route table and the request schemas
it validates with (localai.api.schemas): what is documented is what is enforced."""

from __future__ import annotations

import re
from typing import Iterable

from localai import __version__
from localai.api.http import Route
from localai.api.schemas import SCHEMAS

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}}}},
}
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


def _schema_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Request"


def _operation(route: Route, method: str, path: str) -> dict:
    operation: dict = {
        "summary": route.summary or route.path,
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"),
        "responses": {
            "200": {"description": "Success (a JSON body; text/event-stream when a request asks to stream)"},
            "4XX": {"description": "The request was refused", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            "5XX": {"description": "The server could not serve it (a model that cannot load: 503)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }
    names = _PARAMETER.findall(path)
    if names:
        operation["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                   for n in names]
    if method == "POST" and route.schema:
        media = "multipart/form-data" if route.body == "multipart" else "application/json"
        operation["requestBody"] = {"required": True, "content": {media: {"schema": {
            "$ref": f"#/components/schemas/{_schema_name(route.schema)}"}}}}
    if route.public:
        operation["security"] = []
    return operation


def openapi_document(routes: Iterable[Route], *, base_url: str = "") -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        for path in route.paths:
            operations = paths.setdefault(_PARAMETER.sub(r"{\1}", path), {})
            operations.update({method.lower(): _operation(route, method, path) for method in route.methods})
    document = {
        "openapi": "3.1.0",
        "info": {"title": "localai", "version": __version__,
                 "description": "OpenAI-compatible API over llama.cpp, whisper.cpp and more, on your own CPU."},
        "paths": paths,
        "components": {
            "schemas": {**{_schema_name(name): schema for name, schema in SCHEMAS.items()}, "Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
    if base_url:
        document["servers"] = [{"url": base_url}]
    return document
