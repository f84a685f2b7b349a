"""JSON Schema -> GBNF converter and the pure-Python GBNF parser/matcher/sampler.

The central property: every string the generated grammar produces is JSON that
validates against the schema (jsonschema, with format assertion).  Sampling
is the generator; hand-picked documents cover acceptance and rejection.
"""

import functools
import json
import random
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import gbnf_support as gbnf
from localai.errors import GrammarError
from localai.errors import UnsupportedSchema
from localai.grammar import JSON_OBJECT_GBNF, schema_to_gbnf, tool_call_gbnf

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True, database=None)


def validator(schema):
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@functools.lru_cache(maxsize=None)
def _compiled(schema_json):
    text = schema_to_gbnf(json.loads(schema_json))
    return text, gbnf.parse(text)


def compiled(schema):
    return _compiled(json.dumps(schema, sort_keys=False))


def grammar(schema):
    return compiled(schema)[1]


# --------------------------------------------------------------------------
# Known-answer grammars
# --------------------------------------------------------------------------

CHAR = ('char ::= [^\\x00-\\x1F"\\\\] | "\\\\" ( ["\\\\/bfnrt] | "u" ( [0-9a-cA-CefEF] [0-9a-fA-F]{3} | '
        '[dD] [0-7] [0-9a-fA-F]{2} ) )\n')
WS = 'ws ::= ( " " | "\\n" [ \\t]{0,20} )?\n'

KNOWN = [
    ({"type": "string"},
     'root ::= string\nstring ::= "\\"" char* "\\""\n' + CHAR),
    ({"enum": ["a", 1, None, True]},
     'root ::= "\\"a\\"" | "1" | "null" | "true"\n'),
    ({"type": "object",
      "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 100},
                     "note": {"type": ["string", "null"], "maxLength": 8}},
      "required": ["id"], "additionalProperties": False},
     'root ::= "{" ws root-id-kv ( "," ws root-note-kv )? "}"\n'
     'root-id-kv ::= "\\"id\\"" ws ":" ws ( [1-9] [0-9]? | "100" ) ws\n'
     'root-note-kv ::= "\\"note\\"" ws ":" ws ( "\\"" char{0,8} "\\"" | null ) ws\n'
     + CHAR + 'null ::= "null"\n' + WS),
    ({"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
     'root ::= "[" ws ( boolean ws root-more-item{0,2} )? "]"\n'
     'root-more-item ::= "," ws boolean ws\n'
     'boolean ::= "true" | "false"\n' + WS),
    ({"type": "integer", "exclusiveMinimum": -5, "maximum": 1234},
     'root ::= [0-9] | [1-9] [0-9]{1,2} | "1" ( [01] [0-9]{2} | "2" ( [0-2] [0-9] | "3" [0-4] ) ) | "-" [1-4]\n'),
    ({"type": "string", "pattern": "^[a-c]{2}(x|yz)?$"},
     'root ::= "\\"" [a-c]{2} ( "x" | "yz" )? "\\""\n'),
    ({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                          "kids": {"type": "array",
                                                                   "items": {"$ref": "#/$defs/node"}}},
                         "required": ["v"]}},
      "$ref": "#/$defs/node"},
     'root ::= node\n'
     'node ::= "{" ws node-v-kv ( "," ws node-kids-kv )? "}"\n'
     'node-v-kv ::= "\\"v\\"" ws ":" ws integer ws\n'
     'node-kids ::= "[" ws ( node ws ( "," ws node ws )* )? "]"\n'
     'node-kids-kv ::= "\\"kids\\"" ws ":" ws node-kids ws\n'
     'integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )\n' + WS),
]


@pytest.mark.parametrize("schema,expected", KNOWN, ids=[str(i) for i in range(len(KNOWN))])
def test_known_answer_gbnf(schema, expected):
    assert schema_to_gbnf(schema) == expected


