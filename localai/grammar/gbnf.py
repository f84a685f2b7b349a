"""A small pure-Python implementation of GBNF, llama.cpp's grammar format.

* The expression tree (``Lit``, ``CharClass``, ``Ref``, ``Seq``, ``Alt``, ``Rep``...) that
  generated grammars are built from (``seq``/``alt``/``opt``/``cc`` flatten as they go) and
  :func:`render` writes as GBNF text.
* :func:`parse` turns GBNF text into a :class:`Grammar` (a dict of rule name
  -> expression tree) and rejects what llama.cpp's own parser would reject,
  with a line/column in the message: syntax errors, unknown escapes, undefined
  rules, repetition counts over llama.cpp's ``MAX_REPETITION_THRESHOLD`` and
  left recursion.  This lets user-supplied grammars be checked before they
  reach C, where a bad grammar only produces a log line and a NULL sampler.

(A recogniser and a random sampler over these trees live with the tests, which use them
to check generated grammars: ``tests/gbnf_support.py``.)

The syntax accepted mirrors llama.cpp's ``llama_grammar_parser``:

    rule      ::= name ws "::=" ws alternates newline
    name      ::= [a-zA-Z0-9-]+
    alternates::= sequence ( "|" sequence )*
    item      ::= "literal" | [class] | [^class] | name | ( alternates ) | .
    suffix    ::= * | + | ? | {m} | {m,} | {m,n}
    comments  ::= # to end of line

Escapes in literals and classes: \\x HH, \\u HHHH, \\U HHHHHHHH, \\t \\r \\n \\\\ \\"
\\[ \\] \\-.  Newlines end a rule except inside parentheses or right after
``|``.  Token references (``<...>``, ``!<[id]>``) need a vocabulary and are
rejected here.  As in llama.cpp, a rule defined twice keeps its last body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple, Union

from localai.errors import GrammarError, LeftRecursion

__all__ = [
    "GrammarError",
    "Lit",
    "CharClass",
    "AnyChar",
    "Ref",
    "Seq",
    "Alt",
    "Rep",
    "Grammar",
    "parse",
    "check",
    "render",
    "seq",
    "alt",
    "opt",
    "cc",
    "MAX_REPETITION_THRESHOLD",
]

# llama.cpp: src/llama-grammar.cpp MAX_REPETITION_THRESHOLD
MAX_REPETITION_THRESHOLD = 2000
# Our limits on grammars, checked before llama.cpp sees one: its parser recurses into groups,
# and every rule costs it memory and every sampled token time.
MAX_NESTING = 64
MAX_RULES = 4096
_MAX_CODEPOINT = 0x10FFFF


# --------------------------------------------------------------------------
# Expression tree
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A literal string (matched as a whole; may be empty)."""

    text: str


@dataclass(frozen=True)
class CharClass:
    """One code point in (or, if ``negated``, not in) the inclusive ranges."""

    ranges: Tuple[Tuple[int, int], ...]
    negated: bool = False

    def contains(self, ch: str) -> bool:
        o = ord(ch)
        for lo, hi in self.ranges:
            if lo <= o <= hi:
                return not self.negated
        return self.negated


@dataclass(frozen=True)
class AnyChar:
    """``.``: any single code point."""


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: Tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: Tuple["Node", ...]


@dataclass(frozen=True)
class Rep:
    item: "Node"
    min: int
    max: Optional[int]  # None: unbounded


Node = Union[Lit, CharClass, AnyChar, Ref, Seq, Alt, Rep]

EMPTY = Seq(())


# --------------------------------------------------------------------------
# Building expressions (flattening and merging as they go)
# --------------------------------------------------------------------------


