"""JSON Schema's vocabulary as the grammar converter sees it: the keywords it enforces, the ones
it refuses (they cannot be expressed in a grammar), type names, and helpers on JSON values."""

from __future__ import annotations

import json
from typing import Any

HANDLED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minProperties", "maxProperties", "unevaluatedProperties",
})

REJECTED = {
    "not": "'not'",
    "if": "'if'/'then'/'else'",
    "then": "'if'/'then'/'else'",
    "else": "'if'/'then'/'else'",
    "patternProperties": "'patternProperties'",
    "propertyNames": "'propertyNames'",
    "dependentRequired": "'dependentRequired'",
    "dependentSchemas": "'dependentSchemas'",
    "dependencies": "'dependencies'",
    "contains": "'contains'",
    "minContains": "'minContains'",
    "maxContains": "'maxContains'",
    "unevaluatedItems": "'unevaluatedItems'",
    "additionalItems": "'additionalItems' (use prefixItems/items)",
    "$dynamicRef": "'$dynamicRef'",
    "$recursiveRef": "'$recursiveRef'",
    "extends": "'extends' (draft 3)",
    "disallow": "'disallow' (draft 3)",
    "divisibleBy": "'divisibleBy' (draft 3)",
}

TYPES = ("null", "boolean", "object", "array", "string", "number", "integer")
OBJECT_KEYS = {"properties", "required", "additionalProperties", "minProperties", "maxProperties",
                "unevaluatedProperties"}
ARRAY_KEYS = {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}
STRING_KEYS = {"minLength", "maxLength", "pattern", "format"}
NUMBER_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}

MISSING = object()


def ptr(path: str, *parts: Any) -> str:
    out = path
    for p in parts:
        out += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return out


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    if t == "number":
        return is_num(value)
    if t == "integer":
        return is_num(value) and (isinstance(value, int) or float(value).is_integer())
    return False


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
