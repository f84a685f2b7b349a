"""Test-only tools over parsed GBNF: a recogniser and a random sampler.

The tests use them to check generated grammars (every sampled string is valid JSON that
validates, matches accept exactly what they should). The runtime package only builds, renders
and parses grammars (``localai.grammar.gbnf``).
"""

from __future__ import annotations

import random as _random
import sys
from typing import Dict, FrozenSet, List, Optional, Tuple, Union

from localai.errors import GrammarError
from localai.grammar import gbnf
from localai.grammar.gbnf import Alt, AnyChar, CharClass, Lit, Node, Ref, Rep, Seq, height


class Grammar(gbnf.Grammar):
    """A parsed grammar that can also match and sample."""

    def matches(self, text: str, start: str = "root") -> bool:
        if start not in self.rules:
            raise GrammarError(f"grammar does not contain a '{start}' rule")
        return _Matcher(self, text).run(start)

    def sample(self, rng: Optional[_random.Random] = None, max_depth: int = 12,
               start: str = "root") -> str:
        if start not in self.rules:
            raise GrammarError(f"grammar does not contain a '{start}' rule")
        if not self.productive(start):
            raise GrammarError(f"rule '{start}' cannot derive any finite string")
        return _Sampler(self, rng or _random.Random(), max_depth).run(start)


def parse(text: str) -> Grammar:
    """:func:`localai.grammar.gbnf.parse`, as a grammar that matches and samples."""
    return Grammar(gbnf.parse(text).rules)


def check(text: str, start: str = "root") -> Grammar:
    return Grammar(gbnf.check(text, start).rules)


def _as_grammar(grammar: Union[str, Grammar]) -> Grammar:
    return grammar if isinstance(grammar, Grammar) else parse(grammar)


def matches(grammar: Union[str, Grammar], text: str, start: str = "root") -> bool:
    """True iff ``text`` (as a whole) derives from rule ``start``."""
    return _as_grammar(grammar).matches(text, start)


def sample(grammar: Union[str, Grammar], rng: Optional[_random.Random] = None,
           max_depth: int = 12, start: str = "root") -> str:
    """A random string derived from ``start``.

    Up to ``max_depth`` nested rule expansions the choices are random
    (repetitions continue with probability 1/2 each); deeper than that the
    sampler only takes shortest derivations, so it always terminates.
    """
    return _as_grammar(grammar).sample(rng, max_depth, start)



class _Matcher:
    def __init__(self, grammar: Grammar, text: str):
        self.rules = grammar.rules
        self.text = text
        self.n = len(text)
        self.memo: Dict[Tuple[str, int], FrozenSet[int]] = {}
        self.active: set = set()

    def run(self, start: str) -> bool:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            return self.n in self.ends(Ref(start), 0)
        finally:
            sys.setrecursionlimit(limit)

    def ends(self, node: Node, i: int) -> FrozenSet[int]:
        t = type(node)
        if t is Ref:
            key = (node.name, i)
            got = self.memo.get(key)
            if got is None:
                if key in self.active:  # only reachable with left recursion
                    return frozenset()
                self.active.add(key)
                got = self.ends(self.rules[node.name], i)
                self.active.discard(key)
                self.memo[key] = got
            return got
        if t is Lit:
            if self.text.startswith(node.text, i):
                return frozenset((i + len(node.text),))
            return frozenset()
        if t is CharClass:
            if i < self.n and node.contains(self.text[i]):
                return frozenset((i + 1,))
            return frozenset()
        if t is AnyChar:
            return frozenset((i + 1,)) if i < self.n else frozenset()
        if t is Seq:
            cur: FrozenSet[int] = frozenset((i,))
            for item in node.items:
                nxt: set = set()
                for p in cur:
                    nxt |= self.ends(item, p)
                if not nxt:
                    return frozenset()
                cur = frozenset(nxt)
            return cur
        if t is Alt:
            out: set = set()
            for o in node.options:
                out |= self.ends(o, i)
            return frozenset(out)
        if t is Rep:
            lo, hi = node.min, node.max
            results: set = set()
            if lo == 0:
                results.add(i)
            cur = frozenset((i,))
            seen = {i}
            count = 0
            while cur and (hi is None or count < hi):
                nxt = set()
                for p in cur:
                    nxt |= self.ends(node.item, p)
                count += 1
                if count >= lo:
                    results |= nxt
                    if hi is None:
                        nxt -= seen  # revisiting a position adds nothing new
                        seen |= nxt
                cur = frozenset(nxt)
            return frozenset(results)
        raise TypeError(node)


# --------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------

# Characters tried for negated classes and '.', in addition to ranges' own.
_POOL = [chr(c) for c in range(0x20, 0x7F)] + list("\n\t\u00e9\u00fc\u00df\u03a9\u4e2d\u6587\U0001F600")


class _Sampler:
    def __init__(self, grammar: Grammar, rng: _random.Random, max_depth: int):
        self.rules = grammar.rules
        self.rule_h = grammar.rule_heights()
        self.rng = rng
        self.max_depth = max_depth
        self.h_cache: Dict[int, float] = {}
        self.out: List[str] = []

    def h(self, node: Node) -> float:
        key = id(node)
        v = self.h_cache.get(key)
        if v is None:
            v = height(node, self.rule_h)
            self.h_cache[key] = v
        return v

    def run(self, start: str) -> str:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            self.gen(Ref(start), 0)
        finally:
            sys.setrecursionlimit(limit)
        return "".join(self.out)

    def pick_char(self, node: Union[CharClass, AnyChar]) -> str:
        rng = self.rng
        if isinstance(node, AnyChar):
            return rng.choice(_POOL)
        if node.negated:
            pool = [c for c in _POOL if node.contains(c)]
            if pool:
                return rng.choice(pool)
            for _ in range(1000):
                c = chr(rng.randrange(0x20, 0x3000))
                if node.contains(c):
                    return c
            raise GrammarError("cannot find a character outside a negated class")
        sizes = [hi - lo + 1 for lo, hi in node.ranges if hi >= lo]
        total = sum(sizes)
        if total == 0:
            raise GrammarError("empty character class")
        if total > 512:
            pool = [c for c in _POOL if node.contains(c)]
            if pool and rng.random() < 0.9:
                return rng.choice(pool)
        for _ in range(100):
            k = rng.randrange(total)
            for (lo, hi), size in zip(node.ranges, sizes):
                if k < size:
                    o = lo + k
                    break
                k -= size
            if not 0xD800 <= o <= 0xDFFF:
                return chr(o)
        return chr(o)

    def gen(self, node: Node, depth: int) -> None:
        t = type(node)
        if t is Lit:
            self.out.append(node.text)
        elif t is CharClass or t is AnyChar:
            self.out.append(self.pick_char(node))
        elif t is Ref:
            self.gen(self.rules[node.name], depth + 1)
        elif t is Seq:
            for item in node.items:
                self.gen(item, depth)
        elif t is Alt:
            options = [o for o in node.options if self.h(o) != float("inf")]
            if depth >= self.max_depth:
                best = min(self.h(o) for o in options)
                options = [o for o in options if self.h(o) == best]
            self.gen(self.rng.choice(options), depth)
        elif t is Rep:
            count = node.min
            item_ok = self.h(node.item) != float("inf")
            if depth < self.max_depth and item_ok:
                cap = node.max if node.max is not None else node.min + 64
                while count < cap and self.rng.random() < 0.5:
                    count += 1
            for _ in range(count):
                self.gen(node.item, depth)
        else:
            raise TypeError(node)
