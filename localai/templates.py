"""Prompts: LocalAI's Go templates and the model's own Jinja chat template, rendered safely.

Two template languages meet here:

* LocalAI YAMLs hold Go ``text/template`` text (``{{.Input}}``, ``{{if eq .RoleName "user"}}``).
  :func:`go_to_jinja` translates the subset LocalAI's templates use into Jinja, so that both
  kinds run in the same sandbox.
* A GGUF file carries ``tokenizer.chat_template``, a Hugging Face Jinja program, rendered
  the way ``transformers`` renders it (trim_blocks, lstrip_blocks, ``raise_exception``...).

Every template comes from a file an administrator put in the models folder (possibly from
a gallery), never from a request, but it is still treated as untrusted code: it runs in
``ImmutableSandboxedEnvironment`` and any failure becomes a ConfigError naming the template.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NoReturn

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localai.config import TemplateConfig
from localai.errors import ConfigError, InvalidRequest

__all__ = [
    "PromptTemplate",
    "go_to_jinja",
    "render_chat_prompt",
    "render_completion_prompt",
    "render_edit_prompt",
    "DEFAULT_EDIT_TEMPLATE",
]

Syntax = Literal["jinja", "go"]

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


# ---------------------------------------------------------------------------------------
# Go text/template -> Jinja

_GO_WS = " \t\r\n"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_COMMENT_TRIM_END = re.compile(r"[ \t\r\n]+-}}")
_GO_ESCAPE = re.compile(r"\\(?:([\\\"'abfnrtv])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3}))")
_GO_SIMPLE_ESCAPES = MappingProxyType({
    "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
    "t": "\t", "v": "\v",
})
# Words Jinja reads as constants: a Go field spelled like this cannot become a variable name.
_JINJA_RESERVED = frozenset({"True", "False", "None", "true", "false", "none"})
_UNSUPPORTED_KEYWORDS = frozenset({"with", "define", "template", "block"})
_COMPARISONS = MappingProxyType({"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="})


def _go_unquote(body: str, line: int) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return _GO_SIMPLE_ESCAPES[m.group(1)]
        code = m.group(2) or m.group(3) or m.group(4)
        return chr(int(code, 16)) if code else chr(int(m.group(5), 8))

    rest = _GO_ESCAPE.sub("", body)
    if "\\" in rest:
        raise ConfigError(f"line {line}: invalid escape in string literal \"{body}\"")
    return _GO_ESCAPE.sub(sub, body)


class _GoTranslator:
    """One translation; holds the scope stack (if/range) while walking the template."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[tuple[bool, str]] = []
        self.scopes: list[dict[str, Any]] = []
        self.ranges = 0
        self.trim_next = False

    # -- text and actions -------------------------------------------------------------

    def line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def emit_text(self, text: str) -> None:
        if self.trim_next:
            text = text.lstrip(_GO_WS)
            self.trim_next = False
        if text:
            self.out.append((True, text))

    def emit(self, code: str) -> None:
        self.out.append((False, code))

    def trim_previous(self) -> None:
        # `{{- ` removes the whitespace of the text just before it, already emitted.
        if self.out and self.out[-1][0]:
            stripped = self.out[-1][1].rstrip(_GO_WS)
            if stripped:
                self.out[-1] = (True, stripped)
            else:
                self.out.pop()

    def translate(self) -> str:
        text, n, pos = self.text, len(self.text), 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                self.emit_text(text[pos:])
                break
            self.emit_text(text[pos:start])
            i = start + 2
            if text.startswith("-", i) and i + 1 < n and text[i + 1] in _GO_WS:
                self.trim_previous()
                i += 2
                while i < n and text[i] in _GO_WS:
                    i += 1
            if text.startswith("/*", i):
                pos = self.comment(i, start)
                continue
            tokens, pos, trim_right = self.lex(i, start)
            self.action(tokens, start)
            self.trim_next = trim_right
        if self.scopes:
            scope = self.scopes[-1]
            raise ConfigError(
                f"line {scope['line']}: {{{{{scope['kind']}}}}} is never closed by {{{{end}}}}"
            )
        # "{" is the only character that can open a Jinja tag: print it as an expression so
        # a literal "{%" (or a "{" right before an action, "{" + "{% if") stays text.
        return "".join(t.replace("{", "{{ '{' }}") if is_text else t for is_text, t in self.out)

    def comment(self, i: int, start: int) -> int:
        end = self.text.find("*/", i + 2)
        if end < 0:
            raise ConfigError(f"line {self.line(start)}: unclosed comment")
        j = end + 2
        trimmed = _COMMENT_TRIM_END.match(self.text, j)
        if trimmed:
            self.trim_next = True
            return trimmed.end()
        if self.text.startswith("}}", j):
            return j + 2
        raise ConfigError(f"line {self.line(start)}: comment ends before closing delimiter")

    def lex(self, i: int, start: int) -> tuple[list[tuple[str, Any]], int, bool]:
        text, n = self.text, len(self.text)
        tokens: list[tuple[str, Any]] = []
        line = self.line(start)
        while True:
            if i >= n:
                raise ConfigError(f"line {line}: unclosed action {{{{")
            c = text[i]
            if c in _GO_WS:
                j = i
                while j < n and text[j] in _GO_WS:
                    j += 1
                if text.startswith("-}}", j):
                    return tokens, j + 3, True
                i = j
            elif text.startswith("}}", i):
                return tokens, i + 2, False
            elif c == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    if text[j] == "\n":
                        break
                    j += 2 if text[j] == "\\" else 1
                if j >= n or text[j] != '"':
                    raise ConfigError(f"line {line}: unterminated string literal")
                tokens.append(("str", _go_unquote(text[i + 1 : j], line)))
                i = j + 1
            elif c == "`":
                j = text.find("`", i + 1)
                if j < 0:
                    raise ConfigError(f"line {line}: unterminated raw string")
                tokens.append(("str", text[i + 1 : j]))
                i = j + 1
            elif c in "()|,":
                tokens.append((c, c))
                i += 1
            elif text.startswith(":=", i):
                tokens.append((":=", ":="))
                i += 2
            elif c == "$":
                m = _IDENT.match(text, i + 1)
                name = m.group(0) if m else ""
                j = m.end() if m else i + 1
                f = _FIELDS.match(text, j)
                tokens.append(("var", (name, f.group(0)[1:].split(".") if f else [])))
                i = f.end() if f else j
            elif c == "." and not (i + 1 < n and text[i + 1].isdigit()):
                f = _FIELDS.match(text, i)
                if f:
                    tokens.append(("field", f.group(0)[1:].split(".")))
                    i = f.end()
                else:
                    tokens.append(("dot", "."))
                    i += 1
            elif (m := _NUMBER.match(text, i)) and (c.isdigit() or c in "+-."):
                if _IDENT.match(text, m.end()):
                    raise ConfigError(f"line {line}: unsupported number literal {text[i:m.end() + 1]!r}")
                tokens.append(("num", m.group(0).lstrip("+")))
                i = m.end()
            elif m := _IDENT.match(text, i):
                tokens.append(("ident", m.group(0)))
                i = m.end()
            elif c == "'":
                raise ConfigError(f"line {line}: unsupported Go template construct: character constant")
            elif c == "=":
                raise ConfigError(f"line {line}: unsupported Go template construct: variable assignment")
            else:
                raise ConfigError(f"line {line}: unexpected character {c!r} in action")

    # -- actions ----------------------------------------------------------------------

    def action(self, tokens: list[tuple[str, Any]], start: int) -> None:
        line = self.line(start)
        if not tokens:
            raise ConfigError(f"line {line}: empty action {{{{}}}}")
        kind, value = tokens[0]
        keyword = value if kind == "ident" else None
        if keyword == "if":
            expr = self.whole_pipeline(tokens[1:], line, "if")
            self.scopes.append({"kind": "if", "line": line, "else": False, "vars": {}})
            self.emit(f"{{% if {expr} %}}")
        elif keyword == "else":
            scope = self.scopes[-1] if self.scopes else None
            if scope is None or scope["else"]:
                raise ConfigError(f"line {line}: unexpected {{{{else}}}}")
            if len(tokens) > 1 and tokens[1] == ("ident", "if"):
                if scope["kind"] != "if":
                    raise ConfigError(f"line {line}: {{{{else if}}}} inside {{{{range}}}}")
                expr = self.whole_pipeline(tokens[2:], line, "else if")
                self.emit(f"{{% elif {expr} %}}")
            elif len(tokens) > 1:
                what = tokens[1][1] if tokens[1][0] == "ident" else "..."
                raise ConfigError(f"line {line}: unsupported Go template construct: {{{{else {what}}}}}")
            else:
                scope["else"] = True
                if scope["kind"] == "range":
                    # Its else branch runs outside the loop: no element, no range variables.
                    scope["vars"] = {}
                    scope["dot"] = None
                self.emit("{% else %}")
        elif keyword == "end":
            if len(tokens) > 1:
                raise ConfigError(f"line {line}: unexpected words after {{{{end}}}}")
            if not self.scopes:
                raise ConfigError(f"line {line}: unexpected {{{{end}}}}")
            scope = self.scopes.pop()
            self.emit("{% endif %}" if scope["kind"] == "if" else "{% endfor %}")
        elif keyword == "range":
            self.range(tokens[1:], line)
        elif keyword in ("break", "continue"):
            if len(tokens) > 1 or not any(s["kind"] == "range" for s in self.scopes):
                raise ConfigError(f"line {line}: {{{{{keyword}}}}} outside {{{{range}}}}")
            self.emit(f"{{% {keyword} %}}")
        elif keyword in _UNSUPPORTED_KEYWORDS:
            raise ConfigError(f"line {line}: unsupported Go template construct: {{{{{keyword}}}}}")
        elif kind == "var" and len(tokens) > 1 and tokens[1][0] == ":=":
            raise ConfigError(f"line {line}: unsupported Go template construct: variable declaration")
        else:
            expr = self.whole_pipeline(tokens, line, "action")
            self.emit(f"{{{{ {expr} }}}}")

    def range(self, tokens: list[tuple[str, Any]], line: int) -> None:
        names: list[str] = []
        if ":=" in (t[0] for t in tokens):
            decl = tokens[: [t[0] for t in tokens].index(":=")]
            tokens = tokens[len(decl) + 1 :]
            shape = [t[0] for t in decl]
            if shape not in (["var"], ["var", ",", "var"]) or any(
                t[1][1] or not t[1][0] for t in decl if t[0] == "var"
            ):
                raise ConfigError(f"line {line}: malformed {{{{range}}}} variable declaration")
            names = [t[1][0] for t in decl if t[0] == "var"]
        expr = self.whole_pipeline(tokens, line, "range")
        self.ranges += 1
        key, dot = f"go_key_{self.ranges}", f"go_dot_{self.ranges}"
        variables = {names[-1]: dot} if names else {}
        if len(names) == 2:
            variables[names[0]] = key
        self.scopes.append({"kind": "range", "line": line, "else": False, "dot": dot, "vars": variables})
        self.emit(f"{{% for {key}, {dot} in go_range({expr}) %}}")

    # -- expressions ------------------------------------------------------------------

    def whole_pipeline(self, tokens: list[tuple[str, Any]], line: int, what: str) -> str:
        if not tokens:
            raise ConfigError(f"line {line}: missing value in {{{{{what}}}}}")
        expr, pos = self.pipeline(tokens, 0, line)
        if pos != len(tokens):
            raise ConfigError(f"line {line}: unexpected {tokens[pos][1]!r} in {{{{{what}}}}}")
        return expr

    def pipeline(self, tokens: list[tuple[str, Any]], pos: int, line: int) -> tuple[str, int]:
        expr, pos = self.command(tokens, pos, line, None)
        while pos < len(tokens) and tokens[pos][0] == "|":
            expr, pos = self.command(tokens, pos + 1, line, expr)
        return expr, pos

    def command(
        self, tokens: list[tuple[str, Any]], pos: int, line: int, piped: str | None
    ) -> tuple[str, int]:
        if pos >= len(tokens):
            raise ConfigError(f"line {line}: missing command after '|'")
        kind, value = tokens[pos]
        if kind == "ident" and value not in ("true", "false", "nil"):
            args: list[str] = []
            pos += 1
            while pos < len(tokens) and tokens[pos][0] not in ("|", ")"):
                arg, pos = self.operand(tokens, pos, line)
                args.append(arg)
            if piped is not None:
                args.append(piped)  # Go passes the piped value as the last argument
            return self.call(value, args, line), pos
        if piped is not None:
            raise ConfigError(f"line {line}: cannot pipe into a value that is not a function")
        expr, pos = self.operand(tokens, pos, line)
        if pos < len(tokens) and tokens[pos][0] not in ("|", ")"):
            raise ConfigError(
                f"line {line}: unsupported Go template construct: arguments after a "
                f"non-function ({tokens[pos][1]!r})"
            )
        return expr, pos

    def operand(self, tokens: list[tuple[str, Any]], pos: int, line: int) -> tuple[str, int]:
        kind, value = tokens[pos]
        if kind == "(":
            expr, pos = self.pipeline(tokens, pos + 1, line)
            if pos >= len(tokens) or tokens[pos][0] != ")":
                raise ConfigError(f"line {line}: missing ')'")
            # A call is already parenthesised and anything else is a single atom.
            return expr, pos + 1
        if kind == "str":
            return repr(value), pos + 1  # Python's repr is valid Jinja string syntax
        if kind == "num":
            return value, pos + 1
        if kind == "field":
            return self.field(value, line), pos + 1
        if kind == "dot":
            return self.dot(line), pos + 1
        if kind == "var":
            return self.variable(*value, line=line), pos + 1
        if kind == "ident" and value in ("true", "false"):
            return value, pos + 1
        if kind == "ident" and value == "nil":
            return "none", pos + 1
        if kind == "ident":
            raise ConfigError(f"line {line}: function {value!r} used as a value; wrap it in ( )")
        raise ConfigError(f"line {line}: unexpected {value!r}")

    def current_dot(self) -> str | None:
        for scope in reversed(self.scopes):
            if scope["kind"] == "range" and scope["dot"] is not None:
                return scope["dot"]
        return None

    def dot(self, line: int) -> str:
        dot = self.current_dot()
        if dot is None:
            raise ConfigError(f"line {line}: unsupported Go template construct: '.' outside {{{{range}}}}")
        return dot

    def field(self, names: list[str], line: int) -> str:
        dot = self.current_dot()
        if dot is not None:
            return self.chain(dot, names)
        return self.root_field(names, line)

    def root_field(self, names: list[str], line: int) -> str:
        if not names:
            raise ConfigError(f"line {line}: unsupported Go template construct: '$' alone")
        if names[0] in _JINJA_RESERVED:
            raise ConfigError(f"line {line}: unsupported field name .{names[0]}")
        # Top-level fields become plain Jinja variables: {{.Input}} -> {{ Input }}.
        return self.chain(names[0], names[1:])

    @staticmethod
    def chain(base: str, names: list[str]) -> str:
        if not names:
            return base
        return f"go_field({base}, {', '.join(repr(n) for n in names)})"

    def variable(self, name: str, names: list[str], *, line: int) -> str:
        if name == "":
            return self.root_field(names, line)
        for scope in reversed(self.scopes):
            if name in scope["vars"]:
                return self.chain(scope["vars"][name], names)
        raise ConfigError(f"line {line}: undefined variable ${name}")

    def call(self, name: str, args: list[str], line: int) -> str:
        def arity(ok: bool, wanted: str) -> None:
            if not ok:
                raise ConfigError(f"line {line}: {name} takes {wanted}, got {len(args)}")

        if name == "eq":
            arity(len(args) >= 2, "at least 2 arguments")
            first = args[0]
            return "(" + " or ".join(f"{first} == {other}" for other in args[1:]) + ")"
        if name in _COMPARISONS:
            arity(len(args) == 2, "2 arguments")
            return f"({args[0]} {_COMPARISONS[name]} {args[1]})"
        if name in ("and", "or"):
            arity(len(args) >= 1, "at least 1 argument")
            return "(" + f" {name} ".join(args) + ")"
        if name == "not":
            arity(len(args) == 1, "1 argument")
            return f"(not {args[0]})"
        if name == "len":
            arity(len(args) == 1, "1 argument")
            return f"({args[0]} | length)"
        if name == "toJson":
            arity(len(args) == 1, "1 argument")
            return f"({args[0]} | go_tojson)"
        raise ConfigError(f"line {line}: unsupported Go template function {name!r}")


