"""The regular-expression subset JSON Schema ``pattern`` may use, parsed for grammar generation.

Supported: literals, escapes (\\n \\t \\xHH \\uHHHH \\. ...), classes ``[a-z]``/``[^...]``,
``\\d \\w \\s`` (ASCII; their negations and negated classes containing them are limited to
printable ASCII), ``.``, groups ``(...)``, ``(?:...)``, named groups, ``|``, ``* + ?``, ``{m}``,
``{m,}``, ``{m,n}`` (lazy forms too), and ``^``/``$`` at the start/end of the pattern. Anything
else (lookaround, backreferences, ``\\b``, flags, possessive quantifiers, anchors elsewhere) is
rejected with ``UnsupportedSchema``.

The parse is a small AST: ``('set', ranges) | ('seq', [nodes]) | ('alt', [nodes]) |
('rep', node, lo, hi)``; ``re_len``/``re_raise_min``/``re_tighten`` fit its repetition
counts to a string length budget.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from localai.errors import UnsupportedSchema
from localai.grammar.gbnf import char_ranges

MAX_PATTERN_CHARS = 2000
MAX_PATTERN_NESTING = 32

Ranges = Tuple[Tuple[int, int], ...]
_FULL: Ranges = ((0, 0xD7FF), (0xE000, 0x10FFFF))
_PRINTABLE_ASCII: Ranges = ((0x20, 0x7E),)


def norm(ranges: Sequence[Tuple[int, int]]) -> Ranges:
    out: List[List[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo <= hi:
                out.append((lo, hi))
    return norm(out)


def complement(a: Ranges, universe: Ranges) -> Ranges:
    out = []
    for ulo, uhi in universe:
        cur = ulo
        for lo, hi in a:
            if hi < cur or lo > uhi:
                continue
            if lo > cur:
                out.append((cur, lo - 1))
            cur = max(cur, hi + 1)
        if cur <= uhi:
            out.append((cur, uhi))
    return norm(out)


def contains(a: Ranges, o: int) -> bool:
    return any(lo <= o <= hi for lo, hi in a)


def size(a: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


_DIGITS_SET = char_ranges("0-9")
_WORD_SET = norm(char_ranges("0-9A-Za-z_"))
_SPACE_SET = norm(char_ranges("\t-\r "))
_SHORTHANDS = {
    "d": _DIGITS_SET,
    "w": _WORD_SET,
    "s": _SPACE_SET,
    "D": complement(_DIGITS_SET, _PRINTABLE_ASCII),
    "W": complement(_WORD_SET, _PRINTABLE_ASCII),
    "S": complement(_SPACE_SET, _PRINTABLE_ASCII),
}
_DOT = complement(((10, 10),), _FULL)
_CHAR_ESCAPES = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7}
JSON_CONTROL = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
# code points a JSON string may contain unescaped
RAW_OK: Ranges = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0xD7FF), (0xE000, 0x10FFFF))


class Regex:
    """Parser for the supported regex subset -> small AST.

    AST: ('set', ranges) | ('seq', [nodes]) | ('alt', [nodes]) | ('rep', node, lo, hi)
    """

    _QUANT = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")

    def __init__(self, pattern: str, path: str):
        self.p = pattern
        self.n = len(pattern)
        self.i = 0
        self.path = path

    def fail(self, what: str):
        raise UnsupportedSchema(f"pattern {self.p!r}: {what}", self.path)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < self.n else ""

    def parse(self):
        if len(self.p) > MAX_PATTERN_CHARS:
            self.fail(f"longer than {MAX_PATTERN_CHARS} characters")
        depth = deepest = 0
        escaped = False
        for c in self.p:  # group nesting, counted before any recursive parser sees the pattern
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == "(":
                depth += 1
                deepest = max(deepest, depth)
            elif c == ")":
                depth -= 1
        if deepest > MAX_PATTERN_NESTING:
            self.fail(f"groups nest more than {MAX_PATTERN_NESTING} deep")
        try:
            re.compile(self.p)
        except re.error as e:
            self.fail(f"invalid regular expression ({e})")
        node = self.alternation(top=True)
        if self.i != self.n:
            self.fail("unbalanced ')'")
        return node

    def alternation(self, top: bool):
        branches = [self.sequence(top)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence(top))
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self, top: bool):
        items = []
        while self.i < self.n and self.p[self.i] not in "|)":
            c = self.p[self.i]
            if c == "^":
                if top and not items:
                    self.i += 1
                    continue
                self.fail("'^' anchor that is not at the start of the pattern (or of a top-level branch)")
            if c == "$":
                if top and self.peek(1) in ("", "|"):
                    self.i += 1
                    continue
                self.fail("'$' anchor that is not at the end of the pattern (or of a top-level branch)")
            items.append(self.quantified(self.atom()))
        return ("seq", items)

    def atom(self):
        p, i = self.p, self.i
        c = p[i]
        if c == "(":
            if p.startswith("(?:", i):
                self.i += 3
            elif p.startswith("(?P<", i) or (p.startswith("(?<", i) and p[i + 3:i + 4] not in ("=", "!")):
                self.i = p.index(">", i) + 1
            elif p.startswith("(?", i):
                self.fail("lookaround, inline flags, conditionals or comments '(?...)'")
            else:
                self.i += 1
            node = self.alternation(top=False)
            if self.peek() != ")":
                self.fail("missing ')'")
            self.i += 1
            return node
        if c == "[":
            return ("set", self.char_class())
        if c == ".":
            self.i += 1
            return ("set", _DOT)
        if c == "\\":
            ranges, _ = self.escape(in_class=False)
            return ("set", ranges)
        if c in "*+?":
            self.fail("quantifier with nothing to repeat")
        self.i += 1
        return ("set", ((ord(c), ord(c)),))

    def quantified(self, node):
        c = self.peek()
        if c in ("*", "+", "?"):
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            self.i += 1
        elif c == "{":
            m = self._QUANT.match(self.p, self.i)
            if not m:
                return node
            if m.group(1) == "":
                if m.group(2) and m.group(3):
                    self.fail("'{,n}' quantifier (means different things in different regex dialects)")
                return node  # Python reads it as a literal '{'
            lo = int(m.group(1))
            hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
            self.i = m.end()
        else:
            return node
        if self.peek() == "?":
            self.i += 1  # lazy: same set of full matches
        elif self.peek() == "+":
            self.fail("possessive quantifier")
        return ("rep", node, lo, hi)

    def escape(self, in_class: bool) -> Tuple[Ranges, bool]:
        """At a backslash; returns (ranges, is_shorthand)."""
        self.i += 1
        c = self.peek()
        self.i += 1
        if c in _SHORTHANDS:
            return _SHORTHANDS[c], True
        if c in _CHAR_ESCAPES:
            o = _CHAR_ESCAPES[c]
            return ((o, o),), False
        if c == "b" and in_class:
            return ((8, 8),), False
        if c in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[c]
            digits = self.p[self.i:self.i + size]
            self.i += size
            o = int(digits, 16)
            return ((o, o),), False
        if c == "0":
            digits = ""
            while len(digits) < 2 and self.peek() in "01234567" and self.peek():
                digits += self.peek()
                self.i += 1
            o = int(digits or "0", 8)
            return ((o, o),), False
        if c.isdigit():
            self.fail(f"backreference '\\{c}'")
        if c.isalnum() or c == "_":
            names = {"b": "word boundary", "B": "non-word-boundary", "A": "start anchor", "Z": "end anchor",
                     "z": "end anchor", "G": "\\G", "N": "named character", "p": "unicode property",
                     "P": "unicode property", "k": "named backreference"}
            self.fail(f"'\\{c}' ({names.get(c, 'unsupported escape')})")
        return ((ord(c), ord(c)),), False

    def char_class(self) -> Ranges:
        self.i += 1
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        items: List[Tuple[int, int]] = []
        shorthand = False
        first = True
        while True:
            if self.i >= self.n:
                self.fail("unterminated character class")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                r, sh = self.escape(in_class=True)
                shorthand = shorthand or sh
                single = None if sh else r[0][0]
            else:
                self.i += 1
                single = ord(c)
                r = ((single, single),)
            if single is not None and self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                if self.peek() == "\\":
                    r2, sh2 = self.escape(in_class=True)
                    if sh2:
                        self.fail("character range ending in a class shorthand")
                    end = r2[0][0]
                else:
                    end = ord(self.p[self.i])
                    self.i += 1
                r = ((single, end),)
            items.extend(r)
        ranges = norm(items)
        if negated:
            # Python's \d \w \s are Unicode-aware: outside ASCII we cannot tell
            # what the negation excludes, so stay within printable ASCII.
            ranges = complement(ranges, _PRINTABLE_ASCII if shorthand else _FULL)
        ranges = intersect(ranges, _FULL)
        if not ranges:
            self.fail("character class that matches nothing")
        return ranges


def re_len(node) -> Tuple[int, Optional[int]]:
    kind = node[0]
    if kind == "set":
        return 1, 1
    if kind == "seq":
        lo, hi = 0, 0
        for it in node[1]:
            a, b = re_len(it)
            lo += a
            hi = None if (hi is None or b is None) else hi + b
        return lo, hi
    if kind == "alt":
        lens = [re_len(b) for b in node[1]]
        lo = min(a for a, _ in lens)
        hi = None if any(b is None for _, b in lens) else max(b for _, b in lens)
        return lo, hi
    _, item, m, M = node
    a, b = re_len(item)
    if M == 0 or b == 0:
        return 0, 0
    return m * a, (None if (M is None or b is None) else M * b)


def re_raise_min(node, need: int):
    """A sub-language of ``node`` whose strings are all >= need long, or None."""
    lo, hi = re_len(node)
    if lo >= need:
        return node
    if hi is not None and hi < need:
        return None
    kind = node[0]
    if kind == "set":
        return None
    if kind == "seq":
        items = list(node[1])
        deficit = need - lo
        for k, it in enumerate(items):
            if deficit <= 0:
                break
            a, b = re_len(it)
            target = a + deficit if b is None else min(a + deficit, b)
            new = re_raise_min(it, target)
            if new is not None:
                items[k] = new
                deficit -= re_len(new)[0] - a
        if deficit > 0:
            return None
        return ("seq", items)
    if kind == "alt":
        branches = [b for b in (re_raise_min(x, need) for x in node[1]) if b is not None]
        if not branches:
            return None
        return branches[0] if len(branches) == 1 else ("alt", branches)
    _, item, m, M = node
    a, _ = re_len(item)
    if a == 0:
        item = re_raise_min(item, 1)
        if item is None:
            return None
        a = re_len(item)[0]
    k = -(-need // a)
    if M is None or k <= M:
        return ("rep", item, max(m, k), M)
    item = re_raise_min(item, -(-need // M))
    if item is None:
        return None
    return ("rep", item, M, M)


def re_tighten(node, budget: int):
    """A sub-language of ``node`` with strings at most ``budget`` long.

    Precondition: the shortest string of ``node`` fits; that one is kept.
    """
    lo, hi = re_len(node)
    if hi is not None and hi <= budget:
        return node
    kind = node[0]
    if kind == "seq":
        items = list(node[1])
        los = [re_len(it)[0] for it in items]
        used = 0
        for k, it in enumerate(items):
            room = budget - used - sum(los[k + 1:])
            items[k] = re_tighten(it, room)
            used += re_len(items[k])[1]
        return ("seq", items)
    if kind == "alt":
        branches = [re_tighten(b, budget) for b in node[1] if re_len(b)[0] <= budget]
        return branches[0] if len(branches) == 1 else ("alt", branches)
    if kind == "set":  # pragma: no cover - length 1 always fits the precondition
        return node
    _, item, m, M = node
    a, _ = re_len(item)
    if m == 0 and a > budget:
        return ("rep", item, 0, 0)
    item = re_tighten(item, budget // m if m else budget)
    h = re_len(item)[1]
    if h == 0:
        return ("rep", item, m, m)
    count = budget // h
    if M is not None:
        count = min(count, M)
    return ("rep", item, m, max(m, count))
