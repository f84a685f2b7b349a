"""Grammar-constrained generation: GBNF text for llama.cpp's grammar sampler.

- ``gbnf``: the expression tree, its builders and renderer, and a parser that checks GBNF
  text the way llama.cpp's would.
- ``json_schema``: JSON Schema -> GBNF (``response_format`` json_schema, tool parameters),
  with ``json_rules`` (shared JSON rules and formats), ``json_keywords`` (the vocabulary),
  ``schema_algebra`` (allOf/oneOf reasoning), ``regex`` (``pattern``) and ``numeric``
  (integer and number bounds).
- ``tools``: tool-call grammars composed with what a request allows (parallel calls, text).
"""

from localai.grammar.json_schema import JSON_OBJECT_GBNF, schema_to_gbnf
from localai.grammar.tools import tool_call_gbnf, tool_calls_gbnf

__all__ = ["JSON_OBJECT_GBNF", "schema_to_gbnf", "tool_call_gbnf", "tool_calls_gbnf"]