def test_json_object_gbnf():
    assert JSON_OBJECT_GBNF.startswith("root ::= object\n")
    g = gbnf.parse(JSON_OBJECT_GBNF)
    rng = random.Random(0)
    for _ in range(30):
        assert isinstance(json.loads(g.sample(rng)), dict)
    assert g.matches('{"a": [1, 2.5e-3, true, null, {"b": "c\\n\\u00e9"}]}')
    assert not g.matches('[1]')
    assert not g.matches('"x"')
    assert not g.matches('{"a": 1,}')


_json_scalars = (st.none() | st.booleans() | st.integers(-10 ** 15, 10 ** 15)
                 | st.floats(min_value=-1e30, max_value=1e30, allow_nan=False).filter(
                     lambda f: f == 0 or abs(f) > 1e-30)
                 | st.text(max_size=8))
_json_values = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@SETTINGS
@given(value=st.dictionaries(st.text(max_size=5), _json_values, max_size=4), indent=st.sampled_from([None, 2]))
def test_json_object_gbnf_accepts_serialised_objects(value, indent):
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    assert gbnf.matches(JSON_OBJECT_GBNF, text)


# --------------------------------------------------------------------------
# Sampled documents validate
# --------------------------------------------------------------------------

SCHEMAS = {
    "object-required-optional": {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 5},
                       "age": {"type": "integer", "minimum": -20, "exclusiveMaximum": 130},
                       "tags": {"type": "array", "items": {"enum": ["a", "b", "c d"]}, "minItems": 1,
                                "maxItems": 3},
                       "score": {"type": "number"}},
        "required": ["name", "tags"]},
    "all-optional-many": {
        "type": "object",
        "properties": {k: {"type": t} for k, t in zip("abcdef", ["string", "integer", "boolean", "null",
                                                                  "number", "string"])},
        "additionalProperties": False},
    "nested": {
        "type": "object",
        "properties": {"user": {"type": "object",
                                "properties": {"id": {"type": "integer"},
                                               "address": {"type": "object",
                                                           "properties": {"zip": {"type": "string",
                                                                                  "pattern": "^\\d{5}$"}},
                                                           "required": ["zip"]}},
                                "required": ["id", "address"]}},
        "required": ["user"]},
    "number-range": {"type": "number", "minimum": -2.0, "exclusiveMaximum": 3},
    "number-positive": {"type": "number", "exclusiveMinimum": 0},
    "number-negative-band": {"type": "number", "minimum": -1000, "exclusiveMaximum": -999},
    "pattern-anchored": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3,5}(x|yz)?$"},
    "pattern-unanchored-escapes": {"type": "string", "pattern": "a.b\\.c[^a-z\\d]\"\\\\"},
    "pattern-lengths": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$", "minLength": 3, "maxLength": 8},
    "pattern-alternation-anchors": {"type": "string", "pattern": "^ab|cd$|(?:e|f){2}"},
    "recursive-tree": {
        "$defs": {"node": {"type": "object",
                           "properties": {"v": {"type": "integer"},
                                          "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                           "required": ["v"]}},
        "$ref": "#/$defs/node"},
    "recursive-root": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
                                                         "n": {"type": "integer"}},
                       "required": ["n", "next"]},
    "formats": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "uuid"},
                          {"format": "email"}, {"format": "time"}, {"format": "ipv4"}, {"format": "date"}]},
    "date": {"type": "string", "format": "date"},
    "oneOf-discriminated": {
        "oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
                   "required": ["kind", "x"], "additionalProperties": False},
                  {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "boolean"}},
                   "required": ["kind"]}]},
    "anyOf-with-siblings": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                            "anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
    "allOf-merge": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                              {"properties": {"b": {"type": "number", "maximum": 10}}, "required": ["b"]},
                              {"properties": {"b": {"minimum": 5}}}]},
    "additional-schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                          "additionalProperties": {"type": "integer"}},
    "additional-true-prefix-names": {"type": "object",
                                     "properties": {"ab": {"type": "string"}, "abc": {"type": "integer"}},
                                     "additionalProperties": True, "required": ["abc"]},
    "nullable-string": {"type": ["string", "null"], "maxLength": 3},
    "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
              "items": {"type": "boolean"}, "maxItems": 4},
    "array-bounds": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                     "minItems": 2, "maxItems": 5},
    "const-structure": {"const": {"a": [1, 2, {"b": None}], "c": "é\n"}},
    "definitions-and-enum": {"definitions": {"x": {"type": "integer", "minimum": 5}},
                             "type": "array", "items": {"$ref": "#/definitions/x"}},
    "enum-filtered-by-type": {"type": "string", "enum": ["x", 1, "y", None]},
    "any": {},
    "any-object": {"type": "object"},
    "big-integer": {"type": "integer", "minimum": 10 ** 17},
    "draft7-exclusive-bool": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer",
                              "minimum": 3, "exclusiveMinimum": True, "maximum": 7, "exclusiveMaximum": True},
}


