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
``UnsupportedSchema``                  (localai.errors) names the feature and its path

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

Patterns: the regex subset of ``localai.grammar.regex``.  An unanchored pattern is generated
as if anchored: a full match is also a search match, so the output stays valid.  With
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

from localai.errors import GrammarError, LeftRecursion, Unsatisfiable, UnsupportedSchema
from localai.grammar import gbnf
from localai.grammar.gbnf import EMPTY, Alt, AnyChar, CharClass, Lit, Node, Ref, Rep, Seq, alt, opt, seq
from localai.grammar.json_keywords import (ARRAY_KEYS, HANDLED, MISSING, NUMBER_KEYS, OBJECT_KEYS, REJECTED,
                                           STRING_KEYS, TYPES, canon, is_num, ptr, type_ok)
from localai.grammar.json_rules import FORMATS, PRIMS, RAW_CHAR, RESERVED, WS, json_str
from localai.grammar.numeric import decimal_region, int_range
from localai.grammar.regex import (JSON_CONTROL, RAW_OK, Ranges, Regex, complement, contains, intersect, norm, re_len,
                                   re_raise_min, re_tighten, size)
from localai.grammar.schema_algebra import SchemaAlgebra

__all__ = ["SchemaConverter", "schema_to_gbnf", "JSON_OBJECT_GBNF"]

REP_LIMIT = gbnf.MAX_REPETITION_THRESHOLD - 1  # largest count llama.cpp accepts
INLINE_REP_LIMIT = 64  # bigger repetitions get a rule of their own


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
            h = gbnf.height(body, heights)
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


def _atomic(node: Node) -> bool:
    return isinstance(node, (Ref, Lit, CharClass, AnyChar))



