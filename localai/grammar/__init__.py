"""Grammar-constrained generation helpers.

* :mod:`.json_schema` converts JSON Schema (response_format ``json_schema``,
  tool parameters) into GBNF for llama.cpp's grammar sampler.
* :mod:`.gbnf` parses/validates GBNF text and can match or sample strings
  (used by tests and to check user grammars before they reach C).
"""

from .gbnf import Grammar, GrammarError, check as check_gbnf, matches, parse as parse_gbnf, sample
from .json_schema import JSON_OBJECT_GBNF, UnsupportedSchema, schema_to_gbnf, tool_call_gbnf

__all__ = [
    "Grammar",
    "GrammarError",
    "JSON_OBJECT_GBNF",
    "UnsupportedSchema",
    "check_gbnf",
    "matches",
    "parse_gbnf",
    "sample",
    "schema_to_gbnf",
    "tool_call_gbnf",
]