@pytest.mark.parametrize("name", list(SCHEMAS))
@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_samples_validate(name, seed):
    schema = SCHEMAS[name]
    text, g = compiled(schema)
    v = validator(schema)
    rng = random.Random(seed)
    for i in range(4):
        out = g.sample(rng, max_depth=14)
        doc = json.loads(out)
        errors = [e.message for e in v.iter_errors(doc)]
        assert not errors, (out, errors)
        if i == 0:
            assert g.matches(out), out


def test_format_checker_is_active():
    # guards against the sampling tests passing only because formats are not asserted
    assert not validator({"format": "date-time"}).is_valid("2020-01-01 noon")
    assert not validator({"format": "date"}).is_valid("2023-02-29")
    assert not validator({"format": "time"}).is_valid("25:00:00Z")


def test_date_grammar_is_calendar_exact():
    g = grammar({"type": "string", "format": "date"})
    assert g.matches('"2024-02-29"') and g.matches('"2000-02-29"') and g.matches('"0004-02-29"')
    assert not g.matches('"2023-02-29"') and not g.matches('"1900-02-29"')
    assert not g.matches('"2023-04-31"') and not g.matches('"2023-13-01"') and not g.matches('"0000-01-01"')
    assert g.matches('"2023-12-31"')


@SETTINGS
@given(lo=st.one_of(st.none(), st.integers(-300, 300)), hi=st.one_of(st.none(), st.integers(-300, 300)),
       lo_excl=st.booleans(), hi_excl=st.booleans(), probes=st.lists(st.integers(-1500, 1500), max_size=25))
def test_integer_bounds_are_exact(lo, hi, lo_excl, hi_excl, probes):
    schema = {"type": "integer"}
    if lo is not None:
        schema["exclusiveMinimum" if lo_excl else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if hi_excl else "maximum"] = hi
    v = validator(schema)
    if not any(v.is_valid(n) for n in range(-400, 401)):
        with pytest.raises(UnsupportedSchema):
            schema_to_gbnf(schema)
        return
    g = gbnf.parse(schema_to_gbnf(schema))
    for n in probes + [lo or 0, hi or 0, (lo or 0) + 1, (hi or 0) - 1, 0, -1, 1]:
        assert g.matches(str(n)) == v.is_valid(n), n
    assert not g.matches("01") and not g.matches("+1")
    if lo is not None or hi is not None:
        assert not g.matches("-0")


@SETTINGS
@given(lo=st.one_of(st.none(), st.integers(-50, 50)), hi=st.one_of(st.none(), st.integers(-50, 50)),
       lo_excl=st.booleans(), hi_excl=st.booleans(), probes=st.lists(st.integers(-60, 60), max_size=20))
