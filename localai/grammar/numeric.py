"""Grammar rules for the decimal spellings of integers and numbers within bounds.

Every range is exact: ``int_range(lo, hi)`` derives the canonical decimal (no leading zeros,
no ``-0``) of each integer in [lo, hi] and nothing else.
"""

from __future__ import annotations

from typing import List, Optional

from localai.grammar.gbnf import DIGIT, CharClass, Lit, Node, Rep, alt, cc, opt, seq

MAX_INT_DIGITS = 16  # digits of an unbounded integer: a double still holds it exactly

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


def int_range(lo: Optional[int], hi: Optional[int]) -> Node:
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


def decimal_region(lo: int, lo_excl: bool, hi: Optional[int], hi_excl: bool, frac: int) -> Optional[Node]:
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
