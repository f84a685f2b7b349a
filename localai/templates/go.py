"""LocalAI's Go ``text/template`` syntax translated to Jinja, so both kinds of template run in
the same sandbox."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from localai.errors import ConfigError


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