def go_to_jinja(text: str) -> str:
    """Translate LocalAI's Go ``text/template`` syntax into an equivalent Jinja template.

    Supported: fields (``.Input``, ``.A.B``, ``$.X``), ``if``/``else if``/``else``/``end``,
    ``range`` (with ``$i, $e :=``, ``else``, ``break``/``continue``), comments, the trim
    markers ``{{-`` / ``-}}``, string/number/bool literals, pipes, and the functions
    eq ne lt le gt ge and or not len toJson. Anything else raises ConfigError naming it.
    The result expects the helpers of the "go" environment (see PromptTemplate).
    """
    return _GoTranslator(text).translate()


# ---------------------------------------------------------------------------------------
# Prompts


def _text_content(content: Any, index: int) -> str:
    """A message's content as text: OpenAI allows a string, null, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            param = f"messages[{index}].content[{j}]"
            if not isinstance(part, dict):
                raise InvalidRequest("content parts must be objects", param=param)
            kind = part.get("type")
            key = "refusal" if kind == "refusal" else "text"
            if kind in ("text", "refusal"):
                text = part.get(key)
                if not isinstance(text, str):
                    raise InvalidRequest(f"content part of type {kind!r} needs a string {key!r}", param=param)
                texts.append(text)
            elif kind in ("image_url", "image"):
                raise InvalidRequest("image input is not supported by this model", param=param)
            elif kind in ("input_audio", "audio_url", "audio"):
                raise InvalidRequest("audio input is not supported by this model", param=param)
            else:
                raise InvalidRequest(f"content part type {kind!r} is not supported", param=param)
        # llama.cpp's server joins text parts with a newline as well.
        return "\n".join(texts)
    raise InvalidRequest(
        "message content must be a string, a list of content parts, or null",
        param=f"messages[{index}].content",
    )


def _normalize_messages(messages: list[dict]) -> list[dict]:
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list", param="messages")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidRequest("each message needs a string 'role'", param=f"messages[{index}].role")
        out.append({**message, "content": _text_content(message.get("content"), index)})
    return out


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
    """The prompt text of a chat conversation.

    Which template: the YAML's ``template.chat_message`` / ``template.chat`` (LocalAI's
    scheme) unless ``use_tokenizer_template``; else the GGUF's ``tokenizer.chat_template``
    (``model_template``); else plain ChatML. The config's ``system_prompt`` is added as a
    first system message when the request has none (in LocalAI's scheme only when the
    templates do not place ``{{.SystemPrompt}}`` themselves).

    Raises InvalidRequest for content this model cannot take (images, a conversation the
    model's template rejects) and ConfigError when a template itself fails.
    """
    normalized = _normalize_messages(messages)
    wants_system = bool(system_prompt) and not any(m["role"] == "system" for m in normalized)
    system_message = [{"role": "system", "content": system_prompt}] if wants_system else []

    if (config_template.chat or config_template.chat_message) and not config_template.use_tokenizer_template:
        sources = (config_template.chat or "") + (config_template.chat_message or "")
        if _MENTIONS_SYSTEM.search(sources):
            system_message = []
        return _render_localai_chat(
            system_message + normalized, config_template, roles, system_prompt, _functions(tools)
        )
    if model_template:
        return PromptTemplate(model_template, name="tokenizer.chat_template").render(
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
