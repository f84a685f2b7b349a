"""The sandbox every prompt template runs in, and ``PromptTemplate`` (compiled once, rendered many times).

Every template comes from a file an administrator put in the models folder (possibly from
a gallery), never from a request, but it is still treated as untrusted code: it runs in
``ImmutableSandboxedEnvironment`` and any failure becomes a ConfigError naming the template.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, NoReturn

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localai.errors import ConfigError, InvalidRequest
from localai.templates.go import go_to_jinja

Syntax = Literal["jinja", "go"]


# ---------------------------------------------------------------------------------------
# Sandboxed environments


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, but an unsafe attribute is an error rather than a silent ''.

    Jinja's default turns ``{{ ''.__class__ }}`` into an undefined value that prints as
    nothing; failing loudly makes a hostile or broken template visible to the operator.
    """

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is not allowed"
        )


def _raise_exception(message: Any = "") -> NoReturn:
    # HF templates call this to reject a conversation (e.g. roles not alternating): the
    # client sent something this model cannot take, hence a 400.
    raise InvalidRequest(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _hf_tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers' override: Jinja's own tojson HTML-escapes <>&' which would corrupt
    # tool schemas inside prompts.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _go_tojson(value: Any) -> str:
    # sprig's toJson is Go's json.Marshal: compact.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _go_field(obj: Any, *names: str) -> Any:
    """``.A.B`` on the data: mapping lookups only (so nothing escapes the sandbox).

    Go templates name struct fields (``.Name``) while our data are JSON-style dicts
    (``name``), so a missing key is retried with its first letter lowered. A missing key
    gives None, which prints as '' (Go prints "<no value>" for a missing map key).
    """
    for name in names:
        if not isinstance(obj, Mapping):
            return None
        if name in obj:
            obj = obj[name]
        else:
            obj = obj.get(name[:1].lower() + name[1:])
    return obj


def _go_range(value: Any) -> list[tuple[Any, Any]]:
    """(key, element) pairs the way Go's ``range`` walks a value."""
    if value is None or isinstance(value, jinja2.Undefined):
        return []
    if isinstance(value, Mapping):
        return sorted(value.items(), key=lambda kv: str(kv[0]))  # Go ranges maps in key order
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    raise TypeError(f"range can't iterate over {type(value).__name__}")


def _go_finalize(value: Any) -> Any:
    # Print values as Go does: nil as nothing, booleans in lower case.
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


@functools.lru_cache(maxsize=None)
def _environment(syntax: Syntax) -> jinja2.Environment:
    if syntax == "go":
        # Go text/template keeps every character of the text: no block trimming, and the
        # trailing newline of a .tmpl file is part of the prompt.
        env = _Sandbox(
            keep_trailing_newline=True,
            finalize=_go_finalize,
            extensions=["jinja2.ext.loopcontrols"],
        )
        env.globals.update(go_field=_go_field, go_range=_go_range)
        env.filters["go_tojson"] = _go_tojson
        return env
    # The settings transformers uses for chat templates; templates are written against them.
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    env.filters["tojson"] = _hf_tojson
    return env


@functools.lru_cache(maxsize=256)
def _compile(source: str, syntax: Syntax) -> jinja2.Template:
    """The compiled template of ``source``: each distinct text is compiled once."""
    text = go_to_jinja(source) if syntax == "go" else source
    return _environment(syntax).from_string(text)


class PromptTemplate:
    """A template compiled once (shared by text) and rendered many times in the sandbox.

    ``syntax="go"`` takes LocalAI's Go template text, ``"jinja"`` a HF chat template.
    ``name`` says where the text came from ("template.chat", "tokenizer.chat_template") and
    heads every error message.
    """

    def __init__(self, source: str, *, name: str = "template", syntax: Syntax = "jinja") -> None:
        if syntax not in ("jinja", "go"):
            raise ValueError(f"unknown template syntax {syntax!r}")
        self.source = source
        self.name = name
        self.syntax = syntax
        try:
            self._template = _compile(source, syntax)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{name}: template syntax error on line {exc.lineno}: {exc.message}") from None

    def render(self, **variables: Any) -> str:
        try:
            return self._template.render(**variables)
        except InvalidRequest:
            raise
        except SecurityError as exc:
            raise ConfigError(f"{self.name}: blocked by the template sandbox: {exc}") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{self.name}: template error: {exc}") from None
        except Exception as exc:  # a template is a program: TypeError, ZeroDivisionError...
            raise ConfigError(f"{self.name}: template error: {type(exc).__name__}: {exc}") from None

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r}, syntax={self.syntax!r})"
