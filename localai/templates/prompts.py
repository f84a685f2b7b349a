"""Prompts from messages: LocalAI's templates, the model's own chat template, or ChatML.

Which chat template applies is decided in one place, ``choose_chat_template``, used by every
caller (the renderer here, and the API when it asks whether the template can show tools).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from localai.config import TemplateConfig
from localai.templates.messages import normalize_messages
from localai.templates.sandbox import PromptTemplate

DEFAULT_EDIT_TEMPLATE = """\
Below is an instruction that describes a task{{if .Input}}, paired with an input that provides \
further context{{end}}. Write a response that appropriately completes the request.

### Instruction:
{{.Instruction}}
{{if .Input}}
### Input:
{{.Input}}
{{end}}
### Response:
"""


def _functions(tools: list | None) -> list[dict]:
    """OpenAI ``tools`` -> the function definitions LocalAI's ``.Functions`` holds."""
    functions = []
    for tool in tools or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            if tool.get("type", "function") == "function":
                functions.append(tool["function"])
    return functions


def _json_compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# A Go template that places the config's system prompt itself ({{.SystemPrompt}}).
_MENTIONS_SYSTEM = re.compile(r"\$?\.System(?:Prompt)?\b")


def _render_localai_chat(
    messages: list[dict],
    config_template: TemplateConfig,
    roles: dict[str, str],
    system_prompt: str | None,
    functions: list[dict],
) -> str:
    """LocalAI's TemplateMessages: per-message template, joined, then the chat template."""
    message_tpl = (
        PromptTemplate(config_template.chat_message, name="template.chat_message", syntax="go")
        if config_template.chat_message else None
    )
    chat_tpl = (
        PromptTemplate(config_template.chat, name="template.chat", syntax="go")
        if config_template.chat else None
    )
    suppress_system = any(m["role"] == "system" and m["content"] for m in messages)
    lines: list[str] = []
    per_message: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message["role"]
        content = message["content"]
        call = message.get("tool_calls") or message.get("function_call")
        # LocalAI: an assistant turn that calls tools may use its own role prefix.
        if call and role == "assistant" and roles.get("assistant_function_call"):
            role = "assistant_function_call"
        prefix = roles.get(role, "")
        data = {
            "SystemPrompt": system_prompt or "",
            "Role": prefix,
            "RoleName": role,
            "FunctionName": message.get("name") or "",
            "Content": content,
            "MessageIndex": index,
            "Function": False,
            "FunctionCall": call,
            "LastMessage": index == len(messages) - 1,
            "Functions": functions,
        }
        per_message.append(data)
        if message_tpl is not None:
            text = message_tpl.render(**data)
            if text:  # LocalAI drops messages its template renders to nothing
                lines.append(text)
            continue
        # No chat_message template: LocalAI prefixes the role string and appends tool calls
        # as JSON.
        text = prefix + content if content else ""
        for payload in (message.get("function_call"), message.get("tool_calls")):
            if payload is not None:
                encoded = (prefix + " " if prefix else "") + _json_compact(payload)
                text = text + "\n" + encoded if content else encoded
        lines.append(text)
    joined = "\n".join(lines)
    if chat_tpl is None:
        return joined
    return chat_tpl.render(
        SystemPrompt=system_prompt or "",
        System=system_prompt or "",
        SuppressSystemPrompt=suppress_system,
        Input=joined,
        Instruction="",
        Functions=functions,
        MessageIndex=0,
        Messages=per_message,
    )


def _render_chatml(messages: list[dict], add_generation_prompt: bool) -> str:
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(frozen=True)
class ChatTemplateChoice:
    """Which chat template renders a conversation.

    ``kind``: "localai" (the YAML's ``template.chat`` / ``template.chat_message``, Go syntax),
    "model" (the GGUF's ``tokenizer.chat_template``, Jinja) or "chatml" (neither exists).
    """

    kind: Literal["localai", "model", "chatml"]
    source: str | None = None  # the model's template text, for kind "model"

    @property
    def knows_tools(self) -> bool:
        """Whether the template renders ``tools`` itself (else a system message describes them)."""
        return self.kind == "model" and "tools" in (self.source or "")


def choose_chat_template(config_template: TemplateConfig, model_template: str | None) -> ChatTemplateChoice:
    """The YAML's templates (LocalAI's scheme) unless ``use_tokenizer_template``; else the
    model's own chat template; else plain ChatML."""
    if (config_template.chat or config_template.chat_message) and not config_template.use_tokenizer_template:
        return ChatTemplateChoice("localai")
    if model_template:
        return ChatTemplateChoice("model", model_template)
    return ChatTemplateChoice("chatml")


def render_chat_prompt(
    messages: list[dict],
    *,
    model_template: str | None,
    config_template: TemplateConfig,
    roles: dict[str, str],
    system_prompt: str | None,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
    tools: list | None = None,
) -> str:
    """The prompt text of a chat conversation, through the template ``choose_chat_template``
    picks. The config's ``system_prompt`` is added as a first system message when the request
    has none (in LocalAI's scheme only when the templates do not place ``{{.SystemPrompt}}``
    themselves).

    Raises InvalidRequest for content this model cannot take (images, a conversation the
    model's template rejects) and ConfigError when a template itself fails.
    """
    normalized = normalize_messages(messages)
    wants_system = bool(system_prompt) and not any(m["role"] == "system" for m in normalized)
    system_message = [{"role": "system", "content": system_prompt}] if wants_system else []
    choice = choose_chat_template(config_template, model_template)

    if choice.kind == "localai":
        sources = (config_template.chat or "") + (config_template.chat_message or "")
        if _MENTIONS_SYSTEM.search(sources):
            system_message = []
        return _render_localai_chat(
            system_message + normalized, config_template, roles, system_prompt, _functions(tools)
        )
    if choice.kind == "model":
        return PromptTemplate(choice.source, name="tokenizer.chat_template").render(
            messages=system_message + normalized,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            tools=tools or None,
        )
    return _render_chatml(system_message + normalized, add_generation_prompt)


def render_completion_prompt(prompt: str, template: str | None) -> str:
    """A completion prompt through the YAML's ``template.completion`` (Go, ``.Input``)."""
    if not template:
        return prompt
    return PromptTemplate(template, name="template.completion", syntax="go").render(
        **_prompt_data(Input=prompt)
    )


def render_edit_prompt(instruction: str, input: str, template: str | None) -> str:
    """An edit prompt through ``template.edit`` (Go, ``.Instruction`` and ``.Input``).

    Without a template: an Alpaca-style instruction/input/response layout.
    """
    name = "template.edit" if template else "default edit template"
    return PromptTemplate(template or DEFAULT_EDIT_TEMPLATE, name=name, syntax="go").render(
        **_prompt_data(Input=input, Instruction=instruction)
    )


def _prompt_data(**values: Any) -> dict[str, Any]:
    # Every field of LocalAI's PromptTemplateData, so a shared template file never meets an
    # undefined name.
    data: dict[str, Any] = {
        "SystemPrompt": "",
        "System": "",
        "SuppressSystemPrompt": False,
        "Input": "",
        "Instruction": "",
        "Functions": [],
        "MessageIndex": 0,
        "Messages": [],
    }
    data.update(values)
    return data