def seq(*items: Node) -> Node:
    flat: List[Node] = []
    for it in items:
        parts = it.items if isinstance(it, Seq) else (it,)
        for p in parts:
            if isinstance(p, Rep) and p.max == 0:
                continue
            if isinstance(p, Lit):
                if not p.text:
                    continue
                if flat and isinstance(flat[-1], Lit):
                    flat[-1] = Lit(flat[-1].text + p.text)
                    continue
            flat.append(p)
    if not flat:
        return EMPTY
    if len(flat) == 1:
        return flat[0]
    return Seq(tuple(flat))


def alt(*options: Node) -> Node:
    flat: List[Node] = []
    seen = set()
    for o in options:
        for p in (o.options if isinstance(o, Alt) else (o,)):
            if p not in seen:
                seen.add(p)
                flat.append(p)
    if not flat:
        raise ValueError("empty alternation")
    if len(flat) == 1:
        return flat[0]
    return Alt(tuple(flat))


def opt(node: Node) -> Node:
    return Rep(node, 0, 1)


def char_ranges(spec: str) -> Tuple[Tuple[int, int], ...]:
    """'0-9a-f_' -> ranges; a '-' is a range only between two characters."""
    out = []
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            out.append((ord(spec[i]), ord(spec[i + 2])))
            i += 3
        else:
            out.append((ord(spec[i]), ord(spec[i])))
            i += 1
    return tuple(out)


def cc(spec: str, negated: bool = False) -> CharClass:
    return CharClass(char_ranges(spec), negated)


DIGIT = cc("0-9")


class Grammar:
    """Parsed grammar: ordered ``rules`` mapping name -> expression."""

    def __init__(self, rules: Dict[str, Node]):
        self.rules: Dict[str, Node] = dict(rules)
        self._heights: Optional[Dict[int, float]] = None
        self._rule_heights: Optional[Dict[str, float]] = None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Grammar({list(self.rules)})"

    def to_gbnf(self) -> str:
        return render(self.rules)

    # -- analyses ----------------------------------------------------------

    def check_defined(self) -> None:
        for name, body in self.rules.items():
            for ref in refs(body):
                if ref not in self.rules:
                    raise GrammarError(f"undefined rule identifier '{ref}' (used in rule '{name}')")

    def nullable_rules(self) -> Dict[str, bool]:
        null = {name: False for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, body in self.rules.items():
                if not null[name] and _nullable(body, null):
                    null[name] = True
                    changed = True
        return null

    def left_recursive_rule(self) -> Optional[str]:
        """Name of a rule on a left-recursive cycle, or None."""
        null = self.nullable_rules()
        edges = {name: _first_refs(body, null) for name, body in self.rules.items()}
        WHITE, GREY, BLACK = 0, 1, 2
        colour = {name: WHITE for name in self.rules}
        for start in self.rules:
            if colour[start] != WHITE:
                continue
            stack = [(start, iter(sorted(edges[start])))]
            colour[start] = GREY
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    colour[node] = BLACK
                    stack.pop()
                    continue
                if nxt not in colour:
                    continue
                if colour[nxt] == GREY:
                    return nxt
                if colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    stack.append((nxt, iter(sorted(edges[nxt]))))
        return None

    def rule_heights(self) -> Dict[str, float]:
        """Minimum derivation height per rule (inf: derives no finite string)."""
        if self._rule_heights is None:
            inf = float("inf")
            heights = {name: inf for name in self.rules}
            changed = True
            while changed:
                changed = False
                for name, body in self.rules.items():
                    h = height(body, heights)
                    if h < heights[name]:
                        heights[name] = h
                        changed = True
            self._rule_heights = heights
        return self._rule_heights

    def productive(self, start: str = "root") -> bool:
        return self.rule_heights().get(start, float("inf")) != float("inf")


def refs(node: Node) -> Iterable[str]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Ref):
            yield n.name
        elif isinstance(n, Seq):
            stack.extend(n.items)
        elif isinstance(n, Alt):
            stack.extend(n.options)
        elif isinstance(n, Rep):
            stack.append(n.item)