class SchemaConverter(SchemaAlgebra):
    """Builds one grammar: a rule table filled by visiting schemas, rendered by ``finish``."""

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
            raise Unsatisfiable(f"at least {lo} but at most {hi} repetitions", path)
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
                raise Unsatisfiable("the schema admits no finite JSON value (e.g. required recursion)", "#")
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
            stack.extend(gbnf.refs(body))
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
        except GrammarError as e:
            if isinstance(e, LeftRecursion):
                raise UnsupportedSchema(f"a $ref cycle that consumes no input ({e.reason})", "#") from e
            # the only other refusal of a generated grammar: it is beyond our grammar limits
            raise UnsupportedSchema(f"the grammar it needs is too large ({e.reason})", "#") from e
        for root in roots:
            if not grammar.productive(root):
                raise Unsatisfiable("the schema admits no finite JSON value (e.g. required recursion)", "#")
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
                raise UnsupportedSchema(REJECTED[k], ptr(path, k))

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
            raise Unsatisfiable("'false' schema", path)
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
                return self.visit(members[0], ptr(path, "allOf", 0), hint)
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
        key = (self.doc_key, canon(core))
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
            bpath = ptr(path, key, i)
            try:
                merged = self.merge([branch, core], bpath) if core else branch
                nodes.append(self.visit(merged, bpath, f"{hint}-{i}" if len(branches) > 1 else hint))
                kept.append((bpath, merged))
            except Unsatisfiable:
                continue
        if not nodes:
            raise Unsatisfiable(f"no '{key}' branch can be satisfied", path)
        if key == "oneOf":
            for x in range(len(kept)):
                for y in range(x + 1, len(kept)):
                    if not self.disjoint(kept[x][1], kept[y][1]):
                        raise UnsupportedSchema(
                            f"'oneOf' whose branches {kept[x][0]} and {kept[y][0]} may overlap "
                            "(a value could match both; use anyOf or a const discriminator)", path)
        return alt(*nodes)

    def types(self, core: dict, path: str) -> List[str]:
        t = core.get("type", MISSING)
        if t is MISSING:
            keys = set(core)
            found = []
            if keys & OBJECT_KEYS:
                found.append("object")
            if keys & ARRAY_KEYS:
                found.append("array")
            if keys & STRING_KEYS:
                found.append("string")
            if keys & NUMBER_KEYS:
                found.append("number")
            if not found:
                found = ["object", "array", "string", "number", "boolean", "null"]
            return found
        types = [t] if isinstance(t, str) else t
        if not isinstance(types, list) or not types:
            raise UnsupportedSchema("'type' must be a string or a non-empty array", ptr(path, "type"))
        out = []
        for x in types:
            if x not in TYPES:
                raise UnsupportedSchema(f"unknown type {x!r}", ptr(path, "type"))
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
                raise UnsupportedSchema("'enum' must be an array", ptr(path, "enum"))
            rest = {k: v for k, v in core.items() if k != "enum"}
        else:
            values = [core["const"]]
            rest = {k: v for k, v in core.items() if k != "const"}
        if rest:
            values = [v for v in values if self.valid(v, rest, path)]
        if not values:
            raise Unsatisfiable("no 'enum'/'const' value satisfies the other keywords", path)
        node = alt(*(self.literal(v, path) for v in values))
        if len(values) > 4:  # a rule of its own, shared by identical enums
            node = Ref(self.helper(hint, node))
        return node

    def valid(self, value: Any, rest: dict, path: str) -> bool:
        if set(rest) == {"type"}:
            t = rest["type"]
            return any(type_ok(value, x) for x in ([t] if isinstance(t, str) else t))
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
            return Lit(json_str(value))
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
                parts += [Lit(json_str(k)), WS, Lit(":"), WS, self.literal(v, path), WS]
            return seq(*parts, Lit("}"))
        raise UnsupportedSchema(f"'enum'/'const' value of type {type(value).__name__}", path)

    # -- strings -------------------------------------------------------------

    def visit_string(self, core: dict, path: str, hint: str) -> Node:
        min_len = core.get("minLength", 0)
        max_len = core.get("maxLength")
        for k, v in (("minLength", min_len), ("maxLength", max_len)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise UnsupportedSchema(f"'{k}' must be a non-negative integer", ptr(path, k))
        if max_len is not None and max_len < min_len:
            raise Unsatisfiable("maxLength < minLength", path)
        fmt = core.get("format")
        pattern = core.get("pattern")
        if fmt is not None and pattern is not None:
            raise UnsupportedSchema("'format' together with 'pattern'", path)
        if fmt is not None:
            if fmt not in FORMATS:
                raise UnsupportedSchema(f"format {fmt!r} (supported: {', '.join(FORMATS)})", ptr(path, "format"))
            rule, lo, hi = FORMATS[fmt]
            if min_len > lo or (max_len is not None and (hi is None or hi > max_len)):
                raise UnsupportedSchema(f"format {fmt!r} with minLength/maxLength it does not already meet", path)
            return seq(Lit('"'), Ref(rule), Lit('"'))
        if pattern is not None:
            if not isinstance(pattern, str):
                raise UnsupportedSchema("'pattern' must be a string", ptr(path, "pattern"))
            ppath = ptr(path, "pattern")
            ast = Regex(pattern, ppath).parse()
            if min_len:
                raised = re_raise_min(ast, min_len)
                if raised is None:
                    raise UnsupportedSchema(f"pattern {pattern!r} with minLength {min_len}", path)
                ast = raised
            if max_len is not None:
                if re_len(ast)[0] > max_len:
                    raise UnsupportedSchema(f"pattern {pattern!r} with maxLength {max_len}", path)
                ast = re_tighten(ast, max_len)
            lo, hi = re_len(ast)
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
        raw = intersect(ranges, RAW_OK)
        if raw:
            if len(raw) == 1 and raw[0][0] == raw[0][1]:
                options.append(Lit(chr(raw[0][0])))
            elif size(raw) > 0x10000:
                options.append(CharClass(complement(raw, ((0, 0xD7FF), (0xE000, 0x10FFFF))), negated=True))
            else:
                options.append(CharClass(raw))
        if contains(ranges, 0x22):
            options.append(Lit('\\"'))
        if contains(ranges, 0x5C):
            options.append(Lit("\\\\"))
        controls = [o for o in range(0x20) if contains(ranges, o)]
        if len(controls) > 3:  # from '.', negations: keep the usual ones
            controls = [o for o in controls if o in (9, 10, 13)]
        for o in controls:
            options.append(Lit(JSON_CONTROL.get(o, f"\\u{o:04x}")))
        if not options:
            raise UnsupportedSchema("pattern character class with no usable character", path)
        node = alt(*options)
        self.charset_cache[ranges] = node
        return node

    # -- numbers -------------------------------------------------------------

    def visit_number(self, core: dict, path: str, is_int: bool) -> Node:
        mult = core.get("multipleOf")
        if mult is not None:
            if is_num(mult) and mult == 1:
                is_int = True
            else:
                raise UnsupportedSchema(f"'multipleOf' {mult!r} (only 1 is supported)", ptr(path, "multipleOf"))
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
            if not is_num(v) or not math.isfinite(v):
                raise UnsupportedSchema(f"'{key}' must be a finite number", ptr(path, key))
        if is_num(core.get("minimum")):
            lower = tighter_lower(lower, (core["minimum"], emin is True))
        if is_num(emin):
            lower = tighter_lower(lower, (emin, True))
        if is_num(core.get("maximum")):
            upper = tighter_upper(upper, (core["maximum"], emax is True))
        if is_num(emax):
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
                raise Unsatisfiable("no integer between minimum and maximum", path)
            return int_range(lo, hi)
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
            region = decimal_region(plo[0], plo[1], None if U is None else U[0], bool(U and U[1]), frac)
            if region is not None:
                options.append(region)
        # v < 0, written as "-" |v|
        if L is None or L[0] < 0:
            alo = (-U[0], U[1]) if (U is not None and U[0] < 0) else (0, True)
            ahi = None if L is None else L
            region = decimal_region(alo[0], alo[1], None if ahi is None else -ahi[0], bool(ahi and ahi[1]), frac)
            if region is not None:
                options.append(seq(Lit("-"), region))
        if not options:
            raise Unsatisfiable("no number between minimum and maximum", path)
        return alt(*options)

    # -- objects -------------------------------------------------------------

    def visit_object(self, core: dict, path: str, hint: str) -> Node:
        props = core.get("properties", {})
        if not isinstance(props, dict):
            raise UnsupportedSchema("'properties' must be an object", ptr(path, "properties"))
        required = core.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise UnsupportedSchema("'required' must be an array of strings", ptr(path, "required"))
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
                    raise Unsatisfiable(f"required property {key!r} has schema false", path)
                continue
            entries.append((key, sub, key in required, ptr(path, "properties", key)))
        for key in required:
            if key not in props:
                if extra_schema is False:
                    raise Unsatisfiable(f"required property {key!r} is not allowed", path)
                entries.append((key, extra_schema, True, ptr(path, "additionalProperties")))
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
            except Unsatisfiable:
                if req:
                    raise
                continue  # an optional property that can never be valid: leave it out
            kv = seq(Lit(json_str(key)), WS, Lit(":"), WS, value, WS)
            kvs.append((Ref(self.helper(f"{hint}-{key}-kv", kv)), req))
        extra = None
        if extra_schema is not False:
            try:
                value = Ref("value") if extra_schema is True else self.visit(
                    extra_schema, ptr(path, "additionalProperties"), f"{hint}-additional")
                key_node = self.extra_key([e[0] for e in entries])
                extra = Ref(self.helper(f"{hint}-additional-kv", seq(key_node, WS, Lit(":"), WS, value, WS)))
            except Unsatisfiable:
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
            excluded = norm([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)] + [(ord(c), ord(c)) for c in children])
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
            raise UnsupportedSchema("'prefixItems' must be an array", ptr(path, "prefixItems"))
        items = core.get("items", MISSING)
        if isinstance(items, list):
            raise UnsupportedSchema("'items' given as an array (tuple form; use 'prefixItems')", ptr(path, "items"))
        if items == {}:
            items = True
        mn = core.get("minItems", 0)
        mx = core.get("maxItems")
        for k, v in (("minItems", mn), ("maxItems", mx)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise UnsupportedSchema(f"'{k}' must be a non-negative integer", ptr(path, k))
        if core.get("uniqueItems") is True and (mx is None or mx > 1):
            raise UnsupportedSchema("'uniqueItems' (unless maxItems <= 1)", ptr(path, "uniqueItems"))
        if mx is not None and mx < mn:
            raise Unsatisfiable("maxItems < minItems", path)
        if not prefix and items in (MISSING, True) and mn == 0 and mx is None:
            return Ref("array")

        name = self.reserve(hint)
        self.fresh.add(name)
        t = len(prefix) if mx is None else min(len(prefix), mx)
        pnodes: List[Node] = []
        truncated = False
        for i in range(t):
            try:
                pnodes.append(self.visit(prefix[i], ptr(path, "prefixItems", i), f"{hint}-{i}"))
            except Unsatisfiable:
                if i < mn:
                    raise
                t, truncated = i, True  # nothing can stand at position i: stop before it
                break
        lo_x = max(0, mn - t)
        xnode: Optional[Node] = None
        if items is False:
            hi_x: Optional[int] = 0
        elif items is MISSING or items is True:
            xnode = Ref("value")
            hi_x = None if not prefix else lo_x
        else:
            hi_x = None
            try:
                xnode = self.visit(items, ptr(path, "items"), f"{hint}-item")
            except Unsatisfiable:
                hi_x = 0
        if mx is not None:
            hi_x = mx - t if hi_x is None else min(hi_x, mx - t)
        if truncated:
            hi_x = 0
        if hi_x is not None and lo_x > hi_x:
            raise Unsatisfiable("more items required than allowed", path)

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
    conv = SchemaConverter()
    conv.convert_root(schema)
    return conv.finish()


def _json_object_gbnf() -> str:
    conv = SchemaConverter()
    conv.rules["root"] = Ref("object")
    return conv.finish()


JSON_OBJECT_GBNF: str = _json_object_gbnf()