def test_number_bounds_are_exact(lo, hi, lo_excl, hi_excl, probes):
    schema = {"type": "number"}
    if lo is not None:
        schema["exclusiveMinimum" if lo_excl else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if hi_excl else "maximum"] = hi
    v = validator(schema)
    try:
        g = gbnf.parse(schema_to_gbnf(schema))
    except UnsupportedSchema:
        assert lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_excl or hi_excl)))
        return
    texts = ["-0.25", "0.001", "-0.001"]
    for n in probes + [lo or 0, hi or 0]:
        texts += [str(n), f"{n}.25", f"{n}.0", f"{n}.999"]
    for text in texts:
        # every canonical plain decimal is matched exactly when it is valid
        assert g.matches(text) == v.is_valid(float(text)), text
    rng = random.Random(lo or 0)
    for _ in range(10):
        assert v.is_valid(json.loads(g.sample(rng)))


# --------------------------------------------------------------------------
# Hand-picked documents
# --------------------------------------------------------------------------

PERSON = {"type": "object",
          "properties": {"name": {"type": "string"}, "role": {"enum": ["admin", "user"]},
                         "age": {"type": "integer", "minimum": 0}},
          "required": ["name", "role"], "additionalProperties": False}

HAND_PICKED = [
    (PERSON,
     ['{"name": "Ann", "role": "admin"}', '{"name":"B","role":"user","age":3}',
      json.dumps({"name": "Ünï", "role": "user", "age": 40}, indent=2, ensure_ascii=False),
      '{"name": "a\\"b\\\\c\\u00e9", "role": "user"}'],
     ['{"role": "admin"}',                           # missing required
      '{"name": "Ann", "role": "root"}',             # wrong enum value
      '{"name": "Ann", "role": "user", "x": 1}',     # extra property, additionalProperties false
      '{"name": "Ann", "role": "user", "age": -1}',  # below minimum
      '{"name": "Ann", "role": "user", "age": 1.5}',
      '{"name": 5, "role": "user"}',
      '{"name": "a\nb", "role": "user"}']),            # raw control character
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
     ['{"a": 1, "b": "x"}', '{"zz": "y", "b": "x"}', '{}'],
     ['{"a": "x"}', '{"b": 2}', '{"a": 1, "a": "dup"}']),
    ({"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 1, "maxItems": 2},
     ['["123e4567-e89b-12d3-a456-426614174000"]'],
     ['[]', '["123e4567-e89b-12d3-a456-42661417400"]', '["a", "b", "c"]']),
    ({"type": "string", "pattern": "^\\d{3}-[a-z]+$", "maxLength": 6},
     ['"123-ab"', '"000-xy"', '"999-q"'],
     ['"123-abcd"', '"12-ab"', '"123-"']),
    ({"type": "string", "format": "date-time"},
     ['"2023-05-01T12:30:00Z"', '"2024-02-29T23:59:59.123+05:30"'],
     ['"2023-05-01 12:30:00Z"', '"2023-05-01T24:00:00Z"', '"2023-05-01T12:30:00"']),
    ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
     ['"x"', '[1, 2]'],
     ['1', '["x"]']),
]


@pytest.mark.parametrize("schema,valid,invalid", HAND_PICKED, ids=[str(i) for i in range(len(HAND_PICKED))])
def test_hand_picked_documents(schema, valid, invalid):
    g = grammar(schema)
    v = validator(schema)
    for doc in valid:
        assert v.is_valid(json.loads(doc)), doc
        assert g.matches(doc), doc
    for doc in invalid:
        assert not g.matches(doc), doc


def test_whitespace_is_bounded():
    g = grammar(PERSON)
    assert g.matches('{ "name" : "x" ,\n  "role" : "user"\n}')
    assert not g.matches('{"name":' + " " * 30 + '"x", "role": "user"}')
    assert not g.matches('{"name":\n\n"x", "role": "user"}')
    assert not g.matches(' {"name": "x", "role": "user"}')


def test_declared_order_and_recursion_matching():
    g = grammar(SCHEMAS["recursive-tree"])
    assert g.matches('{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}')
    assert not g.matches('{"kids": [], "v": 1}')  # declared order only
    assert not g.matches('{"v": 1, "kids": [{"kids": []}]}')


