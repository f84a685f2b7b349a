"""JSON Schemas of the request bodies we accept (OpenAI's fields plus LocalAI's extras).

Unknown fields are allowed, as OpenAI's API ignores them; known fields must have the right
type, and the first violation becomes a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from localai.errors import InvalidRequest
from localai.sampling import KNOBS

_stop = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 16},
                   {"type": "null"}]}


def _knob_schema(knob) -> dict:
    schema: dict[str, Any] = {"type": [knob.json_type, "null"], "description": knob.doc}
    if knob.minimum is not None:
        schema["minimum"] = knob.minimum
    if knob.maximum is not None:
        schema["maximum"] = knob.maximum
    return schema


_SAMPLING = {
    "model": {"type": ["string", "null"]},
    **{knob.name: _knob_schema(knob) for knob in KNOBS},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1},
    "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
    "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 16},
    "stop": _stop,
    "stream": {"type": ["boolean", "null"]},
    "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": "boolean"}}},
    "logit_bias": {"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": -100,
                                                                        "maximum": 100}},
    "ignore_eos": {"type": ["boolean", "null"]},
    # llama-server's field: false computes the whole prompt fresh, reusing no cached prefix
    "cache_prompt": {"type": ["boolean", "null"]},
    "user": {"type": ["string", "null"]},
    "grammar": {"type": ["string", "null"]},
}

_content_part = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_message = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": _content_part}]},
        "name": {"type": "string"},
        "tool_calls": {"type": "array"},
        "tool_call_id": {"type": "string"},
    },
}

CHAT = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        **_SAMPLING,
        "messages": {"type": "array", "minItems": 1, "items": _message},
        "logprobs": {"type": ["boolean", "null"]},
        "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
        "response_format": {"type": ["object", "null"]},
        "tools": {"type": ["array", "null"]},
        "tool_choice": {"type": ["string", "object", "null"]},
        "functions": {"type": ["array", "null"]},
        "function_call": {"type": ["string", "object", "null"]},
    },
}

_prompt = {"anyOf": [
    {"type": "string"},
    {"type": "array", "items": {"type": "string"}, "minItems": 1},
    {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
    {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
     "minItems": 1},
]}

COMPLETION = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **_SAMPLING,
        "prompt": _prompt,
        # 0 is allowed here (OpenAI's legacy completions): with echo and logprobs it scores a prompt
        "max_tokens": {"type": ["integer", "null"], "minimum": 0},
        "echo": {"type": ["boolean", "null"]},
        "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 5},
        "suffix": {"type": ["string", "null"]},
        "best_of": {"type": ["integer", "null"], "minimum": 1},
    },
}

EDIT = {
    "type": "object",
    "required": ["instruction"],
    "properties": {
        **{k: v for k, v in _SAMPLING.items() if k not in ("stream", "stream_options")},
        "instruction": {"type": "string"},
        "input": {"type": ["string", "null"]},
    },
}

_validators = {name: Draft202012Validator(schema) for name, schema in
               (("chat", CHAT), ("completion", COMPLETION), ("edit", EDIT))}


def validate(kind: str, body: Any) -> dict:
    """Return ``body`` if it fits the schema of ``kind``; else raise a 400 naming the parameter."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    error = next(iter(sorted(_validators[kind].iter_errors(body), key=lambda e: len(e.path))), None)
    if error is None:
        return body
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = next((k for k in error.validator_value if k not in error.instance), path)
        missing = f"{path}.{missing}" if path else missing
        raise InvalidRequest(f"Missing required parameter: '{missing}'.", param=missing)
    param = path or None
    raise InvalidRequest(f"Invalid value for '{path}': {error.message}", param=param, code="invalid_value")
