"""One chat turn on a text engine, for every API that speaks in conversations.

OpenAI's chat completions use it directly; the Responses API and Anthropic's Messages API
convert their requests into a chat body (OpenAI's chat shape: ``messages``, ``tools``,
``tool_choice``, ``response_format``, sampling fields) and use the same path: the tool plan and
its grammar, the chat template, control-token defusing, generation options, and reading the
answer back as text or tool calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localai.api import tools
from localai.api.generation import generation_options, postprocess
from localai.api.http import ApiRequest, Server
from localai.capabilities import Capability, Generation, TextGenerator
from localai.config import ModelConfig
from localai.templates import choose_chat_template, render_chat_prompt
from localai.templates.messages import defuse_control_tokens


@dataclass
class ChatPrompt:
    config: ModelConfig
    engine: TextGenerator
    plan: tools.ToolPlan
    grammar: str | None
    prompt: str


@dataclass
class ChatTurn:
    config: ModelConfig
    plan: tools.ToolPlan
    generation: Generation


@dataclass
class Answer:
    """What a finished choice said: text, or the tool calls it made (OpenAI's tool_calls shape)."""

    text: str
    calls: list[dict] | None = None


def render(app: Server, request: ApiRequest, body: dict) -> ChatPrompt:
    """The prompt of a chat body for the model it names (tools and their grammar planned)."""
    plan = tools.plan_tools(body)
    grammar = tools.tool_grammar(plan) or tools.response_format_grammar(body)
    config = app.resolve_model(request, body.get("model"))
    engine = app.manager.engine_for(config, Capability.TEXT)
    info = engine.prompt_info()
    template = choose_chat_template(config.template, info.chat_template)
    # the client's text cannot carry control tokens: only the template's own text may
    messages = defuse_control_tokens(tools.prepare_messages(body["messages"], plan, template.knows_tools),
                                     info.control_texts)
    prompt = render_chat_prompt(
        messages, model_template=info.chat_template, config_template=config.template,
        roles=config.roles, system_prompt=config.system_prompt, bos_token=info.bos_text, eos_token=info.eos_text,
        tools=defuse_control_tokens(plan.tools, info.control_texts) if plan.active and template.knows_tools
        else None)
    return ChatPrompt(config, engine, plan, grammar, prompt)


def start(app: Server, request: ApiRequest, body: dict, *, logprobs: int | None = None) -> ChatTurn:
    """Render a chat body and start generating (``n`` choices)."""
    chat = render(app, request, body)
    options = generation_options(app, request, body, chat.config, grammar=chat.grammar, logprobs=logprobs)
    generation = chat.engine.generate([chat.prompt], options, n=int(body.get("n") or 1))
    return ChatTurn(chat.config, chat.plan, generation)


def count_tokens(app: Server, request: ApiRequest, body: dict) -> int:
    """How many prompt tokens a chat body makes (nothing is generated)."""
    chat = render(app, request, body)
    return len(chat.engine.tokenize(chat.prompt))


def answer(turn: ChatTurn, text: str) -> Answer:
    """A finished choice's text read back: tool calls when the plan allows them and it made some."""
    text = postprocess(text, turn.config)
    calls = tools.parse_tool_calls(text, turn.plan) if turn.plan.active else None
    return Answer(text, calls)


class StreamSplitter:
    """The streamed text of one choice as it may be shown: without tools it flows at once; with
    tools, text that may be a call (it starts with ``{`` or ``[``) is held back until the answer is
    complete, then turns out to be calls or text."""

    def __init__(self, plan: tools.ToolPlan) -> None:
        self.plan = plan
        self.held: list[str] = []
        self.plain = not plan.active

    def feed(self, text: str) -> str:
        """The text to show now ("" while it is held)."""
        if self.plain:
            return text
        self.held.append(text)
        start = "".join(self.held).lstrip()[:1]
        if start in ("{", "[", ""):
            return ""
        self.plain = True  # ordinary text: release what was held, stream the rest
        released = "".join(self.held)
        self.held.clear()
        return released

    def finish(self) -> tuple[str, list[dict] | None]:
        """At the end: (text still to show, the tool calls if the held text was calls)."""
        if not self.held:
            return "", None
        text = "".join(self.held)
        self.held.clear()
        calls = tools.parse_tool_calls(text, self.plan)
        return ("", calls) if calls is not None else (text, None)


def chat_tool(name: Any, description: Any, parameters: Any) -> dict:
    """A function tool in OpenAI's chat shape (what the tool plan reads)."""
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}