def test_recursive_sampling_respects_depth_bound():
    g = grammar(SCHEMAS["recursive-tree"])
    rng = random.Random(7)

    def depth(node):
        return 1 + max((depth(k) for k in node.get("kids", [])), default=0)

    for _ in range(30):
        assert depth(json.loads(g.sample(rng, max_depth=12))) <= 12


def test_llama_cpp_limits_respected():
    text = schema_to_gbnf({"type": "string", "maxLength": 5000})  # capped: a subset stays valid
    assert "char{0,1999}" in text
    gbnf.check(text)
    big = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(60)}}
    text = schema_to_gbnf(big)
    assert len(text) < 20000  # optional-property chains stay linear
    g = gbnf.check(text)
    assert g.matches('{"p3": 1, "p59": 2}') and not g.matches('{"p59": 2, "p3": 1}')


def test_unsatisfiable_optional_parts_are_pruned():
    schema = {"type": "object",
              "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"type": "integer"},
                             "c": {"allOf": [{"type": "string"}, {"type": "null"}]}},
              "$defs": {"n": {"type": "object", "properties": {"x": {"$ref": "#/$defs/n"}}, "required": ["x"]}}}
    text = schema_to_gbnf(schema)
    assert '"\\"b\\""' in text
    assert '"\\"a\\""' not in text and '"\\"c\\""' not in text
    g = gbnf.parse(text)
    assert g.matches('{"b": 1}') and g.matches("{}")


# --------------------------------------------------------------------------
# Rejected schemas
# --------------------------------------------------------------------------

UNSUPPORTED = [
    ({"not": {"type": "string"}}, "'not'", "#/not"),
    ({"type": "object", "properties": {"a": {"if": {"type": "string"}, "then": {"minLength": 1}}}},
     "'if'", "#/properties/a/if"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "#/patternProperties"),
    ({"type": "object", "propertyNames": {"maxLength": 3}}, "propertyNames", "#/propertyNames"),
    ({"type": "array", "contains": {"type": "string"}}, "contains", "#/contains"),
    ({"type": "string", "pattern": "^(?=a)b"}, "lookaround", "#/pattern"),
    ({"type": "string", "pattern": "(a)\\1"}, "backreference", "#/pattern"),
    ({"type": "string", "pattern": "\\bword"}, "word boundary", "#/pattern"),
    ({"type": "string", "pattern": "a^b"}, "anchor", "#/pattern"),
    ({"type": "string", "pattern": "a++"}, "possessive", "#/pattern"),
    ({"type": "string", "pattern": "[unclosed"}, "invalid regular expression", "#/pattern"),
    ({"properties": {"p": {"type": "string", "pattern": "\\p{L}"}}}, "pattern", "#/properties/p/pattern"),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, "overlap", "#"),
    ({"type": "string", "format": "hostname"}, "format 'hostname'", "#/format"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems", "#/uniqueItems"),
    ({"$ref": "http://example.com/s.json"}, "only local", "#"),
    ({"type": "integer", "multipleOf": 2}, "multipleOf", "#/multipleOf"),
    ({"type": "number", "minimum": 0.5}, "non-integral", "#"),
    ({"items": [{"type": "string"}]}, "prefixItems", "#/items"),
    ({"type": "string", "format": "date", "pattern": "^2"}, "pattern", "#"),
    ({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}},
      "$ref": "#/$defs/n"}, "no finite", "#"),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "incompatible types", "#"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"],
      "additionalProperties": False}, "'b' is not allowed", "#"),
]


@pytest.mark.parametrize("schema,feature,path", UNSUPPORTED, ids=[str(i) for i in range(len(UNSUPPORTED))])
def test_unsupported(schema, feature, path):
    with pytest.raises(UnsupportedSchema) as info:
        schema_to_gbnf(schema)
    assert isinstance(info.value, ValueError)
    assert feature in str(info.value)
    assert info.value.path == path, str(info.value)