def _nullable(node: Node, null: Dict[str, bool]) -> bool:
    if isinstance(node, Lit):
        return node.text == ""
    if isinstance(node, (CharClass, AnyChar)):
        return False
    if isinstance(node, Ref):
        return null.get(node.name, False)
    if isinstance(node, Seq):
        return all(_nullable(i, null) for i in node.items)
    if isinstance(node, Alt):
        return any(_nullable(o, null) for o in node.options)
    if isinstance(node, Rep):
        return node.min == 0 or node.max == 0 or _nullable(node.item, null)
    raise TypeError(node)


def _first_refs(node: Node, null: Dict[str, bool]) -> set:
    """Rules that can be expanded at the leftmost position of ``node``."""
    out: set = set()
    if isinstance(node, Ref):
        out.add(node.name)
    elif isinstance(node, Seq):
        for item in node.items:
            out |= _first_refs(item, null)
            if not _nullable(item, null):
                break
    elif isinstance(node, Alt):
        for o in node.options:
            out |= _first_refs(o, null)
    elif isinstance(node, Rep):
        if node.max != 0:
            out |= _first_refs(node.item, null)
    return out


def height(node: Node, heights: Dict[str, float]) -> float:
    if isinstance(node, (Lit, CharClass, AnyChar)):
        return 0
    if isinstance(node, Ref):
        return 1 + heights.get(node.name, float("inf"))
    if isinstance(node, Seq):
        return max((height(i, heights) for i in node.items), default=0)
    if isinstance(node, Alt):
        return min((height(o, heights) for o in node.options), default=float("inf"))
    if isinstance(node, Rep):
        if node.min == 0 or node.max == 0:
            return 0
        return height(node.item, heights)
    raise TypeError(node)


# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}


