"""Prompts: LocalAI's Go templates and the model's own Jinja chat template, rendered safely.

- ``sandbox``: the sandboxed Jinja environments and ``PromptTemplate``.
- ``go``: LocalAI's Go ``text/template`` subset translated to Jinja.
- ``messages``: OpenAI chat messages checked and reduced to role + text.
- ``prompts``: chat, completion and edit prompts; ``choose_chat_template`` decides which
  chat template applies.
"""

from localai.templates.go import go_to_jinja
from localai.templates.prompts import (
    DEFAULT_EDIT_TEMPLATE,
    ChatTemplateChoice,
    choose_chat_template,
    render_chat_prompt,
    render_completion_prompt,
    render_edit_prompt,
)
from localai.templates.sandbox import PromptTemplate

__all__ = [
    "ChatTemplateChoice",
    "DEFAULT_EDIT_TEMPLATE",
    "PromptTemplate",
    "choose_chat_template",
    "go_to_jinja",
    "render_chat_prompt",
    "render_completion_prompt",
    "render_edit_prompt",
]
