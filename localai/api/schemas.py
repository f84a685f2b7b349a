"""JSON Schemas of the request bodies we accept (OpenAI's fields plus LocalAI's extras).

They are the one source of truth: the server validates every JSON body with them, and the
OpenAPI document is generated from them. Unknown fields are allowed, as OpenAI's API ignores
them; known fields must have the right type and stay within bounds: every number is
bounded, every string and array has a length cap (listed before the per-item rules, so an
oversized array is refused before any item is looked at). Validation stops at the first
violation, which becomes a 400 naming the parameter; its cost is bounded by the body size
limit whatever the body holds. An integer field takes integers only: 2.0 is refused (as in
every field, so no float ever reaches a place that needs an int), and so are NaN and the
infinities (``localai.api.http.read_json``).
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from localai.errors import InvalidRequest
from localai.sampling import KNOBS

# ---- caps -------------------------------------------------------------------------------------

MAX_TEXT = 1 << 20  # characters of one message, prompt or input (far beyond any context)
MAX_NAME = 256  # model names, user ids, tool-call ids
MAX_MESSAGES = 4096
MAX_PARTS = 256  # content parts of one message
MAX_TOOLS = 128  # OpenAI's limit
MAX_STOP = 16
MAX_STOP_CHARS = 1024
MAX_GRAMMAR = 128 * 1024  # characters of a raw GBNF grammar
MAX_LOGIT_BIAS = 1024  # entries
MAX_PROMPTS = 128  # prompts of one batched completion (also the most choices)
MAX_TOKEN_IDS = 1 << 17  # ids in one token prompt or input
TOKEN_ID_MAX = (1 << 31) - 1
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit
MAX_N = 16
MAX_BEST_OF = 20  # OpenAI's limit
MAX_TOKENS = 1 << 20


def _nullable(schema: dict) -> dict:
    kinds = schema["type"]
    return {**schema, "type": [*([kinds] if isinstance(kinds, str) else kinds), "null"]}


def _string(max_length: int = MAX_TEXT, **extra: Any) -> dict:
    return {"type": "string", "maxLength": max_length, **extra}


def _integer(minimum: int, maximum: int) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


# A token id list: a fast path checks its items (see _items), never item by item in Python.
_TOKEN_ID = _integer(0, TOKEN_ID_MAX)
TOKEN_IDS = {"type": "array", "minItems": 1, "maxItems": MAX_TOKEN_IDS, "items": _TOKEN_ID}
# embeddings refuse an empty input with a message of their own (it names which input)
_EMBEDDING_TOKEN_IDS = {"type": "array", "maxItems": MAX_TOKEN_IDS, "items": _TOKEN_ID}


def _knob_schema(knob) -> dict:
    schema: dict[str, Any] = {"type": [knob.json_type, "null"], "description": knob.doc}
    if knob.minimum is not None:
        schema["minimum"] = knob.minimum
    if knob.maximum is not None:
        schema["maximum"] = knob.maximum
    return schema


_GENERATION = {
    "model": _nullable(_string(MAX_NAME)),
    **{knob.name: _knob_schema(knob) for knob in KNOBS},
    "max_tokens": _nullable(_integer(1, MAX_TOKENS)),
    "max_completion_tokens": _nullable(_integer(1, MAX_TOKENS)),
    "n": _nullable(_integer(1, MAX_N)),
    "stop": {"anyOf": [_string(MAX_STOP_CHARS), {"type": "array", "maxItems": MAX_STOP,
                                                 "items": _string(MAX_STOP_CHARS)}, {"type": "null"}]},
    "stream": {"type": ["boolean", "null"]},
    "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": ["boolean", "null"]}}},
    "logit_bias": {"type": ["object", "null"], "maxProperties": MAX_LOGIT_BIAS,
                   "propertyNames": {"pattern": "^[0-9]{1,10}$"},
                   "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
    "ignore_eos": {"type": ["boolean", "null"]},
    "user": _nullable(_string(MAX_NAME)),
    "grammar": _nullable(_string(MAX_GRAMMAR)),
    # llama-server's field: false computes the whole prompt fresh, reusing no cached prefix
    "cache_prompt": {"type": ["boolean", "null"]},
}

_content_part = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": _string(64), "text": _string(), "refusal": _string()},
}
_tool_call = {
    "type": "object",
    "properties": {
        "id": _string(MAX_NAME),
        "type": _string(64),
        "function": {"type": "object", "properties": {"name": _string(MAX_NAME), "arguments": _string()}},
    },
}
_message = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"anyOf": [_string(), {"type": "null"},
                              {"type": "array", "maxItems": MAX_PARTS, "items": _content_part}]},
        "name": _string(MAX_NAME),
        "tool_calls": {"type": ["array", "null"], "maxItems": MAX_TOOLS, "items": _tool_call},
        "function_call": {"type": ["object", "null"], "properties": _tool_call["properties"]["function"]["properties"]},
        "tool_call_id": _string(MAX_NAME),
    },
}
_function = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _string(64),
        "description": _string(16384),
        "parameters": {"type": ["object", "boolean"]},
        "strict": {"type": ["boolean", "null"]},
    },
}
_tool = {"type": "object", "properties": {"type": _string(64), "function": _function}}
_tool_choice = {"anyOf": [
    {"enum": ["none", "auto", "required"]},
    {"type": "object", "properties": {"type": _string(64),
                                      "function": {"type": "object", "properties": {"name": _string(64)}}}},
    {"type": "null"},
]}
_response_format = {
    "type": ["object", "null"],
    "properties": {
        "type": {"enum": ["text", "json_object", "json_schema"]},
        "json_schema": {"type": "object", "properties": {
            "name": _string(64), "description": _string(16384), "schema": {"type": ["object", "boolean"]},
            "strict": {"type": ["boolean", "null"]}}},
    },
}

CHAT = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        **_GENERATION,
        "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": _message},
        "logprobs": {"type": ["boolean", "null"]},
        "top_logprobs": _nullable(_integer(0, 20)),
        "response_format": _response_format,
        "tools": {"type": ["array", "null"], "maxItems": MAX_TOOLS, "items": _tool},
        "tool_choice": _tool_choice,
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "functions": {"type": ["array", "null"], "maxItems": MAX_TOOLS, "items": _function},
        "function_call": {"anyOf": [{"enum": ["none", "auto"]},
                                    {"type": "object", "properties": {"name": _string(64)}}, {"type": "null"}]},
    },
}

_prompt = {"anyOf": [
    _string(),
    {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS, "items": _string()},
    TOKEN_IDS,
    {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS, "items": TOKEN_IDS},
]}

COMPLETION = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **_GENERATION,
        "prompt": _prompt,
        # 0 is allowed here (OpenAI's legacy completions): with echo and logprobs it scores a prompt
        "max_tokens": _nullable(_integer(0, MAX_TOKENS)),
        "echo": {"type": ["boolean", "null"]},
        "logprobs": _nullable(_integer(0, 5)),
        "suffix": _nullable(_string()),
        "best_of": _nullable(_integer(1, MAX_BEST_OF)),
    },
}

EDIT = {
    "type": "object",
    "required": ["instruction"],
    "properties": {
        **{k: v for k, v in _GENERATION.items() if k not in ("stream", "stream_options")},
        "instruction": _string(),
        "input": _nullable(_string()),
    },
}

EMBEDDINGS = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": _nullable(_string(MAX_NAME)),
        "input": {"anyOf": [
            _string(),
            {"type": "array", "maxItems": MAX_EMBEDDING_INPUTS, "items": _string()},
            _EMBEDDING_TOKEN_IDS,
            {"type": "array", "maxItems": MAX_EMBEDDING_INPUTS, "items": _EMBEDDING_TOKEN_IDS},
        ]},
        "encoding_format": {"enum": ["float", "base64", None]},
        "dimensions": _nullable(_integer(1, 1 << 16)),
        "user": _nullable(_string(MAX_NAME)),
    },
}

IMAGES = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "model": _nullable(_string(MAX_NAME)),
        "prompt": _string(8000),
        "n": _nullable(_integer(1, 10)),
        "size": _nullable(_string(32)),
        "response_format": {"enum": ["url", "b64_json", None]},
        "step": _nullable(_integer(1, 150)),
        "mode": _nullable(_integer(0, 1)),
        "seed": _nullable(_integer(-(1 << 63), (1 << 64) - 1)),
        "user": _nullable(_string(MAX_NAME)),
    },
}

TOKENIZE = {
    "type": "object",
    "required": ["content"],
    "properties": {"model": _nullable(_string(MAX_NAME)), "content": _string()},
}

# The audio routes read multipart forms: every field arrives as text (file: the upload itself).
AUDIO_RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "lrc")
AUDIO = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream",
                 "description": "the audio: WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF..."},
        "model": _string(MAX_NAME),
        "language": _string(32, description="ISO-639-1 code (transcriptions only)"),
        "prompt": _string(4096, description="text to continue from (at most 224 tokens)"),
        "response_format": {"enum": list(AUDIO_RESPONSE_FORMATS)},
        "temperature": _string(32, description="a number from 0 to 1"),
        "stream": _string(8, description="true: transcript events as server-sent events (transcriptions)"),
        "timestamp_granularities[]": {"type": "array", "maxItems": 2, "items": {"enum": ["word", "segment"]}},
    },
}

# POST /models/apply: LocalAI's gallery request (the definition's own shape is checked by the installer).
MAX_URI = 4096
MAX_GALLERY_FILES = 256
_SHA256 = {"type": "string", "maxLength": 64, "pattern": "^([0-9a-fA-F]{64})?$"}
GALLERY_FILE = {
    "type": "object",
    "required": ["filename"],
    "properties": {
        "filename": _string(512, minLength=1),
        "uri": _string(MAX_URI, minLength=1),
        "sha256": _SHA256,
        "parts": {"type": "array", "minItems": 1, "maxItems": 64, "items": {
            "type": "object", "required": ["uri"],
            "properties": {"uri": _string(MAX_URI, minLength=1), "sha256": _SHA256}}},
    },
}
GALLERY_APPLY = {
    "type": "object",
    "properties": {
        "id": _string(MAX_NAME, minLength=1),
        "url": _string(MAX_URI, minLength=1),
        "config_url": _string(MAX_URI, minLength=1),
        "name": _string(128, minLength=1, pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        "files": {"type": "array", "maxItems": MAX_GALLERY_FILES, "items": GALLERY_FILE},
        "overrides": {"type": "object", "maxProperties": 256},
        "config_file": {"type": ["object", "string"], "maxLength": MAX_TEXT, "maxProperties": 256},
        "overwrite": {"type": "boolean"},
        "description": _string(MAX_TEXT),
    },
}

# OpenAI's Responses API. Built-in tools, reasoning and the other fields this server cannot honour
# pass the schema (they are OpenAI's) and are refused by name in localai.api.routes.responses.
_responses_part = {"type": "object", "required": ["type"],
                   "properties": {"type": _string(64), "text": _string(), "refusal": _string()}}
_responses_item = {
    "type": "object",
    "properties": {
        "type": _string(64), "id": _string(MAX_NAME), "role": _string(64),
        "content": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_PARTS, "items": _responses_part}]},
        "call_id": _string(MAX_NAME), "name": _string(64), "arguments": _string(),
        "output": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_PARTS, "items": _responses_part}]},
        "status": _string(64),
    },
}
RESPONSES = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": _nullable(_string(MAX_NAME)),
        "input": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_MESSAGES, "items": _responses_item}]},
        "instructions": _nullable(_string()),
        "tools": {"type": ["array", "null"], "maxItems": MAX_TOOLS, "items": {
            "type": "object", "required": ["type"],
            "properties": {"type": _string(64), "name": _string(64), "description": _string(16384),
                           "parameters": {"type": ["object", "null"]}, "strict": {"type": ["boolean", "null"]}}}},
        "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]},
                                  {"type": "object", "properties": {"type": _string(64), "name": _string(64)}},
                                  {"type": "null"}]},
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "max_tool_calls": _nullable(_integer(1, MAX_TOOLS)),
        "text": {"type": ["object", "null"], "properties": {
            "format": {"type": ["object", "null"], "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]}, "name": _string(64),
                "description": _string(16384), "schema": {"type": ["object", "boolean"]},
                "strict": {"type": ["boolean", "null"]}}},
            "verbosity": {"enum": ["low", "medium", "high", None]}}},
        "temperature": _nullable({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "seed": _nullable(_integer(-(1 << 63), (1 << 64) - 1)),
        "max_output_tokens": _nullable(_integer(1, MAX_TOKENS)),
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {"type": ["object", "null"]},
        "store": {"type": ["boolean", "null"]},
        "previous_response_id": _nullable(_string(MAX_NAME)),
        "metadata": {"type": ["object", "null"], "maxProperties": 16,
                     "propertyNames": {"maxLength": 64}, "additionalProperties": _string(512)},
        "user": _nullable(_string(MAX_NAME)),
        "background": {"type": ["boolean", "null"]},
        "include": {"type": ["array", "null"], "maxItems": 16, "items": _string(128)},
        "reasoning": {"type": ["object", "null"]},
        "truncation": {"enum": ["auto", "disabled", None]},
        "top_logprobs": _nullable(_integer(0, 20)),
        "service_tier": _nullable(_string(64)),
        "prompt_cache_key": _nullable(_string(MAX_NAME)),
        "safety_identifier": _nullable(_string(MAX_NAME)),
    },
}

# Anthropic's Messages API (its field names and bounds).
_anthropic_block = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": _string(64), "text": _string(), "id": _string(MAX_NAME), "name": _string(64),
        "input": {"type": "object"}, "tool_use_id": _string(MAX_NAME), "is_error": {"type": "boolean"},
        "content": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_PARTS,
                                          "items": {"type": "object", "required": ["type"],
                                                    "properties": {"type": _string(64), "text": _string()}}}]},
    },
}
MESSAGES = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        "model": _string(MAX_NAME),
        "max_tokens": _integer(1, MAX_TOKENS),
        "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": {
            "type": "object", "required": ["role", "content"],
            "properties": {"role": {"enum": ["user", "assistant"]},
                           "content": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_PARTS,
                                                             "items": _anthropic_block}]}}}},
        "system": {"anyOf": [_string(), {"type": "array", "maxItems": MAX_PARTS, "items": _anthropic_block}]},
        "stop_sequences": {"type": "array", "maxItems": MAX_STOP, "items": _string(MAX_STOP_CHARS)},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": _integer(0, 1 << 20),
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "maxItems": MAX_TOOLS, "items": {
            "type": "object", "required": ["name"],
            "properties": {"type": _string(64), "name": _string(64), "description": _string(16384),
                           "input_schema": {"type": "object"}}}},
        "tool_choice": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["auto", "any", "tool", "none"]}, "name": _string(64),
            "disable_parallel_tool_use": {"type": "boolean"}}},
        "metadata": {"type": "object", "properties": {"user_id": _nullable(_string(MAX_NAME))}},
        "thinking": {"type": "object"},
        "service_tier": _string(64),
    },
}
MESSAGES_COUNT = {**MESSAGES, "required": ["model", "messages"]}

SCHEMAS: dict[str, dict] = {"chat": CHAT, "responses": RESPONSES, "messages": MESSAGES,
                            "messages_count": MESSAGES_COUNT, "completion": COMPLETION, "edit": EDIT, "embeddings": EMBEDDINGS,
                            "images": IMAGES, "tokenize": TOKENIZE, "audio": AUDIO, "gallery_apply": GALLERY_APPLY}


# ---- validation ---------------------------------------------------------------------------------

def _token_ids_ok(values: list) -> bool:
    """Whether a list holds only integers in [0, TOKEN_ID_MAX]; the scans run in C (map, min,
    max), so a long list costs microseconds per thousand ids, not a schema per id."""
    if not values:
        return True
    if set(map(type, values)) != {int}:
        return False  # floats, bools, strings, lists...
    return 0 <= min(values) and max(values) <= TOKEN_ID_MAX


def _items(validator, items, instance, schema):
    if items is _TOKEN_ID and isinstance(instance, list):
        if not _token_ids_ok(instance):
            bad = next(i for i, v in enumerate(instance) if not _token_ids_ok([v]))
            # a value of another kind (a string, a list) is a type error; a number out of range is not
            kind = "type" if type(instance[bad]) not in (int, float) else "minimum"
            yield jsonschema.ValidationError(f"{instance[bad]!r:.40} is not a token id (an integer from 0 to "
                                             f"{TOKEN_ID_MAX})", path=[bad], validator=kind)
        return
    yield from _BASE["items"](validator, items, instance, schema)


# Length limits with messages that do not print the instance (jsonschema's would repr a
# million-item list just to say it is too long).
def _max_items(validator, limit, instance, schema):
    if isinstance(instance, list) and len(instance) > limit:
        yield jsonschema.ValidationError(f"has {len(instance)} items; at most {limit} are allowed")


def _max_length(validator, limit, instance, schema):
    if isinstance(instance, str) and len(instance) > limit:
        yield jsonschema.ValidationError(f"is {len(instance)} characters long; at most {limit} are allowed")


def _max_properties(validator, limit, instance, schema):
    if isinstance(instance, dict) and len(instance) > limit:
        yield jsonschema.ValidationError(f"has {len(instance)} entries; at most {limit} are allowed")


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


def _type(validator, types, instance, schema):
    types = [types] if isinstance(types, str) else types
    if not any(validator.is_type(instance, t) for t in types):
        wanted = " or ".join(t for t in types)
        yield jsonschema.ValidationError(f"expected {wanted}, got {_JSON_NAMES.get(type(instance), 'a value')}")


def _any_of(validator, branches, instance, schema):
    """anyOf that looks at each branch's first error only (jsonschema's collects them all,
    which for a long array of the wrong kind means one error per item, per branch)."""
    firsts = []
    for index, branch in enumerate(branches):
        error = next(validator.descend(instance, branch, schema_path=index), None)
        if error is None:
            return
        firsts.append(error)
    yield jsonschema.ValidationError("is not any of the accepted forms", context=firsts)


def _strict_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_BASE = Draft202012Validator.VALIDATORS
_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    {"items": _items, "maxItems": _max_items, "maxLength": _max_length, "maxProperties": _max_properties,
     "anyOf": _any_of, "type": _type},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer))
_validators = {name: _Validator(schema) for name, schema in SCHEMAS.items()}


def _likeliest(branch_errors: list) -> jsonschema.ValidationError:
    """The error of the anyOf branch the body most likely meant: one whose shape fit but whose
    values did not (a limit, a range), the shallowest first; else the branch that matched the
    most before a wrong kind of value (the deepest, then the furthest item)."""
    wrong_values = [e for e in branch_errors if e.validator != "type"]
    if wrong_values:
        return min(wrong_values, key=lambda e: len(e.absolute_path))

    def progress(e):
        last = e.absolute_path[-1] if e.absolute_path else 0
        return len(e.absolute_path), last if isinstance(last, int) else 0

    return max(branch_errors, key=progress)


def validate(kind: str, body: Any) -> dict:
    """Return ``body`` if it fits the schema of ``kind``; else raise a 400 naming the parameter
    (the first violation found: validation never collects every error of a large body)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    error = next(_validators[kind].iter_errors(body), None)
    if error is None:
        return body
    while error.context:  # an anyOf: report the branch the body most likely meant
        error = _likeliest(error.context)
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = next((k for k in error.validator_value if k not in error.instance), path)
        missing = f"{path}.{missing}" if path else missing
        raise InvalidRequest(f"Missing required parameter: '{missing}'.", param=missing)
    shown = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise InvalidRequest(f"Invalid value for '{path}': {shown}", param=path or None, code="invalid_value")