class _Parser:
    def __init__(self, src: str):
        self.src = src
        self.n = len(src)
        # Emulates llama.cpp's symbol table size, which feeds its repetition limit.
        self.symbols: set = set()
        self.n_symbols = 0
        self.rules: Dict[str, Node] = {}
        self.refs: List[Tuple[str, int]] = []
        self.depth = 0  # groups open at the current position

    # -- helpers -----------------------------------------------------------

    def where(self, pos: int) -> Tuple[int, int]:
        line = self.src.count("\n", 0, pos) + 1
        col = pos - (self.src.rfind("\n", 0, pos) + 1) + 1
        return line, col

    def error(self, msg: str, pos: int) -> GrammarError:
        line, col = self.where(min(pos, self.n))
        snippet = self.src[pos:pos + 20].split("\n")[0]
        if pos >= self.n:
            msg = f"{msg} (at end of input)"
        elif snippet:
            msg = f"{msg} (at {snippet!r})"
        return GrammarError(msg, line, col)

    def ch(self, pos: int) -> str:
        return self.src[pos] if pos < self.n else ""

    def space(self, pos: int, newline_ok: bool) -> int:
        src, n = self.src, self.n
        while pos < n:
            c = src[pos]
            if c == " " or c == "\t":
                pos += 1
            elif c == "#":
                while pos < n and src[pos] not in "\r\n":
                    pos += 1
            elif newline_ok and (c == "\r" or c == "\n"):
                pos += 1
            else:
                break
        return pos

    def name_end(self, pos: int) -> int:
        end = pos
        while end < self.n and self.src[end] in _WORD_CHARS:
            end += 1
        if end == pos:
            raise self.error("expecting a rule name", pos)
        return end

    def symbol(self, name: str) -> None:
        if name not in self.symbols:
            self.symbols.add(name)
            self.n_symbols += 1

    def parse_char(self, pos: int) -> Tuple[str, int]:
        if pos >= self.n:
            raise self.error("unexpected end of input", pos)
        c = self.src[pos]
        if c != "\\":
            return c, pos + 1
        e = self.ch(pos + 1)
        size = {"x": 2, "u": 4, "U": 8}.get(e)
        if size is not None:
            digits = self.src[pos + 2:pos + 2 + size]
            if len(digits) != size or any(d not in _HEX for d in digits):
                raise self.error(f"expecting {size} hex chars after \\{e}", pos)
            value = int(digits, 16)
            if value > _MAX_CODEPOINT:
                raise self.error(f"code point U+{value:X} out of range", pos)
            return chr(value), pos + 2 + size
        if e in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[e], pos + 2
        if e == "":
            raise self.error("unexpected end of input", pos)
        raise self.error(f"unknown escape '\\{e}'", pos)

    # -- grammar -----------------------------------------------------------

    def parse(self) -> Grammar:
        pos = self.space(0, True)
        if pos >= self.n:
            raise GrammarError("empty grammar (no rules)")
        while pos < self.n:
            pos = self.parse_rule(pos)
        for name, at in self.refs:
            if name not in self.rules:
                line, col = self.where(at)
                raise GrammarError(f"undefined rule identifier '{name}'", line, col)
        grammar = Grammar(self.rules)
        bad = grammar.left_recursive_rule()
        if bad is not None:
            raise LeftRecursion(f"left recursion detected for rule '{bad}' (llama.cpp rejects it)")
        return grammar

    def parse_rule(self, pos: int) -> int:
        if len(self.rules) >= MAX_RULES:
            raise self.error(f"more than {MAX_RULES} rules", pos)
        end = self.name_end(pos)
        name = self.src[pos:end]
        self.symbol(name)
        pos = self.space(end, False)
        if self.src[pos:pos + 3] != "::=":
            raise self.error("expecting '::='", pos)
        pos = self.space(pos + 3, True)
        body, pos = self.parse_alternates(pos, False)
        self.rules[name] = body
        c = self.ch(pos)
        if c == "\r":
            pos += 2 if self.ch(pos + 1) == "\n" else 1
        elif c == "\n":
            pos += 1
        elif c:
            raise self.error("expecting newline or end of input", pos)
        return self.space(pos, True)

    def parse_alternates(self, pos: int, nested: bool) -> Tuple[Node, int]:
        seq, pos = self.parse_sequence(pos, nested)
        options = [seq]
        while self.ch(pos) == "|":
            pos = self.space(pos + 1, True)
            seq, pos = self.parse_sequence(pos, nested)
            options.append(seq)
        return (options[0] if len(options) == 1 else Alt(tuple(options))), pos

    def parse_sequence(self, pos: int, nested: bool) -> Tuple[Node, int]:
        items: List[Node] = []
        n_prev = 1  # llama.cpp's n_prev_rules for the last item
        have_last = False
        while pos < self.n:
            c = self.src[pos]
            start = pos
            if c == '"':
                pos += 1
                chars = []
                while True:
                    if pos >= self.n:
                        raise self.error("unexpected end of input inside a literal", start)
                    if self.src[pos] == '"':
                        break
                    ch, pos = self.parse_char(pos)
                    chars.append(ch)
                items.append(Lit("".join(chars)))
                n_prev, have_last = 1, True
                pos = self.space(pos + 1, nested)
            elif c == "[":
                pos += 1
                negated = False
                if self.ch(pos) == "^":
                    negated = True
                    pos += 1
                ranges = []
                while True:
                    if pos >= self.n:
                        raise self.error("unexpected end of input inside a character class", start)
                    if self.src[pos] == "]":
                        break
                    lo, pos = self.parse_char(pos)
                    hi = lo
                    if self.ch(pos) == "-" and self.ch(pos + 1) != "]":
                        if pos + 1 >= self.n:
                            raise self.error("unexpected end of input inside a character class", start)
                        hi, pos = self.parse_char(pos + 1)
                    ranges.append((ord(lo), ord(hi)))
                # llama.cpp pushes no element for "[]" / "[^]": an empty sequence
                items.append(CharClass(tuple(ranges), negated) if ranges else Lit(""))
                n_prev, have_last = 1, True
                pos = self.space(pos + 1, nested)
            elif c == "<" or c == "!":
                raise self.error("token references (<...>) need a vocabulary and are not supported here", pos)
            elif c in _WORD_CHARS:
                end = self.name_end(pos)
                name = self.src[pos:end]
                self.symbol(name)
                self.refs.append((name, pos))
                items.append(Ref(name))
                n_prev, have_last = 1, True
                pos = self.space(end, nested)
            elif c == "(":
                self.depth += 1
                if self.depth > MAX_NESTING:
                    raise self.error(f"groups nest more than {MAX_NESTING} deep", pos)
                pos = self.space(pos + 1, True)
                before = self.n_symbols
                self.n_symbols += 1  # the synthesized rule for the group
                body, pos = self.parse_alternates(pos, True)
                self.depth -= 1
                if self.ch(pos) != ")":
                    raise self.error("expecting ')'", pos)
                items.append(body)
                n_prev, have_last = max(1, self.n_symbols - before), True
                pos = self.space(pos + 1, nested)
            elif c == ".":
                items.append(AnyChar())
                n_prev, have_last = 1, True
                pos = self.space(pos + 1, nested)
            elif c in "*+?{":
                if not have_last:
                    raise self.error(f"expecting an item before '{c}'", pos)
                if c == "*":
                    lo, hi = 0, None
                    pos = self.space(pos + 1, nested)
                elif c == "+":
                    lo, hi = 1, None
                    pos = self.space(pos + 1, nested)
                elif c == "?":
                    lo, hi = 0, 1
                    pos = self.space(pos + 1, nested)
                else:
                    lo, hi, pos = self.parse_braces(pos, nested)
                total = hi if (hi is not None and hi > 0) else (lo if lo > 0 else 1)
                if n_prev * total >= MAX_REPETITION_THRESHOLD:
                    raise self.error(
                        "repetition too large: the repeated item times the repetition count reaches "
                        f"llama.cpp's limit of {MAX_REPETITION_THRESHOLD}", start)
                self.n_symbols += 1 if hi is None else hi - lo
                items[-1] = Rep(items[-1], lo, hi)
                n_prev *= total
                if lo == 0 and hi == 0:
                    have_last = False
            else:
                break
        if len(items) == 1:
            return items[0], pos
        return Seq(tuple(items)), pos

    def parse_braces(self, pos: int, nested: bool) -> Tuple[int, Optional[int], int]:
        start = pos
        pos = self.space(pos + 1, nested)
        end = pos
        while end < self.n and self.src[end] in _DIGITS:
            end += 1
        if end == pos:
            raise self.error("expecting an integer after '{'", pos)
        lo = int(self.src[pos:end])
        pos = self.space(end, nested)
        hi: Optional[int]
        if self.ch(pos) == "}":
            hi = lo
            pos = self.space(pos + 1, nested)
        elif self.ch(pos) == ",":
            pos = self.space(pos + 1, nested)
            hi = None
            end = pos
            while end < self.n and self.src[end] in _DIGITS:
                end += 1
            if end > pos:
                hi = int(self.src[pos:end])
                pos = self.space(end, nested)
            if self.ch(pos) != "}":
                raise self.error("expecting '}'", pos)
            pos = self.space(pos + 1, nested)
        else:
            raise self.error("expecting ',' or '}'", pos)
        if lo > MAX_REPETITION_THRESHOLD:
            raise self.error(f"repetition minimum {lo} exceeds llama.cpp's limit of "
                             f"{MAX_REPETITION_THRESHOLD}", start)
        if hi is not None and hi > MAX_REPETITION_THRESHOLD:
            hi = None  # llama.cpp silently treats it as unbounded
        if hi is not None and hi < lo:
            raise self.error(f"repetition maximum {hi} is below minimum {lo}", start)
        return lo, hi, pos


