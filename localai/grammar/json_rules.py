"""The rules every JSON grammar shares: any JSON value, strings, numbers, whitespace, and the
string formats (date, time, date-time, uuid, email, ipv4)."""

from __future__ import annotations

import json
from typing import Dict

from localai.grammar.gbnf import DIGIT, CharClass, Lit, Node, Ref, Rep, alt, cc, opt, seq
from localai.grammar.numeric import MAX_INT_DIGITS

MAX_FRAC_DIGITS = 24
MAX_EXP_DIGITS = 2
WS_MAX_INDENT = 20

WS = Ref("ws")
HEX = cc("0-9a-fA-F")
# a JSON string character that needs no escape
RAW_CHAR = CharClass(((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)), negated=True)


def json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)



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
