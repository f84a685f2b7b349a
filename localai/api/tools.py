"""Structured output and function calling for the chat API: grammars in, tool calls out.

- ``response_format`` json_object / json_schema and ``tool_choice`` required / a named function
  become a GBNF grammar the sampler must follow, so the output always parses and validates.
- ``tool_choice: auto`` lets the model choose: the grammar allows either free text that does
  not start with ``{`` or a complete, valid tool call.
- The tools are described to the model by the chat template when it knows tools, else by a
  system message; the generated JSON is parsed back into OpenAI's ``tool_calls``.
- The legacy ``functions`` / ``function_call`` fields map onto the same machinery.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from localai.errors import InvalidRequest, UnsupportedSchema
from localai.grammar import JSON_OBJECT_GBNF, schema_to_gbnf, tool_calls_gbnf


@dataclass
class ToolPlan:
    mode: str = "none"  # none | auto | required | named
    tools: list[dict] = field(default_factory=list)  # OpenAI tool objects (type function), the offered ones
    legacy: bool = False  # answered with message.function_call (the functions API)
    parallel: bool = True

    @property
    def active(self) -> bool:
        return self.mode != "none" and bool(self.tools)


def _function_names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def _check_tools(tools: Any, param: str) -> list[dict]:
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest(f"'{param}' must be a non-empty array.", param=param)
    checked = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise InvalidRequest(f"Invalid tool at {param}[{i}]: only type 'function' is supported.", param=param)
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", function["name"]):
            raise InvalidRequest(f"Invalid tool at {param}[{i}]: function.name must match ^[a-zA-Z0-9_.-]{{1,64}}$.",
                                 param=param)
        params = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise InvalidRequest(f"Invalid tool at {param}[{i}]: function.parameters must be an object.", param=param)
        checked.append({"type": "function", "function": {**function, "parameters": params}})
    return checked


def plan_tools(body: dict) -> ToolPlan:
    """What the request asks of tools, validated (a 400 for a tool_choice naming no tool)."""
    legacy = body.get("tools") is None and body.get("functions") is not None
    if legacy:
        tools = _check_tools([{"type": "function", "function": f} for f in body["functions"]], "functions")
        choice = body.get("function_call", "auto")
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": choice.get("name")}}
    elif body.get("tools") is not None:
        tools = _check_tools(body["tools"], "tools")
        choice = body.get("tool_choice", "auto")
    else:
        if body.get("tool_choice") not in (None, "none"):
            raise InvalidRequest("'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        return ToolPlan()
    param = "function_call" if legacy else "tool_choice"
    parallel = bool(body.get("parallel_tool_calls", True)) and not legacy
    if choice in (None, "auto"):
        return ToolPlan("auto", tools, legacy, parallel)
    if choice == "none":
        return ToolPlan("none", tools, legacy, parallel)
    if choice == "required":
        return ToolPlan("required", tools, legacy, parallel)
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise InvalidRequest(f"Invalid value for '{param}': no function named {name!r} in the tools "
                                 f"({', '.join(_function_names(tools))}).", param=param)
        return ToolPlan("named", chosen, legacy, parallel=False)
    raise InvalidRequest(f"Invalid value for '{param}': expected 'none', 'auto', 'required' or a function.",
                         param=param)


def _convert(schema_fn, *args, param: str, **kwargs) -> str:
    try:
        return schema_fn(*args, **kwargs)
    except UnsupportedSchema as exc:
        raise UnsupportedSchema(exc.feature, exc.path, param=param,
                                message=f"Unsupported JSON schema in '{param}': {exc}") from None


def response_format_grammar(body: dict) -> str | None:
    """GBNF for ``response_format`` (None for text)."""
    fmt = body.get("response_format")
    if not fmt:
        return None
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return JSON_OBJECT_GBNF
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidRequest("response_format.json_schema must be an object with a 'schema'.",
                                 param="response_format")
        return _convert(schema_to_gbnf, spec.get("schema", {}), param="response_format")
    raise InvalidRequest(f"Invalid response_format type {kind!r}: expected text, json_object or json_schema.",
                         param="response_format")


def tool_grammar(plan: ToolPlan) -> str | None:
    """GBNF constraining the answer to the plan: a tool call, or (auto) text or a tool call.

    With parallel calls allowed, one call object or an array of them (models mostly emit one).
    """
    if not plan.active:
        return None
    return _convert(tool_calls_gbnf, plan.tools, calls="one-or-array" if plan.parallel else "one",
                    free_text=plan.mode == "auto", param="tools")


def tools_system_prompt(plan: ToolPlan) -> str:
    """Tells a model whose template cannot render tools how to call them."""
    lines = ["You can call these functions:"]
    for tool in plan.tools:
        fn = tool["function"]
        lines.append(json.dumps({"name": fn["name"], "description": fn.get("description", ""),
                                 "parameters": fn["parameters"]}, ensure_ascii=False))
    how = ('To call a function, answer with only a JSON object: {"name": <function name>, '
           '"arguments": <object of arguments>}.')
    if plan.parallel and plan.mode != "named":
        how += " To call several, answer with a JSON array of such objects."
    if plan.mode == "auto":
        how += " If no function is needed, answer normally in plain text."
    lines.append(how)
    return "\n".join(lines)


def prepare_messages(messages: list[dict], plan: ToolPlan, template_knows_tools: bool) -> list[dict]:
    """Messages a template can render: tool calls and tool results as text when it cannot."""
    prepared = []
    for message in messages:
        message = dict(message)
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and message.get("function_call") and not calls:
            calls = [{"id": "call_legacy", "type": "function", "function": message["function_call"]}]
        if calls and not template_knows_tools:
            rendered = []
            for call in calls:
                fn = call.get("function", {})
                try:
                    arguments = json.loads(fn.get("arguments") or "{}")
                except (TypeError, ValueError):
                    arguments = fn.get("arguments")
                rendered.append({"name": fn.get("name"), "arguments": arguments})
            message["content"] = json.dumps(rendered[0] if len(rendered) == 1 else rendered, ensure_ascii=False)
            message.pop("tool_calls", None)
            message.pop("function_call", None)
        if message.get("role") in ("tool", "function") and not template_knows_tools:
            ref = message.get("tool_call_id") or message.get("name") or ""
            message["content"] = f"Result of function call {ref}: {message.get('content') or ''}".strip()
            message["role"] = "tool"
        prepared.append(message)
    if plan.active and not template_knows_tools:
        prompt = tools_system_prompt(plan)
        if prepared and prepared[0].get("role") in ("system", "developer"):
            prepared[0] = {**prepared[0], "content": f"{prepared[0].get('content') or ''}\n\n{prompt}".strip()}
        else:
            prepared.insert(0, {"role": "system", "content": prompt})
    return prepared


def _json_candidates(text: str) -> list[Any]:
    """JSON values found in model output: the whole text, fenced blocks, then the first {...}/[...]."""
    stripped = text.strip()
    found = []
    for fence in re.findall(r"```(?:json)?\s*(.*?)```", stripped, flags=re.S):
        found.append(fence)
    found.append(stripped)
    start = min([i for i in (stripped.find("{"), stripped.find("[")) if i >= 0], default=-1)
    if start > 0:
        found.append(stripped[start:])
    values = []
    decoder = json.JSONDecoder()
    for candidate in found:
        try:
            value, _ = decoder.raw_decode(candidate.strip())
            values.append(value)
        except ValueError:
            continue
    return values


def parse_tool_calls(text: str, plan: ToolPlan) -> list[dict] | None:
    """OpenAI ``tool_calls`` from the model's answer, or None when it answered in text."""
    names = set(_function_names(plan.tools))
    for value in _json_candidates(text):
        calls = value if isinstance(value, list) else [value]
        parsed = []
        for call in calls:
            if not isinstance(call, dict):
                break
            name = call.get("name") or (call.get("function") or {}).get("name")
            arguments = call.get("arguments", call.get("parameters", {}))
            if name not in names:
                break
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    break
            parsed.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                           "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
        else:
            if parsed:
                return parsed if plan.parallel or len(parsed) == 1 else parsed[:1]
    return None
