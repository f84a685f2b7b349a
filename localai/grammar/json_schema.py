"""JSON Schema -> GBNF (llama.cpp grammar) converter.

Design rule: every string the produced grammar accepts is a JSON document that
validates against the schema (with format assertion on).  The grammar may
accept *fewer* documents than the schema does (one spelling of each literal,
bounded whitespace, declared key order, ...); it must never accept more.
Keywords whose constraint cannot be expressed that way raise
:class:`UnsupportedSchema` rather than being dropped silently.

Public API
----------
``schema_to_gbnf(schema) -> str``      grammar whose start rule is ``root``
``JSON_OBJECT_GBNF``                   any JSON object (response_format json_object)
``tool_call_gbnf(tools, *, allow_parallel)``
                                       ``{"name": ..., "arguments": {...}}`` (or a
                                       JSON array of one or more of them)
``UnsupportedSchema``                  ValueError naming the feature and its path

Supported
---------
* ``type`` (string, number, integer, boolean, null, object, array; lists of
  them, e.g. ``["string", "null"]``); without ``type`` the kind is inferred
  from the keywords present (none at all: any JSON value).
* ``enum`` / ``const`` (any JSON values; values that fail the sibling keywords
  are dropped).
* objects: ``properties`` (emitted in declared order), ``required`` (always
  emitted; optional properties may be left out), ``additionalProperties``
  (false; true or a schema: extra keys, which never repeat a declared name, are
  allowed after the declared ones).  When ``properties`` is given and
  ``additionalProperties`` is absent, no extra keys are generated; an object
  schema with neither allows any keys.  ``minProperties``/``maxProperties``
  only when already implied by ``required``/the declared properties.
  ``unevaluatedProperties`` is accepted (every generated key is evaluated).
* arrays: ``items``, ``prefixItems``, ``minItems``, ``maxItems``,
  ``uniqueItems: true`` only with ``maxItems <= 1``.
* ``anyOf``; ``oneOf`` when its branches are provably disjoint (different
  types, different literal values, or a required property with disjoint
  ``const``/``enum`` values — a discriminator); sibling keywords are folded
  into every branch.
* ``allOf`` (merged: properties, required, types, bounds, enums, nested
  ``anyOf``...).
* ``$ref`` to ``#``, ``#/$defs/...``, ``#/definitions/...`` or any local JSON
  pointer; recursion is allowed (rules refer to each other).
* strings: ``minLength``/``maxLength`` (code points), ``pattern`` (see below),
  ``format`` date, time, date-time (RFC 3339, with calendar-correct days and
  leap years), uuid, email (a simple address), ipv4.
* integers: ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum`` (draft-4 boolean form too) are enforced exactly with
  digit-range rules; numbers: the same bounds when they are integral values
  (then no exponent is generated, and fractions are limited so that at most
  15 significant digits sit next to a bound: a double can hold that exactly;
  bounds of 15+ digits allow integral values only).  ``multipleOf: 1``
  (means integer).
* annotations are ignored: title, description, default, examples, $schema,
  $id, $comment, deprecated, readOnly, writeOnly, ... and any keyword that is
  not a JSON Schema validation keyword (for example OpenAPI's ``nullable``,
  which therefore does not add ``null``: use a type list).

Rejected (``UnsupportedSchema``)
--------------------------------
not, if/then/else, patternProperties, propertyNames, dependentRequired,
dependentSchemas, dependencies, contains/minContains/maxContains,
unevaluatedItems, additionalItems, items given as an array (use prefixItems),
uniqueItems (unless maxItems <= 1), multipleOf (other than 1), non-integral
bounds on numbers, formats other than the ones above, format together with
pattern, length limits a format cannot meet, remote ``$ref``,
$dynamicRef/$recursiveRef, overlapping oneOf, unsatisfiable schemas
(e.g. contradictory allOf, a required property that recursion makes
infinite), ``$ref`` cycles that consume no input (``a: {anyOf: [{$ref: a}, ...]}``:
llama.cpp rejects left recursion).

Patterns: literals, escapes (\\n \\t \\xHH \\uHHHH \\. ...), classes
``[a-z]``/``[^...]``, ``\\d \\w \\s`` (ASCII; their negations and negated classes
containing them are limited to printable ASCII), ``.``, groups ``(...)``,
``(?:...)``, named groups, ``|``, ``* + ?``, ``{m}``, ``{m,}``, ``{m,n}`` (lazy
forms too), and ``^``/``$`` at the start/end of the pattern.  Anything else
(lookaround, backreferences, ``\\b``, flags, possessive quantifiers, anchors
elsewhere) is rejected.  An unanchored pattern is generated as if anchored:
a full match is also a search match, so the output stays valid.  With
``minLength``/``maxLength`` the pattern's repetition counts are tightened to fit.

Bounds: repetition counts above 1999 (llama.cpp's limit is 2000) are capped at
1999 for maxima (subset) and rejected for minima.  Unbounded integers have at
most 16 digits, fractions at most 24 digits, exponents at most 2 digits (so
no value overflows to infinity).  Parts of a schema that cannot produce any
value (an optional property whose schema is unsatisfiable, a branch that only
recurses) are pruned from the grammar; if nothing is left the schema is
rejected.
Whitespace between tokens: nothing, one space, or a newline followed by up to
20 spaces/tabs.  Strings never contain raw control characters, and ``\\u``
escapes never name UTF-16 surrogates (so lengths in code points are exact).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import gbnf
from .gbnf import EMPTY, Alt, AnyChar, CharClass, Lit, Node, Ref, Rep, Seq

__all__ = ["UnsupportedSchema", "schema_to_gbnf", "tool_call_gbnf", "JSON_OBJECT_GBNF"]

REP_LIMIT = gbnf.MAX_REPETITION_THRESHOLD - 1  # largest count llama.cpp accepts
INLINE_REP_LIMIT = 64  # bigger repetitions get a rule of their own
MAX_INT_DIGITS = 16
MAX_FRAC_DIGITS = 24
MAX_EXP_DIGITS = 2
WS_MAX_INDENT = 20


class UnsupportedSchema(ValueError):
    """The schema uses something this converter cannot enforce in a grammar."""

    def __init__(self, feature: str, path: str = "#"):
        self.feature = feature
        self.path = path
        super().__init__(f"unsupported JSON Schema at {path}: {feature}")


class _Unsatisfiable(UnsupportedSchema):
    """No JSON value (that we could generate) satisfies this (sub)schema."""

    def __init__(self, feature: str, path: str = "#"):
        super().__init__(f"unsatisfiable: {feature}", path)


# --------------------------------------------------------------------------
# Node helpers
# --------------------------------------------------------------------------


def _subst(node: Node, old: str, new: str) -> Node:
    """``node`` with references to rule ``old`` pointing at ``new``."""
    if isinstance(node, Ref):
        return Ref(new) if node.name == old else node
    if isinstance(node, Seq):
        return Seq(tuple(_subst(i, old, new) for i in node.items))
    if isinstance(node, Alt):
        return Alt(tuple(_subst(o, old, new) for o in node.options))
    if isinstance(node, Rep):
        return Rep(_subst(node.item, old, new), node.min, node.max)
    return node


def _prune(table: Dict[str, Node]) -> Dict[str, Node]:
    """Drop what cannot derive a finite string (unsatisfiable or endlessly recursive parts)."""
    inf = float("inf")
    heights = {name: inf for name in table}
    changed = True
    while changed:
        changed = False
        for name, body in table.items():
            h = gbnf._height(body, heights)
            if h < heights[name]:
                heights[name] = h
                changed = True

    def prune(node: Node) -> Optional[Node]:
        if isinstance(node, Ref):
            return node if heights.get(node.name, inf) < inf else None
        if isinstance(node, Seq):
            items = [prune(i) for i in node.items]
            return None if any(i is None for i in items) else Seq(tuple(items))
        if isinstance(node, Alt):
            options = [o for o in (prune(o) for o in node.options) if o is not None]
            if not options:
                return None
            return options[0] if len(options) == 1 else Alt(tuple(options))
        if isinstance(node, Rep):
            item = prune(node.item)
            if item is None:
                return EMPTY if node.min == 0 else None
            return Rep(item, node.min, node.max)
        return node

    out: Dict[str, Node] = {}
    for name, body in table.items():
        if heights[name] < inf:
            pruned = prune(body)
            if pruned is not None:
                out[name] = pruned
    return out


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


def _ranges(spec: str) -> Tuple[Tuple[int, int], ...]:
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
    return CharClass(_ranges(spec), negated)


def _atomic(node: Node) -> bool:
    return isinstance(node, (Ref, Lit, CharClass, AnyChar))


WS = Ref("ws")
DIGIT = cc("0-9")
HEX = cc("0-9a-fA-F")
# a JSON string character that needs no escape
RAW_CHAR = CharClass(((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)), negated=True)


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


# --------------------------------------------------------------------------
# Shared rules
# --------------------------------------------------------------------------


def _prims() -> Dict[str, Node]:
    string, value = Ref("string"), Ref("value")
    int_part = alt(Lit("0"), seq(cc("1-9"), Rep(DIGIT, 0, MAX_INT_DIGITS - 1)))
    hour = alt(seq(cc("01"), DIGIT), seq(Lit("2"), cc("0-3")))
    minute = seq(cc("0-5"), DIGIT)
    day31 = alt(seq(Lit("0"), cc("1-9")), seq(cc("12"), DIGIT), seq(Lit("3"), cc("01")))
    day30 = alt(seq(Lit("0"), cc("1-9")), seq(cc("12"), DIGIT), Lit("30"))
    day28 = alt(seq(Lit("0"), cc("1-9")), seq(Lit("1"), DIGIT), seq(Lit("2"), cc("0-8")))
    email_atom = Rep(cc("A-Za-z0-9!#$%&'*+/=?^_`{|}~-"), 1, None)
    label = seq(cc("A-Za-z0-9"), opt(seq(Rep(cc("A-Za-z0-9-"), 0, 61), cc("A-Za-z0-9"))))
    return {
        "value": alt(Ref("object"), Ref("array"), string, Ref("number"), Ref("boolean"), Ref("null")),
        "object": seq(Lit("{"), WS,
                      opt(seq(string, WS, Lit(":"), WS, value, WS,
                              Rep(seq(Lit(","), WS, string, WS, Lit(":"), WS, value, WS), 0, None))),
                      Lit("}")),
        "array": seq(Lit("["), WS, opt(seq(value, WS, Rep(seq(Lit(","), WS, value, WS), 0, None))), Lit("]")),
        "string": seq(Lit('"'), Rep(Ref("char"), 0, None), Lit('"')),
        # any JSON string character; \u escapes exclude the surrogate block
        "char": alt(RAW_CHAR,
                    seq(Lit("\\"), alt(cc('"\\/bfnrt'),
                                       seq(Lit("u"), alt(seq(cc("0-9a-cA-Ce-fE-F"), Rep(HEX, 3, 3)),
                                                         seq(cc("dD"), cc("0-7"), Rep(HEX, 2, 2))))))),
        "number": seq(opt(Lit("-")), int_part,
                      opt(seq(Lit("."), Rep(DIGIT, 1, MAX_FRAC_DIGITS))),
                      opt(seq(cc("eE"), opt(cc("+-")), Rep(DIGIT, 1, MAX_EXP_DIGITS)))),
        "integer": seq(opt(Lit("-")), int_part),
        "boolean": alt(Lit("true"), Lit("false")),
        "null": Lit("null"),
        # formats (string contents, no quotes)
        "date": alt(seq(Ref("date-year"), Lit("-"), Ref("date-month-day")),
                    seq(Ref("date-leap-year"), Lit("-02-29"))),
        "date-year": alt(seq(cc("1-9"), Rep(DIGIT, 3, 3)), seq(Lit("0"), cc("1-9"), Rep(DIGIT, 2, 2)),
                         seq(Lit("00"), cc("1-9"), DIGIT), seq(Lit("000"), cc("1-9"))),
        # two digits that are a non-zero multiple of 4
        "date-mult4": alt(seq(Lit("0"), cc("48")), seq(cc("2468"), cc("048")), seq(cc("13579"), cc("26"))),
        "date-leap-year": alt(seq(Rep(DIGIT, 2, 2), Ref("date-mult4")), seq(Ref("date-mult4"), Lit("00"))),
        "date-month-day": alt(seq(alt(seq(Lit("0"), cc("13578")), seq(Lit("1"), cc("02"))), Lit("-"), day31),
                              seq(alt(seq(Lit("0"), cc("469")), Lit("11")), Lit("-"), day30),
                              seq(Lit("02-"), day28)),
        "time": seq(hour, Lit(":"), minute, Lit(":"), minute, opt(seq(Lit("."), Rep(DIGIT, 1, 9))),
                    alt(Lit("Z"), seq(cc("+-"), hour, Lit(":"), minute))),
        "date-time": seq(Ref("date"), Lit("T"), Ref("time")),
        "uuid": seq(Rep(HEX, 8, 8), Lit("-"), Rep(HEX, 4, 4), Lit("-"), Rep(HEX, 4, 4), Lit("-"),
                    Rep(HEX, 4, 4), Lit("-"), Rep(HEX, 12, 12)),
        "email": seq(email_atom, Rep(seq(Lit("."), email_atom), 0, None), Lit("@"),
                     Ref("email-label"), Rep(seq(Lit("."), Ref("email-label")), 0, None),
                     Lit("."), Rep(cc("A-Za-z"), 2, 24)),
        "email-label": label,
        "ipv4": seq(Ref("ipv4-octet"), Lit("."), Ref("ipv4-octet"), Lit("."), Ref("ipv4-octet"), Lit("."),
                    Ref("ipv4-octet")),
        "ipv4-octet": alt(seq(Lit("25"), cc("0-5")), seq(Lit("2"), cc("0-4"), DIGIT), seq(Lit("1"), DIGIT, DIGIT),
                          seq(cc("1-9"), DIGIT), DIGIT),
        "ws": opt(alt(Lit(" "), seq(Lit("\n"), Rep(cc(" \t"), 0, WS_MAX_INDENT)))),
    }


PRIMS = _prims()
RESERVED = frozenset(PRIMS) | {"root"}

# format -> (rule, min length, max length or None)
FORMATS = {
    "date": ("date", 10, 10),
    "time": ("time", 9, 24),
    "date-time": ("date-time", 20, 35),
    "uuid": ("uuid", 36, 36),
    "email": ("email", 6, None),
    "ipv4": ("ipv4", 7, 15),
}

# --------------------------------------------------------------------------
# Keywords
# --------------------------------------------------------------------------

HANDLED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minProperties", "maxProperties", "unevaluatedProperties",
})

REJECTED = {
    "not": "'not'",
    "if": "'if'/'then'/'else'",
    "then": "'if'/'then'/'else'",
    "else": "'if'/'then'/'else'",
    "patternProperties": "'patternProperties'",
    "propertyNames": "'propertyNames'",
    "dependentRequired": "'dependentRequired'",
    "dependentSchemas": "'dependentSchemas'",
    "dependencies": "'dependencies'",
    "contains": "'contains'",
    "minContains": "'minContains'",
    "maxContains": "'maxContains'",
    "unevaluatedItems": "'unevaluatedItems'",
    "additionalItems": "'additionalItems' (use prefixItems/items)",
    "$dynamicRef": "'$dynamicRef'",
    "$recursiveRef": "'$recursiveRef'",
    "extends": "'extends' (draft 3)",
    "disallow": "'disallow' (draft 3)",
    "divisibleBy": "'divisibleBy' (draft 3)",
}

TYPES = ("null", "boolean", "object", "array", "string", "number", "integer")
_OBJECT_KEYS = {"properties", "required", "additionalProperties", "minProperties", "maxProperties",
                "unevaluatedProperties"}
_ARRAY_KEYS = {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}
_STRING_KEYS = {"minLength", "maxLength", "pattern", "format"}
_NUMBER_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}

_MISSING = object()


def _ptr(path: str, *parts: Any) -> str:
    out = path
    for p in parts:
        out += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    if t == "number":
        return _is_num(value)
    if t == "integer":
        return _is_num(value) and (isinstance(value, int) or float(value).is_integer())
    return False


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --------------------------------------------------------------------------
# Character sets (for patterns)
# --------------------------------------------------------------------------

Ranges = Tuple[Tuple[int, int], ...]
_FULL: Ranges = ((0, 0xD7FF), (0xE000, 0x10FFFF))
_PRINTABLE_ASCII: Ranges = ((0x20, 0x7E),)


def _norm(ranges: Sequence[Tuple[int, int]]) -> Ranges:
    out: List[List[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo <= hi:
                out.append((lo, hi))
    return _norm(out)


def _complement(a: Ranges, universe: Ranges) -> Ranges:
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
    return _norm(out)


def _contains(a: Ranges, o: int) -> bool:
    return any(lo <= o <= hi for lo, hi in a)


def _size(a: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


_DIGITS_SET = _ranges("0-9")
_WORD_SET = _norm(_ranges("0-9A-Za-z_"))
_SPACE_SET = _norm(_ranges("\t-\r "))
_SHORTHANDS = {
    "d": _DIGITS_SET,
    "w": _WORD_SET,
    "s": _SPACE_SET,
    "D": _complement(_DIGITS_SET, _PRINTABLE_ASCII),
    "W": _complement(_WORD_SET, _PRINTABLE_ASCII),
    "S": _complement(_SPACE_SET, _PRINTABLE_ASCII),
}
_DOT = _complement(((10, 10),), _FULL)
_CHAR_ESCAPES = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7}
_JSON_CONTROL = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
# code points a JSON string may contain unescaped
_RAW_OK: Ranges = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0xD7FF), (0xE000, 0x10FFFF))


class _Regex:
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
        ranges = _norm(items)
        if negated:
            # Python's \d \w \s are Unicode-aware: outside ASCII we cannot tell
            # what the negation excludes, so stay within printable ASCII.
            ranges = _complement(ranges, _PRINTABLE_ASCII if shorthand else _FULL)
        ranges = _intersect(ranges, _FULL)
        if not ranges:
            self.fail("character class that matches nothing")
        return ranges


def _re_len(node) -> Tuple[int, Optional[int]]:
    kind = node[0]
    if kind == "set":
        return 1, 1
    if kind == "seq":
        lo, hi = 0, 0
        for it in node[1]:
            a, b = _re_len(it)
            lo += a
            hi = None if (hi is None or b is None) else hi + b
        return lo, hi
    if kind == "alt":
        lens = [_re_len(b) for b in node[1]]
        lo = min(a for a, _ in lens)
        hi = None if any(b is None for _, b in lens) else max(b for _, b in lens)
        return lo, hi
    _, item, m, M = node
    a, b = _re_len(item)
    if M == 0 or b == 0:
        return 0, 0
    return m * a, (None if (M is None or b is None) else M * b)


def _re_raise_min(node, need: int):
    """A sub-language of ``node`` whose strings are all >= need long, or None."""
    lo, hi = _re_len(node)
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
            a, b = _re_len(it)
            target = a + deficit if b is None else min(a + deficit, b)
            new = _re_raise_min(it, target)
            if new is not None:
                items[k] = new
                deficit -= _re_len(new)[0] - a
        if deficit > 0:
            return None
        return ("seq", items)
    if kind == "alt":
        branches = [b for b in (_re_raise_min(x, need) for x in node[1]) if b is not None]
        if not branches:
            return None
        return branches[0] if len(branches) == 1 else ("alt", branches)
    _, item, m, M = node
    a, _ = _re_len(item)
    if a == 0:
        item = _re_raise_min(item, 1)
        if item is None:
            return None
        a = _re_len(item)[0]
    k = -(-need // a)
    if M is None or k <= M:
        return ("rep", item, max(m, k), M)
    item = _re_raise_min(item, -(-need // M))
    if item is None:
        return None
    return ("rep", item, M, M)


def _re_tighten(node, budget: int):
    """A sub-language of ``node`` with strings at most ``budget`` long.

    Precondition: the shortest string of ``node`` fits; that one is kept.
    """
    lo, hi = _re_len(node)
    if hi is not None and hi <= budget:
        return node
    kind = node[0]
    if kind == "seq":
        items = list(node[1])
        los = [_re_len(it)[0] for it in items]
        used = 0
        for k, it in enumerate(items):
            room = budget - used - sum(los[k + 1:])
            items[k] = _re_tighten(it, room)
            used += _re_len(items[k])[1]
        return ("seq", items)
    if kind == "alt":
        branches = [_re_tighten(b, budget) for b in node[1] if _re_len(b)[0] <= budget]
        return branches[0] if len(branches) == 1 else ("alt", branches)
    if kind == "set":  # pragma: no cover - length 1 always fits the precondition
        return node
    _, item, m, M = node
    a, _ = _re_len(item)
    if m == 0 and a > budget:
        return ("rep", item, 0, 0)
    item = _re_tighten(item, budget // m if m else budget)
    h = _re_len(item)[1]
    if h == 0:
        return ("rep", item, m, m)
    count = budget // h
    if M is not None:
        count = min(count, M)
    return ("rep", item, m, max(m, count))


# --------------------------------------------------------------------------
# Integer / number ranges
# --------------------------------------------------------------------------


def _digits_range(x: str, y: str) -> Node:
    """Digit strings of len(x) == len(y) between x and y (leading zeros allowed)."""
    if x == y:
        return Lit(x)
    if len(x) == 1:
        return CharClass(((ord(x), ord(y)),))
    if x[0] == y[0]:
        return seq(Lit(x[0]), _digits_range(x[1:], y[1:]))
    k = len(x) - 1
    options = []
    first, last = int(x[0]), int(y[0])
    if x[1:] == "0" * k:
        full_from = first
    else:
        options.append(seq(Lit(x[0]), _digits_range(x[1:], "9" * k)))
        full_from = first + 1
    tail = None
    if y[1:] == "9" * k:
        full_to = last
    else:
        full_to = last - 1
        tail = seq(Lit(y[0]), _digits_range("0" * k, y[1:]))
    if full_from <= full_to:
        lead = Lit(str(full_from)) if full_from == full_to else CharClass(((48 + full_from, 48 + full_to),))
        options.append(seq(lead, Rep(DIGIT, k, k)))
    if tail is not None:
        options.append(tail)
    return alt(*options)


def _nonneg_int_range(lo: int, hi: Optional[int]) -> Node:
    """Canonical decimals (no leading zeros) of the integers in [lo, hi]."""
    options = []
    d_lo = len(str(lo))
    if hi is None:
        hi = 10 ** max(MAX_INT_DIGITS, d_lo) - 1
    full_run: List[int] = []  # consecutive digit counts whose whole range is included

    def flush() -> None:
        if full_run:
            options.append(seq(cc("1-9"), Rep(DIGIT, full_run[0] - 1, full_run[-1] - 1)))
            full_run.clear()

    for d in range(d_lo, len(str(hi)) + 1):
        a = max(lo, 10 ** (d - 1) if d > 1 else 0)
        b = min(hi, 10 ** d - 1)
        if a > b:
            continue
        if a == max(1, 10 ** (d - 1)) and b == 10 ** d - 1:
            full_run.append(d)
            continue
        flush()
        options.append(_digits_range(str(a), str(b)))
    flush()
    return alt(*options)


def _int_range(lo: Optional[int], hi: Optional[int]) -> Node:
    options = []
    if hi is None or hi >= 0:
        p_lo = 0 if (lo is None or lo < 0) else lo
        if hi is None or p_lo <= hi:
            options.append(_nonneg_int_range(p_lo, hi))
    if lo is None or lo < 0:
        a_lo = 1 if (hi is None or hi >= 0) else -hi
        a_hi = None if lo is None else -lo
        if a_hi is None or a_lo <= a_hi:
            options.append(seq(Lit("-"), _nonneg_int_range(a_lo, a_hi)))
    return alt(*options)


def _decimal_region(lo: int, lo_excl: bool, hi: Optional[int], hi_excl: bool, frac: int) -> Optional[Node]:
    """Non-negative decimals I[.F] with lo <(=) value <(=) hi (lo, hi integers).

    ``frac`` is the most fraction digits written; 0 means integers only.
    """
    if hi is not None and (hi < lo or (hi == lo and (lo_excl or hi_excl))):
        return None
    if frac <= 0:
        a = lo + 1 if lo_excl else lo
        b = None if hi is None else (hi - 1 if hi_excl else hi)
        return _nonneg_int_range(a, b) if (b is None or a <= b) else None
    frac_any = opt(seq(Lit("."), Rep(DIGIT, 1, frac)))
    frac_zero = opt(seq(Lit("."), Rep(Lit("0"), 1, frac)))
    frac_nonzero = seq(Lit("."), Rep(Lit("0"), 0, frac - 1), cc("1-9"), Rep(DIGIT, 0, frac - 1))
    if hi is not None and hi == lo:
        return seq(Lit(str(lo)), frac_zero)
    options = [seq(Lit(str(lo)), frac_nonzero if lo_excl else frac_any)]
    mid_hi = None if hi is None else hi - 1
    if mid_hi is None or lo + 1 <= mid_hi:
        options.append(seq(_nonneg_int_range(lo + 1, mid_hi), frac_any))
    if hi is not None and not hi_excl:
        options.append(seq(Lit(str(hi)), frac_zero))
    return alt(*options)


# --------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------


class _Converter:
    def __init__(self) -> None:
        self.rules: Dict[str, Optional[Node]] = {}
        self.used_names = set(RESERVED)
        self.helper_by_body: Dict[str, str] = {}
        self.fresh: set = set()
        self.ref_rules: Dict[Tuple[int, str], str] = {}
        self.doc: Any = None
        self.doc_key = 0
        self.prefix = ""
        self.charset_cache: Dict[Ranges, Node] = {}
        self.depth = 0
        self.visits = 0
        self.merged_rules: Dict[Tuple[int, str], str] = {}

    # -- rule table --------------------------------------------------------

    def reserve(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9-]+", "-", hint).strip("-") or "r"
        name = base
        k = 1
        while name in self.used_names:
            name = f"{base}-{k}"
            k += 1
        self.used_names.add(name)
        self.rules[name] = None
        return name

    def helper(self, hint: str, body: Node) -> str:
        key = gbnf.render_node(body)
        name = self.helper_by_body.get(key)
        if name is None:
            name = self.reserve(hint)
            self.rules[name] = body
            self.helper_by_body[key] = name
        return name

    def rename(self, old: str, new: str) -> None:
        for name, body in self.rules.items():
            if body is not None:
                self.rules[name] = _subst(body, old, new)
        for table in (self.ref_rules, self.merged_rules, self.helper_by_body):
            for k, v in table.items():
                if v == old:
                    table[k] = new

    def bind(self, name: str, body: Node) -> None:
        """Give the reserved rule ``name`` its body (absorbing a fresh alias)."""
        if isinstance(body, Ref) and body.name in self.fresh and body.name != name:
            target = body.name
            self.rules[name] = self.rules.pop(target)
            self.fresh.discard(target)
            self.rename(target, name)
        else:
            self.rules[name] = body

    def rep(self, item: Node, lo: int, hi: Optional[int], hint: str, path: str) -> Node:
        if hi is not None and hi < lo:
            raise _Unsatisfiable(f"at least {lo} but at most {hi} repetitions", path)
        if lo > REP_LIMIT:
            raise UnsupportedSchema(f"a minimum of {lo} repetitions (limit {REP_LIMIT})", path)
        if hi is not None and hi > REP_LIMIT:
            hi = REP_LIMIT
        if hi == 0:
            return EMPTY
        if lo == 1 and hi == 1:
            return item
        if not _atomic(item) and (lo > 1 or (hi is not None and hi > 1)):
            item = Ref(self.helper(hint + "-item", item))
        node = Rep(item, lo, hi)
        if max(lo, hi or 0) > INLINE_REP_LIMIT:
            node = Ref(self.helper(hint, node))
        return node

    def finish(self, roots: Sequence[str] = ("root",)) -> str:
        table: Dict[str, Node] = {}
        for name, body in self.rules.items():
            if body is not None:  # None: its schema turned out unsatisfiable
                table[name] = body
        for name, body in PRIMS.items():
            table.setdefault(name, body)
        table = _prune(table)
        for root in roots:
            if root not in table:
                raise _Unsatisfiable("the schema admits no finite JSON value (e.g. required recursion)", "#")
        # drop alias rules (``a ::= b``)
        aliases = [n for n, b in table.items() if isinstance(b, Ref) and n not in roots and n not in PRIMS]
        for name in aliases:
            target = table[name].name
            if target == name:
                continue
            del table[name]
            for other, body in table.items():
                table[other] = _subst(body, name, target)
        seen = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            body = table.get(name)
            if body is None:
                raise RuntimeError(f"internal error: rule {name!r} has no body")
            stack.extend(gbnf._refs(body))
        ordered = {n: table[n] for n in roots}
        for name in self.rules:
            if name in seen and name in table and name not in ordered:
                ordered[name] = table[name]
        for name in PRIMS:
            if name in seen and name not in ordered:
                ordered[name] = table[name]
        text = gbnf.render(ordered)
        try:
            grammar = gbnf.parse(text)
        except gbnf.GrammarError as e:
            if "left recursion" in str(e):
                raise UnsupportedSchema(f"a $ref cycle that consumes no input ({e.message})", "#") from e
            raise RuntimeError(f"internal error: generated grammar does not parse: {e}\n{text}") from e
        for root in roots:
            if not grammar.productive(root):
                raise _Unsatisfiable("the schema admits no finite JSON value (e.g. required recursion)", "#")
        return text

    # -- documents and $ref ------------------------------------------------

    def resolve(self, ref: Any, path: str) -> Tuple[Any, str]:
        if not isinstance(ref, str):
            raise UnsupportedSchema("$ref that is not a string", path)
        if ref != "#" and not ref.startswith("#/"):
            raise UnsupportedSchema(f"$ref {ref!r} (only local '#...' JSON pointers are supported)", path)
        from urllib.parse import unquote

        target = self.doc
        for raw in ref[2:].split("/") if ref != "#" else []:
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise UnsupportedSchema(f"$ref {ref!r} points to nothing", path)
        return target, ref

    def ref(self, ref: Any, path: str) -> Node:
        key = (self.doc_key, ref)
        if key in self.ref_rules:
            return Ref(self.ref_rules[key])
        target, tpath = self.resolve(ref, path)
        last = ref.rsplit("/", 1)[-1] if ref != "#" else "root"
        name = self.reserve(self.prefix + last)
        self.ref_rules[key] = name
        self.bind(name, self.visit(target, tpath, name))
        return Ref(name)

    # -- schema walking ----------------------------------------------------

    def check_keywords(self, schema: dict, path: str) -> None:
        for k in schema:
            if k in REJECTED:
                raise UnsupportedSchema(REJECTED[k], _ptr(path, k))

    @staticmethod
    def core(schema: dict) -> dict:
        return {k: v for k, v in schema.items() if k in HANDLED}

    def visit(self, schema: Any, path: str, hint: str) -> Node:
        self.depth += 1
        self.visits += 1
        try:
            if self.visits > 20000:
                raise UnsupportedSchema("schema too complex to convert (more than 20000 subschemas)", path)
            if self.depth > 200:
                raise UnsupportedSchema("schema nesting too deep (or a $ref that expands into itself)", path)
            return self._visit(schema, path, hint)
        finally:
            self.depth -= 1

    def _visit(self, schema: Any, path: str, hint: str) -> Node:
        if schema is True:
            return Ref("value")
        if schema is False:
            raise _Unsatisfiable("'false' schema", path)
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"schema of type {type(schema).__name__}", path)
        self.check_keywords(schema, path)
        core = self.core(schema)
        if not core:
            return Ref("value")
        if "$ref" in core:
            if len(core) == 1:
                return self.ref(core["$ref"], path)
            return self.visit_merged(core, path, hint)
        if "allOf" in core:
            members = core["allOf"]
            if not isinstance(members, list) or not members:
                raise UnsupportedSchema("'allOf' must be a non-empty array", path)
            if len(core) == 1 and len(members) == 1:
                return self.visit(members[0], _ptr(path, "allOf", 0), hint)
            return self.visit_merged(core, path, hint)
        if "anyOf" in core or "oneOf" in core:
            return self.visit_union(core, path, hint)
        if "enum" in core or "const" in core:
            return self.visit_enum(core, path, hint)
        options = [self.visit_type(t, core, path, hint) for t in self.types(core, path)]
        return alt(*options)

    def visit_merged(self, core: dict, path: str, hint: str) -> Node:
        """``$ref`` with siblings, or ``allOf``: merge, under a rule per distinct schema.

        The rule is what ends recursion: a merged schema that reappears inside
        itself (a ``$ref`` cycle through ``allOf``) refers back to the rule.
        """
        key = (self.doc_key, _canon(core))
        name = self.merged_rules.get(key)
        if name is not None:
            return Ref(name)
        name = self.reserve(hint)
        self.merged_rules[key] = name
        self.bind(name, self.visit(self.merge([core], path), path, hint))
        self.fresh.add(name)  # an enclosing $ref/root rule may absorb it
        return Ref(name)

    def visit_union(self, core: dict, path: str, hint: str) -> Node:
        key = "anyOf" if "anyOf" in core else "oneOf"
        branches = core.pop(key)
        if not isinstance(branches, list) or not branches:
            raise UnsupportedSchema(f"'{key}' must be a non-empty array", path)
        nodes, kept = [], []
        for i, branch in enumerate(branches):
            bpath = _ptr(path, key, i)
            try:
                merged = self.merge([branch, core], bpath) if core else branch
                nodes.append(self.visit(merged, bpath, f"{hint}-{i}" if len(branches) > 1 else hint))
                kept.append((bpath, merged))
            except _Unsatisfiable:
                continue
        if not nodes:
            raise _Unsatisfiable(f"no '{key}' branch can be satisfied", path)
        if key == "oneOf":
            for x in range(len(kept)):
                for y in range(x + 1, len(kept)):
                    if not self.disjoint(kept[x][1], kept[y][1]):
                        raise UnsupportedSchema(
                            f"'oneOf' whose branches {kept[x][0]} and {kept[y][0]} may overlap "
                            "(a value could match both; use anyOf or a const discriminator)", path)
        return alt(*nodes)

    def types(self, core: dict, path: str) -> List[str]:
        t = core.get("type", _MISSING)
        if t is _MISSING:
            keys = set(core)
            found = []
            if keys & _OBJECT_KEYS:
                found.append("object")
            if keys & _ARRAY_KEYS:
                found.append("array")
            if keys & _STRING_KEYS:
                found.append("string")
            if keys & _NUMBER_KEYS:
                found.append("number")
            if not found:
                found = ["object", "array", "string", "number", "boolean", "null"]
            return found
        types = [t] if isinstance(t, str) else t
        if not isinstance(types, list) or not types:
            raise UnsupportedSchema("'type' must be a string or a non-empty array", _ptr(path, "type"))
        out = []
        for x in types:
            if x not in TYPES:
                raise UnsupportedSchema(f"unknown type {x!r}", _ptr(path, "type"))
            if x not in out:
                out.append(x)
        if "number" in out and "integer" in out:
            out.remove("integer")
        return out

    def visit_type(self, t: str, core: dict, path: str, hint: str) -> Node:
        if t == "null":
            return Ref("null")
        if t == "boolean":
            return Ref("boolean")
        if t == "string":
            return self.visit_string(core, path, hint)
        if t in ("integer", "number"):
            return self.visit_number(core, path, t == "integer")
        if t == "object":
            return self.visit_object(core, path, hint)
        return self.visit_array(core, path, hint)

    # -- enum / const ------------------------------------------------------

    def visit_enum(self, core: dict, path: str, hint: str) -> Node:
        if "enum" in core:
            values = core["enum"]
            if not isinstance(values, list):
                raise UnsupportedSchema("'enum' must be an array", _ptr(path, "enum"))
            rest = {k: v for k, v in core.items() if k != "enum"}
        else:
            values = [core["const"]]
            rest = {k: v for k, v in core.items() if k != "const"}
        if rest:
            values = [v for v in values if self.valid(v, rest, path)]
        if not values:
            raise _Unsatisfiable("no 'enum'/'const' value satisfies the other keywords", path)
        node = alt(*(self.literal(v, path) for v in values))
        if len(values) > 4:  # a rule of its own, shared by identical enums
            node = Ref(self.helper(hint, node))
        return node

    def valid(self, value: Any, rest: dict, path: str) -> bool:
        if set(rest) == {"type"}:
            t = rest["type"]
            return any(_type_ok(value, x) for x in ([t] if isinstance(t, str) else t))
        import jsonschema

        check = dict(rest)
        if isinstance(self.doc, dict):
            for k in ("$defs", "definitions"):
                if k in self.doc:
                    check[k] = self.doc[k]
        try:
            cls = jsonschema.validators.validator_for(self.doc if isinstance(self.doc, dict) else {},
                                                      default=jsonschema.Draft202012Validator)
            validator = cls(check, format_checker=cls.FORMAT_CHECKER)
            return validator.is_valid(value)
        except Exception as e:  # unresolvable refs and the like
            raise UnsupportedSchema(f"'enum'/'const' next to keywords that cannot be checked ({e})", path)

    def literal(self, value: Any, path: str) -> Node:
        if value is None:
            return Lit("null")
        if value is True:
            return Lit("true")
        if value is False:
            return Lit("false")
        if isinstance(value, int):
            return Lit(str(value))
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UnsupportedSchema("non-finite number in 'enum'/'const'", path)
            return Lit(json.dumps(value))
        if isinstance(value, str):
            return Lit(_json_str(value))
        if isinstance(value, list):
            parts: List[Node] = [Lit("["), WS]
            for i, v in enumerate(value):
                if i:
                    parts += [Lit(","), WS]
                parts += [self.literal(v, path), WS]
            return seq(*parts, Lit("]"))
        if isinstance(value, dict):
            parts = [Lit("{"), WS]
            for i, (k, v) in enumerate(value.items()):
                if i:
                    parts += [Lit(","), WS]
                parts += [Lit(_json_str(k)), WS, Lit(":"), WS, self.literal(v, path), WS]
            return seq(*parts, Lit("}"))
        raise UnsupportedSchema(f"'enum'/'const' value of type {type(value).__name__}", path)

    # -- strings -------------------------------------------------------------

    def visit_string(self, core: dict, path: str, hint: str) -> Node:
        min_len = core.get("minLength", 0)
        max_len = core.get("maxLength")
        for k, v in (("minLength", min_len), ("maxLength", max_len)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise UnsupportedSchema(f"'{k}' must be a non-negative integer", _ptr(path, k))
        if max_len is not None and max_len < min_len:
            raise _Unsatisfiable("maxLength < minLength", path)
        fmt = core.get("format")
        pattern = core.get("pattern")
        if fmt is not None and pattern is not None:
            raise UnsupportedSchema("'format' together with 'pattern'", path)
        if fmt is not None:
            if fmt not in FORMATS:
                raise UnsupportedSchema(f"format {fmt!r} (supported: {', '.join(FORMATS)})", _ptr(path, "format"))
            rule, lo, hi = FORMATS[fmt]
            if min_len > lo or (max_len is not None and (hi is None or hi > max_len)):
                raise UnsupportedSchema(f"format {fmt!r} with minLength/maxLength it does not already meet", path)
            return seq(Lit('"'), Ref(rule), Lit('"'))
        if pattern is not None:
            if not isinstance(pattern, str):
                raise UnsupportedSchema("'pattern' must be a string", _ptr(path, "pattern"))
            ppath = _ptr(path, "pattern")
            ast = _Regex(pattern, ppath).parse()
            if min_len:
                raised = _re_raise_min(ast, min_len)
                if raised is None:
                    raise UnsupportedSchema(f"pattern {pattern!r} with minLength {min_len}", path)
                ast = raised
            if max_len is not None:
                if _re_len(ast)[0] > max_len:
                    raise UnsupportedSchema(f"pattern {pattern!r} with maxLength {max_len}", path)
                ast = _re_tighten(ast, max_len)
            lo, hi = _re_len(ast)
            if lo < min_len or (max_len is not None and (hi is None or hi > max_len)):  # pragma: no cover
                raise UnsupportedSchema(f"pattern {pattern!r} with minLength/maxLength", path)
            return seq(Lit('"'), self.regex_node(ast, hint + "-pattern", ppath), Lit('"'))
        if min_len == 0 and max_len is None:
            return Ref("string")
        return seq(Lit('"'), self.rep(Ref("char"), min_len, max_len, hint + "-chars", path), Lit('"'))

    def regex_node(self, node, hint: str, path: str) -> Node:
        kind = node[0]
        if kind == "set":
            return self.json_chars(node[1], path)
        if kind == "seq":
            return seq(*(self.regex_node(i, hint, path) for i in node[1]))
        if kind == "alt":
            return alt(*(self.regex_node(b, hint, path) for b in node[1]))
        _, item, lo, hi = node
        return self.rep(self.regex_node(item, hint, path), lo, hi, hint, path)

    def json_chars(self, ranges: Ranges, path: str) -> Node:
        """One character from ``ranges``, as it is written inside a JSON string."""
        cached = self.charset_cache.get(ranges)
        if cached is not None:
            return cached
        options: List[Node] = []
        raw = _intersect(ranges, _RAW_OK)
        if raw:
            if len(raw) == 1 and raw[0][0] == raw[0][1]:
                options.append(Lit(chr(raw[0][0])))
            elif _size(raw) > 0x10000:
                options.append(CharClass(_complement(raw, ((0, 0xD7FF), (0xE000, 0x10FFFF))), negated=True))
            else:
                options.append(CharClass(raw))
        if _contains(ranges, 0x22):
            options.append(Lit('\\"'))
        if _contains(ranges, 0x5C):
            options.append(Lit("\\\\"))
        controls = [o for o in range(0x20) if _contains(ranges, o)]
        if len(controls) > 3:  # from '.', negations: keep the usual ones
            controls = [o for o in controls if o in (9, 10, 13)]
        for o in controls:
            options.append(Lit(_JSON_CONTROL.get(o, f"\\u{o:04x}")))
        if not options:
            raise UnsupportedSchema("pattern character class with no usable character", path)
        node = alt(*options)
        self.charset_cache[ranges] = node
        return node

    # -- numbers -------------------------------------------------------------

    def visit_number(self, core: dict, path: str, is_int: bool) -> Node:
        mult = core.get("multipleOf")
        if mult is not None:
            if _is_num(mult) and mult == 1:
                is_int = True
            else:
                raise UnsupportedSchema(f"'multipleOf' {mult!r} (only 1 is supported)", _ptr(path, "multipleOf"))
        lower: Optional[Tuple[Any, bool]] = None
        upper: Optional[Tuple[Any, bool]] = None

        def tighter_lower(a, b):
            if a is None:
                return b
            if b[0] > a[0] or (b[0] == a[0] and b[1]):
                return b
            return a

        def tighter_upper(a, b):
            if a is None:
                return b
            if b[0] < a[0] or (b[0] == a[0] and b[1]):
                return b
            return a

        emin, emax = core.get("exclusiveMinimum"), core.get("exclusiveMaximum")
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            v = core.get(key)
            if v is None or isinstance(v, bool):
                continue
            if not _is_num(v) or not math.isfinite(v):
                raise UnsupportedSchema(f"'{key}' must be a finite number", _ptr(path, key))
        if _is_num(core.get("minimum")):
            lower = tighter_lower(lower, (core["minimum"], emin is True))
        if _is_num(emin):
            lower = tighter_lower(lower, (emin, True))
        if _is_num(core.get("maximum")):
            upper = tighter_upper(upper, (core["maximum"], emax is True))
        if _is_num(emax):
            upper = tighter_upper(upper, (emax, True))
        if lower is None and upper is None:
            return Ref("integer" if is_int else "number")
        if is_int:
            lo = hi = None
            if lower is not None:
                v, excl = lower
                lo = math.floor(v) + 1 if excl else math.ceil(v)
            if upper is not None:
                v, excl = upper
                hi = math.ceil(v) - 1 if excl else math.floor(v)
            if lo is not None and hi is not None and lo > hi:
                raise _Unsatisfiable("no integer between minimum and maximum", path)
            return _int_range(lo, hi)
        for bound in (lower, upper):
            if bound is not None and not float(bound[0]).is_integer():
                raise UnsupportedSchema("non-integral minimum/maximum on a 'number' (integral bounds only)", path)
        L = None if lower is None else (int(lower[0]), lower[1])
        U = None if upper is None else (int(upper[0]), upper[1])
        digits = max((len(str(abs(b[0]))) for b in (L, U) if b is not None), default=1)
        # At most 15 significant digits near a bound, so parsing to a double
        # cannot round a value onto (or past) the bound; 0: integers only.
        frac = 15 - digits
        options = []
        # v >= 0, written without a sign
        if U is None or U[0] > 0 or (U[0] == 0 and not U[1]):
            plo = (0, False) if (L is None or L[0] < 0) else L
            region = _decimal_region(plo[0], plo[1], None if U is None else U[0], bool(U and U[1]), frac)
            if region is not None:
                options.append(region)
        # v < 0, written as "-" |v|
        if L is None or L[0] < 0:
            alo = (-U[0], U[1]) if (U is not None and U[0] < 0) else (0, True)
            ahi = None if L is None else L
            region = _decimal_region(alo[0], alo[1], None if ahi is None else -ahi[0], bool(ahi and ahi[1]), frac)
            if region is not None:
                options.append(seq(Lit("-"), region))
        if not options:
            raise _Unsatisfiable("no number between minimum and maximum", path)
        return alt(*options)

    # -- objects -------------------------------------------------------------

    def visit_object(self, core: dict, path: str, hint: str) -> Node:
        props = core.get("properties", {})
        if not isinstance(props, dict):
            raise UnsupportedSchema("'properties' must be an object", _ptr(path, "properties"))
        required = core.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise UnsupportedSchema("'required' must be an array of strings", _ptr(path, "required"))
        required = list(dict.fromkeys(required))
        if "additionalProperties" in core:
            extra_schema = core["additionalProperties"]
        else:
            extra_schema = False if "properties" in core else True
        if extra_schema == {}:
            extra_schema = True
        min_p = core.get("minProperties", 0)
        max_p = core.get("maxProperties")
        if not props and not required and extra_schema is True and not min_p and max_p is None:
            return Ref("object")

        entries: List[Tuple[str, Any, bool, str]] = []
        for key, sub in props.items():
            if sub is False:
                if key in required:
                    raise _Unsatisfiable(f"required property {key!r} has schema false", path)
                continue
            entries.append((key, sub, key in required, _ptr(path, "properties", key)))
        for key in required:
            if key not in props:
                if extra_schema is False:
                    raise _Unsatisfiable(f"required property {key!r} is not allowed", path)
                entries.append((key, extra_schema, True, _ptr(path, "additionalProperties")))
        n_required = sum(1 for e in entries if e[2])
        if min_p and min_p > n_required:
            raise UnsupportedSchema("'minProperties' above the number of required properties", path)
        if max_p is not None and (extra_schema is not False or len(entries) > max_p):
            raise UnsupportedSchema("'maxProperties' below the number of properties that may appear", path)

        name = self.reserve(hint)
        self.fresh.add(name)
        kvs: List[Tuple[Node, bool]] = []
        for key, sub, req, ppath in entries:
            try:
                value = self.visit(sub, ppath, f"{hint}-{key}")
            except _Unsatisfiable:
                if req:
                    raise
                continue  # an optional property that can never be valid: leave it out
            kv = seq(Lit(_json_str(key)), WS, Lit(":"), WS, value, WS)
            kvs.append((Ref(self.helper(f"{hint}-{key}-kv", kv)), req))
        extra = None
        if extra_schema is not False:
            try:
                value = Ref("value") if extra_schema is True else self.visit(
                    extra_schema, _ptr(path, "additionalProperties"), f"{hint}-additional")
                key_node = self.extra_key([e[0] for e in entries])
                extra = Ref(self.helper(f"{hint}-additional-kv", seq(key_node, WS, Lit(":"), WS, value, WS)))
            except _Unsatisfiable:
                extra = None
        self.rules[name] = self.object_body(kvs, extra, hint)
        return Ref(name)

    def extra_key(self, names: List[str]) -> Node:
        """A JSON string key, written without escapes, that is none of ``names``."""
        names = [n for n in names if not any(c in '"\\' or ord(c) < 0x20 for c in n)]
        if not names:
            return Ref("string")
        trie: dict = {}
        for n in names:
            t = trie
            for c in n:
                t = t.setdefault(c, {})
            t[None] = True

        def notin(t: dict) -> Node:
            options: List[Node] = []
            if None not in t:
                options.append(EMPTY)
            children = sorted(c for c in t if c is not None)
            for c in children:
                options.append(seq(Lit(c), notin(t[c])))
            excluded = _norm([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)] + [(ord(c), ord(c)) for c in children])
            options.append(seq(CharClass(excluded, negated=True), Rep(RAW_CHAR, 0, None)))
            return alt(*options)

        return seq(Lit('"'), notin(trie), Lit('"'))

    def object_body(self, kvs: List[Tuple[Node, bool]], extra: Optional[Node], hint: str) -> Node:
        def comma(x: Node) -> Node:
            return seq(Lit(","), WS, x)

        items: List[Node] = [comma(kv) if req else opt(comma(kv)) for kv, req in kvs]
        if extra is not None:
            items.append(Rep(comma(extra), 0, None))
        n = len(kvs)
        starts: List[Tuple[Node, int]] = []  # (first item, index where the rest starts)
        for j, (kv, req) in enumerate(kvs):
            starts.append((kv, j + 1))
            if req:
                break
        else:
            if extra is not None:
                starts.append((extra, n))
        if not starts:
            return seq(Lit("{"), WS, Lit("}"))

        if len(starts) > 2:
            # chain rules keep the grammar linear in the number of properties
            rest: List[Optional[Node]] = [None] * (len(items) + 1)
            for j in range(len(items) - 1, -1, -1):
                body = items[j] if rest[j + 1] is None else seq(items[j], rest[j + 1])
                rest[j] = Ref(self.helper(f"{hint}-rest-{j}", body))

            def tail(j: int) -> Node:
                return rest[j] if j < len(items) and rest[j] is not None else EMPTY
        else:
            def tail(j: int) -> Node:
                return seq(*items[j:])

        content = alt(*(seq(first, tail(j)) for first, j in starts))
        if any(req for _, req in kvs):
            return seq(Lit("{"), WS, content, Lit("}"))
        return seq(Lit("{"), WS, opt(content), Lit("}"))

    # -- arrays --------------------------------------------------------------

    def visit_array(self, core: dict, path: str, hint: str) -> Node:
        prefix = core.get("prefixItems", [])
        if not isinstance(prefix, list):
            raise UnsupportedSchema("'prefixItems' must be an array", _ptr(path, "prefixItems"))
        items = core.get("items", _MISSING)
        if isinstance(items, list):
            raise UnsupportedSchema("'items' given as an array (tuple form; use 'prefixItems')", _ptr(path, "items"))
        if items == {}:
            items = True
        mn = core.get("minItems", 0)
        mx = core.get("maxItems")
        for k, v in (("minItems", mn), ("maxItems", mx)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise UnsupportedSchema(f"'{k}' must be a non-negative integer", _ptr(path, k))
        if core.get("uniqueItems") is True and (mx is None or mx > 1):
            raise UnsupportedSchema("'uniqueItems' (unless maxItems <= 1)", _ptr(path, "uniqueItems"))
        if mx is not None and mx < mn:
            raise _Unsatisfiable("maxItems < minItems", path)
        if not prefix and items in (_MISSING, True) and mn == 0 and mx is None:
            return Ref("array")

        name = self.reserve(hint)
        self.fresh.add(name)
        t = len(prefix) if mx is None else min(len(prefix), mx)
        pnodes: List[Node] = []
        truncated = False
        for i in range(t):
            try:
                pnodes.append(self.visit(prefix[i], _ptr(path, "prefixItems", i), f"{hint}-{i}"))
            except _Unsatisfiable:
                if i < mn:
                    raise
                t, truncated = i, True  # nothing can stand at position i: stop before it
                break
        lo_x = max(0, mn - t)
        xnode: Optional[Node] = None
        if items is False:
            hi_x: Optional[int] = 0
        elif items is _MISSING or items is True:
            xnode = Ref("value")
            hi_x = None if not prefix else lo_x
        else:
            hi_x = None
            try:
                xnode = self.visit(items, _ptr(path, "items"), f"{hint}-item")
            except _Unsatisfiable:
                hi_x = 0
        if mx is not None:
            hi_x = mx - t if hi_x is None else min(hi_x, mx - t)
        if truncated:
            hi_x = 0
        if hi_x is not None and lo_x > hi_x:
            raise _Unsatisfiable("more items required than allowed", path)

        parts: List[Node] = [Lit("["), WS]
        for i, p in enumerate(pnodes[:t]):
            if i:
                parts += [Lit(","), WS]
            parts += [p, WS]
        if xnode is not None and hi_x != 0:
            more = seq(Lit(","), WS, xnode, WS)
            if t:
                parts.append(self.rep(more, lo_x, hi_x, f"{hint}-more", path))
            else:
                first = seq(xnode, WS, self.rep(more, max(lo_x - 1, 0), None if hi_x is None else hi_x - 1,
                                                f"{hint}-more", path))
                parts.append(first if lo_x >= 1 else opt(first))
        parts.append(Lit("]"))
        self.rules[name] = seq(*parts)
        return Ref(name)

    # -- allOf merging -------------------------------------------------------

    def flatten(self, schemas: List[Any], path: str, seen: frozenset) -> List[dict]:
        out: List[dict] = []
        for s in schemas:
            if s is True:
                continue
            if s is False:
                raise _Unsatisfiable("'false' schema in 'allOf'", path)
            if not isinstance(s, dict):
                raise UnsupportedSchema(f"schema of type {type(s).__name__}", path)
            self.check_keywords(s, path)
            s = self.core(s)
            if "$ref" in s:
                ref = s.pop("$ref")
                if ref in seen:
                    raise UnsupportedSchema(f"circular $ref {ref!r} through 'allOf'", path)
                target, _ = self.resolve(ref, path)
                out += self.flatten([target], path, seen | {ref})
            if "allOf" in s:
                members = s.pop("allOf")
                if not isinstance(members, list):
                    raise UnsupportedSchema("'allOf' must be an array", path)
                out += self.flatten(members, path, seen)
            if s:
                out.append(s)
        return out

    def merge(self, schemas: List[Any], path: str) -> Any:
        """One schema equivalent to allOf(schemas) (``$ref``/``allOf`` expanded)."""
        parts, seen_parts = [], set()
        for part in self.flatten(schemas, path, frozenset()):
            key = _canon(part)
            if key not in seen_parts:
                seen_parts.add(key)
                parts.append(part)
        if not parts:
            return True
        if len(parts) == 1:
            return parts[0]
        out: Dict[str, Any] = {}
        # objects: a property must satisfy every part (declared schema, or
        # that part's additionalProperties when it does not declare it)
        if any("properties" in p or "additionalProperties" in p for p in parts):
            order: List[str] = []
            for p in parts:
                for k in p.get("properties", {}) or {}:
                    if k not in order:
                        order.append(k)
            props: Dict[str, Any] = {}
            for k in order:
                subs, forbidden = [], False
                for p in parts:
                    declared = p.get("properties", {}) or {}
                    if k in declared:
                        subs.append(declared[k])
                    elif "additionalProperties" in p:
                        extra = p["additionalProperties"]
                        if extra is False:
                            forbidden = True
                        elif extra is not True:
                            subs.append(extra)
                props[k] = False if forbidden else (subs[0] if len(subs) == 1 else {"allOf": subs})
            if any("properties" in p for p in parts):
                out["properties"] = props
            extras = [p["additionalProperties"] for p in parts if "additionalProperties" in p]
            if extras:
                if any(e is False for e in extras):
                    out["additionalProperties"] = False
                else:
                    schemas_ = [e for e in extras if e is not True]
                    out["additionalProperties"] = (True if not schemas_ else
                                                   schemas_[0] if len(schemas_) == 1 else {"allOf": schemas_})
        # arrays: position i must satisfy every part's schema for position i
        if any("prefixItems" in p or "items" in p for p in parts):
            width = max(len(p.get("prefixItems") or []) for p in parts)

            def at(p: dict, i: Optional[int]) -> Any:
                prefix = p.get("prefixItems") or []
                if i is not None and i < len(prefix):
                    return prefix[i]
                return p.get("items", True)

            def both(subs: List[Any]) -> Any:
                subs = [x for x in subs if x is not True]
                if any(x is False for x in subs):
                    return False
                return True if not subs else subs[0] if len(subs) == 1 else {"allOf": subs}

            if width:
                out["prefixItems"] = [both([at(p, i) for p in parts]) for i in range(width)]
            if any("items" in p for p in parts):
                out["items"] = both([at(p, None) for p in parts])
        for p in parts:
            for k, v in p.items():
                if k in ("properties", "additionalProperties", "items", "prefixItems"):
                    continue
                if k not in out:
                    out[k] = v
                    continue
                out[k] = self.combine(k, out[k], v, path)
        return out

    def combine(self, k: str, a: Any, b: Any, path: str) -> Any:
        if a == b and type(a) is type(b):
            return a
        if k == "type":
            sa = {a} if isinstance(a, str) else set(a)
            sb = {b} if isinstance(b, str) else set(b)
            both = sa & sb
            if ("integer" in sa and "number" in sb) or ("number" in sa and "integer" in sb):
                both.add("integer")
            if not both:
                raise _Unsatisfiable(f"'allOf' with incompatible types {a!r} and {b!r}", path)
            return [t for t in TYPES if t in both]
        if k == "required":
            return list(a) + [x for x in b if x not in a]
        if k in ("minLength", "minItems", "minProperties", "minimum"):
            return max(a, b)
        if k in ("maxLength", "maxItems", "maxProperties", "maximum"):
            return min(a, b)
        if k in ("exclusiveMinimum", "exclusiveMaximum") and _is_num(a) and _is_num(b):
            return max(a, b) if k == "exclusiveMinimum" else min(a, b)
        if k == "enum":
            kb = {_canon(x) for x in b}
            return [x for x in a if _canon(x) in kb]
        if k == "const":
            if _canon(a) != _canon(b):
                raise _Unsatisfiable("'allOf' with different 'const' values", path)
            return a
        if k == "uniqueItems":
            return bool(a) or bool(b)
        if k == "anyOf":
            return [{"allOf": [x, y]} for x in a for y in b]
        if k == "unevaluatedProperties":
            return a
        raise UnsupportedSchema(f"'allOf' members with different '{k}' values", path)

    # -- oneOf disjointness --------------------------------------------------

    def shallow(self, schema: Any) -> Any:
        try:
            if isinstance(schema, dict) and ("$ref" in schema or "allOf" in schema):
                return self.merge([schema], "#")
        except UnsupportedSchema:
            return {}
        return schema if isinstance(schema, dict) else {}

    def kinds(self, s: dict) -> set:
        def kind_of(v):
            if v is None:
                return "null"
            if isinstance(v, bool):
                return "boolean"
            if _is_num(v):
                return "number"
            return {str: "string", list: "array", dict: "object"}.get(type(v), "?")

        if "const" in s:
            return {kind_of(s["const"])}
        if "enum" in s and isinstance(s["enum"], list):
            return {kind_of(v) for v in s["enum"]}
        if "anyOf" in s or "oneOf" in s:
            return {"null", "boolean", "number", "string", "array", "object"}
        try:
            types = self.types(s, "#")
        except UnsupportedSchema:
            return {"null", "boolean", "number", "string", "array", "object"}
        return {"number" if t == "integer" else t for t in types}

    def literals(self, s: Any) -> Optional[set]:
        s = self.shallow(s)
        if "const" in s:
            return {_canon(s["const"])}
        if "enum" in s and isinstance(s["enum"], list):
            return {_canon(v) for v in s["enum"]}
        return None

    def disjoint(self, a: Any, b: Any) -> bool:
        a, b = self.shallow(a), self.shallow(b)
        if not self.kinds(a) & self.kinds(b):
            return True
        la, lb = self.literals(a), self.literals(b)
        if la is not None and lb is not None and not la & lb:
            return True
        pa, pb = a.get("properties") or {}, b.get("properties") or {}
        ra, rb = set(a.get("required") or []), set(b.get("required") or [])
        for key in ra & rb:
            va = self.literals(pa[key]) if key in pa else None
            vb = self.literals(pb[key]) if key in pb else None
            if va is not None and vb is not None and not va & vb:
                return True
        if a.get("additionalProperties") is False and rb - set(pa):
            return True
        if b.get("additionalProperties") is False and ra - set(pb):
            return True
        return False

    # -- entry points --------------------------------------------------------

    def convert_root(self, schema: Any) -> None:
        self.doc = schema
        self.rules["root"] = None
        self.ref_rules[(self.doc_key, "#")] = "root"
        self.bind("root", self.visit(schema, "#", "root"))


def schema_to_gbnf(schema: Any) -> str:
    """GBNF (start rule ``root``) for JSON documents valid against ``schema``.

    Raises :class:`UnsupportedSchema` for schemas that use features the
    grammar cannot enforce (see the module docstring).
    """
    conv = _Converter()
    conv.convert_root(schema)
    return conv.finish()


def _tool_function(tool: Any, index: int) -> Tuple[str, Any]:
    if not isinstance(tool, dict):
        raise ValueError(f"tools[{index}] must be an object")
    fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
    if not isinstance(fn, dict):
        raise ValueError(f"tools[{index}] is not a function tool")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tools[{index}] has no function name")
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    return name, params


def tool_call_gbnf(tools: List[dict], *, allow_parallel: bool) -> str:
    """GBNF for a call of one of ``tools`` (OpenAI ``tools`` entries or bare functions).

    Output shape: ``{"name": "<tool name>", "arguments": {...}}`` where the
    arguments validate against that tool's ``parameters``; with
    ``allow_parallel``, a JSON array of one or more such objects.
    """
    if not isinstance(tools, list) or not tools:
        raise ValueError("tools must be a non-empty list")
    conv = _Converter()
    conv.rules["root"] = None
    calls: List[Node] = []
    seen_names = set()
    for i, tool in enumerate(tools):
        name, params = _tool_function(tool, i)
        if name in seen_names:
            raise ValueError(f"duplicate tool name {name!r}")
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
        call = seq(Lit("{"), WS, Lit('"name"'), WS, Lit(":"), WS, Lit(_json_str(name)), WS, Lit(","), WS,
                   Lit('"arguments"'), WS, Lit(":"), WS, Ref(args_name), WS, Lit("}"))
        call_name = conv.reserve(hint + "-call")
        conv.rules[call_name] = call
        calls.append(Ref(call_name))
    one = alt(*calls)
    if allow_parallel:
        if len(calls) > 1:
            one = Ref(conv.helper("call", one))
        conv.rules["root"] = seq(Lit("["), WS, one, WS, Rep(seq(Lit(","), WS, one, WS), 0, None), Lit("]"))
    else:
        conv.rules["root"] = one
    return conv.finish()


def _json_object_gbnf() -> str:
    conv = _Converter()
    conv.rules["root"] = Ref("object")
    return conv.finish()


JSON_OBJECT_GBNF: str = _json_object_gbnf()
