"""allOf merging and oneOf disjointness: the converter's reasoning about combined schemas.

A mixin of ``json_schema._Converter``: it uses the converter's ``resolve``, ``types``,
``check_keywords`` and ``core``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from localai.errors import Unsatisfiable, UnsupportedSchema
from localai.grammar.json_keywords import TYPES, canon, is_num


class SchemaAlgebra:
    # -- allOf merging -------------------------------------------------------

    def flatten(self, schemas: List[Any], path: str, seen: frozenset) -> List[dict]:
        out: List[dict] = []
        for s in schemas:
            if s is True:
                continue
            if s is False:
                raise Unsatisfiable("'false' schema in 'allOf'", path)
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
            key = canon(part)
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
                raise Unsatisfiable(f"'allOf' with incompatible types {a!r} and {b!r}", path)
            return [t for t in TYPES if t in both]
        if k == "required":
            return list(a) + [x for x in b if x not in a]
        if k in ("minLength", "minItems", "minProperties", "minimum"):
            return max(a, b)
        if k in ("maxLength", "maxItems", "maxProperties", "maximum"):
            return min(a, b)
        if k in ("exclusiveMinimum", "exclusiveMaximum") and is_num(a) and is_num(b):
            return max(a, b) if k == "exclusiveMinimum" else min(a, b)
        if k == "enum":
            kb = {canon(x) for x in b}
            return [x for x in a if canon(x) in kb]
        if k == "const":
            if canon(a) != canon(b):
                raise Unsatisfiable("'allOf' with different 'const' values", path)
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
            if is_num(v):
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
            return {canon(s["const"])}
        if "enum" in s and isinstance(s["enum"], list):
            return {canon(v) for v in s["enum"]}
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