def test_annotations_are_ignored():
    plain = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    annotated = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "title": "T",
                 "description": "d", "type": "object", "examples": [{"a": "b"}], "default": {"a": "c"},
                 "properties": {"a": {"type": "string", "description": "A", "title": "a", "default": "z"}},
                 "required": ["a"]}
    assert schema_to_gbnf(plain) == schema_to_gbnf(annotated)


# --------------------------------------------------------------------------
# Tool calls
# --------------------------------------------------------------------------

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "minLength": 1},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "ping"}},
    {"type": "function", "function": {
        "name": "tree",
        "parameters": {"$defs": {"n": {"type": "object",
                                       "properties": {"k": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}},
                       "properties": {"root": {"$ref": "#/$defs/n"}}, "required": ["root"]}}},
]
PARAMS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "properties": {},
                                                                    "additionalProperties": False})
          for t in TOOLS}


def _check_call(call):
    assert isinstance(call, dict) and list(call) == ["name", "arguments"], call
    assert call["name"] in PARAMS
    errors = [e.message for e in validator(PARAMS[call["name"]]).iter_errors(call["arguments"])]
    assert not errors, (call, errors)


@pytest.mark.parametrize("parallel", [False, True])
@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_tool_call_samples(parallel, seed):
    g = gbnf.parse(tool_call_gbnf(TOOLS, allow_parallel=parallel))
    rng = random.Random(seed)
    for _ in range(5):
        doc = json.loads(g.sample(rng, max_depth=14))
        if parallel:
            assert isinstance(doc, list) and doc
            for call in doc:
                _check_call(call)
        else:
            _check_call(doc)


def test_tool_call_pins_name_to_arguments():
    single = gbnf.parse(tool_call_gbnf(TOOLS, allow_parallel=False))
    assert single.matches('{"name": "add", "arguments": {"a": 1, "b": 2}}')
    assert single.matches('{"name": "ping", "arguments": {}}')
    assert not single.matches('{"name": "add", "arguments": {"city": "Paris"}}')
    assert not single.matches('{"name": "get_weather", "arguments": {"a": 1, "b": 2}}')
    assert not single.matches('{"name": "nope", "arguments": {}}')
    assert not single.matches('[{"name": "ping", "arguments": {}}]')
    parallel = gbnf.parse(tool_call_gbnf(TOOLS, allow_parallel=True))
    assert parallel.matches('[{"name": "ping", "arguments": {}}, {"name": "add", "arguments": {"a": 1, "b": 2}}]')
    assert not parallel.matches('[]')