def parse(text: str) -> Grammar:
    """Parse GBNF text; raise :class:`GrammarError` where llama.cpp would fail."""
    if not isinstance(text, str):
        raise TypeError("grammar must be a str")
    return _Parser(text).parse()


def check(text: str, start: str = "root") -> Grammar:
    """:func:`parse` plus what ``llama_sampler_init_grammar`` checks next: the start rule exists."""
    grammar = parse(text)
    if start not in grammar.rules:
        raise GrammarError(f"grammar does not contain a '{start}' rule")
    return grammar


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def _esc_char(o: int, in_class: bool) -> str:
    c = chr(o)
    if c == "\\":
        return "\\\\"
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    if in_class:
        if c in "[]":
            return "\\" + c
        if c in "^-":
            return f"\\x{o:02X}"
    elif c == '"':
        return '\\"'
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02X}"
    if o < 0x7F:
        return c
    if 0xD800 <= o <= 0xDFFF or o > 0xFFFF:
        return f"\\U{o:08X}"
    return f"\\u{o:04X}"


def _render_class(node: CharClass) -> str:
    parts = []
    dash = False
    for lo, hi in node.ranges:
        if lo == hi == 0x2D:
            dash = True  # a literal '-' right before ']' needs no escape
        elif lo == hi:
            parts.append(_esc_char(lo, True))
        elif hi == lo + 1:
            parts.append(_esc_char(lo, True) + _esc_char(hi, True))
        else:
            parts.append(_esc_char(lo, True) + "-" + _esc_char(hi, True))
    body = "".join(parts) + ("-" if dash else "")
    if not body:
        # llama.cpp reads "[]" as an empty sequence, so spell these out.
        return "." if node.negated else "[^\\x00-\\U0010FFFF]"
    return "[" + ("^" if node.negated else "") + body + "]"


