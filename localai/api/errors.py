"""OpenAI-style error bodies, mapped from exception classes (never from message text)."""

from __future__ import annotations

import json

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from localai import errors


class APIError(HTTPException):
    """An HTTP error rendered as ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = status
        self.message = message
        self.error_type = type
        self.param = param
        self.error_code = code
        self.extra_headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param,
                          "code": self.error_code}}

    def get_response(self, environ=None, scope=None) -> Response:
        response = Response(json.dumps(self.body()), status=self.code, mimetype="application/json")
        for key, value in self.extra_headers.items():
            response.headers[key] = value
        return response


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_exception(exc: BaseException) -> APIError:
    """Map a package exception to its HTTP error; anything unexpected is a 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, errors.ModelNotFound):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, errors.InvalidRequest):
        return APIError(400, str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, errors.CapabilityUnavailable):
        return APIError(501, str(exc), type="server_error", code="not_implemented")
    if isinstance(exc, (errors.ConfigError, errors.ModelLoadError, errors.BindingsNotBuilt)):
        return APIError(500, str(exc), type="server_error", code="model_load_failed")
    if isinstance(exc, errors.LocalAIError):
        return APIError(500, str(exc), type="server_error")
    if isinstance(exc, HTTPException):
        return APIError(exc.code or 500, exc.description or exc.name,
                        type="invalid_request_error" if (exc.code or 500) < 500 else "server_error")
    return APIError(500, "The server had an error while processing your request.", type="server_error")
