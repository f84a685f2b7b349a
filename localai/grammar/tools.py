"""Grammars for tool calls: ``{"name": ..., "arguments": {...}}`` where the arguments validate
against that tool's ``parameters``, composed with the alternatives a request allows (an array
of parallel calls, or plain text instead of a call)."""

from __future__ import annotations

import re
from typing import Any, List, Literal, Tuple

from localai.errors import InvalidRequest, UnsupportedSchema
from localai.grammar.gbnf import CharClass, Lit, Node, Ref, Rep, alt, seq
from localai.grammar.json_rules import WS, json_str
from localai.grammar.json_schema import SchemaConverter

__all__ = ["tool_call_gbnf", "tool_calls_gbnf"]

# Plain text an "auto" answer may give instead of a call: anything not opening with "{" (or
# with whitespace, which could still lead to one).
FREE_TEXT = seq(CharClass(((ord("{"), ord("{")), (ord(" "), ord(" ")), (ord("\t"), ord("\t")), (ord("\n"), ord("\n"))),
                          negated=True),
                Rep(CharClass(((0, 0),), negated=True), 0, None))

CallShape = Literal["one", "array", "one-or-array"]


def _tool_function(tool: Any, index: int) -> Tuple[str, Any]:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"tools[{index}] must be an object", param="tools")
    fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
    if not isinstance(fn, dict):
        raise InvalidRequest(f"tools[{index}] is not a function tool", param="tools")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"tools[{index}] has no function name", param="tools")
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    return name, params


def tool_calls_gbnf(tools: List[dict], *, calls: CallShape, free_text: bool = False) -> str:
    """GBNF for an answer to a request with ``tools`` (OpenAI ``tools`` entries or bare functions).

    ``calls``: "one" call object, an "array" of one or more of them, or either
    ("one-or-array"); with ``free_text``, plain text that does not start with ``{`` is allowed
    instead of a call.
    """
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest("tools must be a non-empty list", param="tools")
    conv = SchemaConverter()
    conv.rules["root"] = None
    options: List[Node] = []
    seen_names = set()
    for i, tool in enumerate(tools):
        name, params = _tool_function(tool, i)
        if name in seen_names:
            raise InvalidRequest(f"duplicate tool name {name!r}: every function in tools needs its own name",
                                 param="tools")
        seen_names.add(name)
        path = f"tools[{i}]({name}).parameters#"
        if params is True or params == {}:
            params = {"type": "object"}
        if not isinstance(params, dict):
            raise UnsupportedSchema("tool parameters must be a JSON Schema object", path)
        t = params.get("type")
        if t is None:
            params = dict(params, type="object")
        elif t != "object":
            if isinstance(t, list) and "object" in t:
                params = dict(params, type="object")
            else:
                raise UnsupportedSchema("tool parameters must describe an object", path)
        conv.doc = params
        conv.doc_key = i + 1
        hint = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or f"tool{i}"
        conv.prefix = hint + "-"
        args_name = conv.reserve(hint + "-args")
        conv.bind(args_name, conv.visit(params, path, hint + "-args"))
        call = seq(Lit("{"), WS, Lit('"name"'), WS, Lit(":"), WS, Lit(json_str(name)), WS, Lit(","), WS,
                   Lit('"arguments"'), WS, Lit(":"), WS, Ref(args_name), WS, Lit("}"))
        call_name = conv.reserve(hint + "-call")
        conv.rules[call_name] = call
        options.append(Ref(call_name))
    one = alt(*options)
    if calls != "one" and len(options) > 1:
        one = Ref(conv.helper("call", one))
    array = seq(Lit("["), WS, one, WS, Rep(seq(Lit(","), WS, one, WS), 0, None), Lit("]"))
    answer = {"one": one, "array": array, "one-or-array": alt(one, array)}[calls]
    conv.rules["root"] = alt(answer, FREE_TEXT) if free_text else answer
    return conv.finish()


def tool_call_gbnf(tools: List[dict], *, allow_parallel: bool) -> str:
    """GBNF for a call of one of ``tools``; with ``allow_parallel``, a JSON array of one or more."""
    return tool_calls_gbnf(tools, calls="array" if allow_parallel else "one")