def _render(node: Node, ctx: str) -> str:
    """ctx: 'top' (bare alternation ok), 'seq' (inside a sequence), 'atom' (operand of a suffix)."""
    if isinstance(node, Lit):
        return '"' + "".join(_esc_char(ord(c), False) for c in node.text) + '"'
    if isinstance(node, CharClass):
        return _render_class(node)
    if isinstance(node, AnyChar):
        return "."
    if isinstance(node, Ref):
        return node.name
    if isinstance(node, Seq):
        items = [i for i in node.items if not (isinstance(i, Lit) and i.text == "")]
        if not items:
            return '""'
        if len(items) == 1:
            return _render(items[0], ctx)
        text = " ".join(_render(i, "seq") for i in items)
        return f"( {text} )" if ctx == "atom" else text
    if isinstance(node, Alt):
        nonempty = [o for o in node.options if not _is_empty(o)]
        if len(nonempty) < len(node.options):
            if not nonempty:
                return '""'
            inner = nonempty[0] if len(nonempty) == 1 else Alt(tuple(nonempty))
            return _render(Rep(inner, 0, 1), ctx)
        text = " | ".join(_render(o, "top") for o in node.options)
        return text if ctx == "top" else f"( {text} )"
    if isinstance(node, Rep):
        lo, hi = node.min, node.max
        if lo == 1 and hi == 1:
            return _render(node.item, ctx)
        if hi == 0:
            return '""'
        inner = _render(node.item, "atom")
        if (lo, hi) == (0, None):
            suffix = "*"
        elif (lo, hi) == (1, None):
            suffix = "+"
        elif (lo, hi) == (0, 1):
            suffix = "?"
        elif hi is None:
            suffix = f"{{{lo},}}"
        elif lo == hi:
            suffix = f"{{{lo}}}"
        else:
            suffix = f"{{{lo},{hi}}}"
        return inner + suffix
    raise TypeError(node)


def _is_empty(node: Node) -> bool:
    if isinstance(node, Lit):
        return node.text == ""
    if isinstance(node, Seq):
        return all(_is_empty(i) for i in node.items)
    return False


def render(rules: Dict[str, Node]) -> str:
    """GBNF text, one rule per line, in the dict's order."""
    return "".join(f"{name} ::= {_render(body, 'top')}\n" for name, body in rules.items())


def render_node(node: Node) -> str:
    return _render(node, "top")