def test_tool_call_errors():
    with pytest.raises(ValueError):
        tool_call_gbnf([], allow_parallel=False)
    with pytest.raises(ValueError):
        tool_call_gbnf([TOOLS[0], TOOLS[0]], allow_parallel=False)
    with pytest.raises(UnsupportedSchema):
        tool_call_gbnf([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
                       allow_parallel=False)
    bare = tool_call_gbnf([{"name": "f", "parameters": {"properties": {"x": {"type": "boolean"}}}}],
                          allow_parallel=False)
    assert gbnf.matches(bare, '{"name": "f", "arguments": {"x": true}}')


# --------------------------------------------------------------------------
# GBNF parser / recogniser / sampler
# --------------------------------------------------------------------------

def test_gbnf_parse_and_match():
    text = '''# comment line
root ::= greeting ( "," ws name )* "!"?   # trailing comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]{1,5}
ws ::= [ \\t]{0,2}
num ::= ( [0-9]
          | "x" [0-9a-fA-F]+ )
'''
    g = gbnf.parse(text)
    assert list(g.rules) == ["root", "greeting", "name", "ws", "num"]
    assert g.matches("hi")
    assert g.matches("hello, Bob,  Al!")
    assert not g.matches("hello,Bobbbbbb")
    assert not g.matches("hey")
    assert g.matches("x1F", start="num") and not g.matches("x", start="num")


def test_gbnf_escapes_and_classes():
    g = gbnf.parse('root ::= "\\x41\\u00e9\\U0001F600\\t\\"" [^\\]\\\\a-c] [\\-x]\n')
    assert g.matches('A\u00e9\U0001F600\t"d-')
    assert g.matches('A\u00e9\U0001F600\t"]x') is False
    assert g.matches('A\u00e9\U0001F600\t"zx')
    assert gbnf.parse("root ::= .+\n").matches("any\nthing")


def test_gbnf_render_round_trip():
    for schema in list(SCHEMAS.values())[:10]:
        text, g = compiled(schema)
        assert g.to_gbnf() == text
        assert gbnf.parse(g.to_gbnf()).rules == g.rules


@pytest.mark.parametrize("text,message,line", [
    ('root ::= foo\n', "undefined rule identifier 'foo'", 1),
    ('root ::= "a"\nx ::= "\\q"\n', "unknown escape", 2),
    ('root = "a"\n', "expecting '::='", 1),
    ('root ::= "abc\n', "unexpected end of input", 1),
    ('root ::= ( "a" \n', "expecting ')'", 2),
    ('root ::= * "a"\n', "expecting an item", 1),
    ('root ::= "a" )\n', "expecting newline", 1),
    ('root ::= [a-\n', "unexpected end of input", 1),
    ('\n\nroot ::= "a"{3,1}\n', "below minimum", 3),
    ('root ::= "a"{2001}\n', "exceeds", 1),
    ('root ::= ("a" [b]{0,100}){0,100}\n', "repetition too large", 1),
    ('root ::= <[12]>\n', "token", 1),
    ('root ::= "\\x4"\n', "hex", 1),
    ('root ::= "a"\n  "b"\n', "expecting a rule name", 2),
])
def test_gbnf_syntax_errors(text, message, line):
    with pytest.raises(GrammarError) as info:
        gbnf.parse(text)
    assert message in str(info.value)
    assert info.value.line == line, str(info.value)


def test_gbnf_semantic_errors():
    with pytest.raises(GrammarError, match="left recursion"):
        gbnf.parse('root ::= expr\nexpr ::= expr "+" term | term\nterm ::= [0-9]\n')
    with pytest.raises(GrammarError, match="left recursion"):
        gbnf.parse('root ::= opt root "x" | "y"\nopt ::= "a"?\n')  # nullable prefix
    with pytest.raises(GrammarError, match="empty grammar"):
        gbnf.parse("# nothing\n")
    with pytest.raises(GrammarError, match="root"):
        gbnf.matches('main ::= "a"\n', "a")
    with pytest.raises(GrammarError, match="'root'"):
        gbnf.check('main ::= "a"\n')
    assert gbnf.check('main ::= "a"\n', start="main").matches("a", start="main")
    with pytest.raises(GrammarError, match="finite"):
        gbnf.sample('root ::= "a" root\n', random.Random(0))


def test_gbnf_sample_terminates_on_recursive_grammar():
    g = gbnf.parse('root ::= "(" root* ")" | "x"\n')
    rng = random.Random(1)
    for _ in range(50):
        s = g.sample(rng, max_depth=6)
        assert g.matches(s)
        depth = max_depth = 0
        for c in s:
            depth += c == "("
            depth -= c == ")"
            max_depth = max(max_depth, depth)
        assert max_depth <= 7


_REGEX_GRAMMAR = 'root ::= ( "a" | "b" [c-d]* ){1,3} "e"? | [^a-e]{2}\n'
_REGEX = re.compile(r"(?:a|b[c-d]*){1,3}e?|[^a-e]{2}")


@SETTINGS
@given(text=st.text(alphabet="abcdez", max_size=8))
def test_gbnf_matches_agrees_with_regex(text):
    assert gbnf.matches(_REGEX_GRAMMAR, text) == bool(_REGEX.fullmatch(text))


@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_gbnf_samples_match_regex(seed):
    s = gbnf.sample(_REGEX_GRAMMAR, random.Random(seed))
    assert _REGEX.fullmatch(s), s
