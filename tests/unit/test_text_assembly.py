"""Pure logic of the generation loop: UTF-8 safe deltas, stop strings, prefix matching."""

from __future__ import annotations

from hypothesis import given, strategies as st

from localai.backends.llama.scheduler import _common_prefix
from localai.backends.llama.text import TextAssembler


def feed_all(assembler: TextAssembler, pieces: list[bytes]) -> tuple[str, bool]:
    out = []
    for piece in pieces:
        text, stopped = assembler.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(assembler.flush())
    return "".join(out), False


def test_multibyte_character_split_across_tokens_is_never_emitted_in_halves():
    snowman = "☃".encode()
    assembler = TextAssembler([])
    assert assembler.feed(snowman[:1]) == ("", False)
    assert assembler.feed(snowman[1:2]) == ("", False)
    assert assembler.feed(snowman[2:] + b"!") == ("☃!", False)


def test_character_cut_off_at_the_end_is_dropped_not_replaced():
    assembler = TextAssembler([])
    assert assembler.feed("ok☃".encode()[:-1]) == ("ok", False)
    assert assembler.flush() == ""


def test_stop_string_split_across_tokens_is_withheld_then_cut():
    assembler = TextAssembler(["###"])
    assert assembler.feed(b"Hello #") == ("Hello ", False)
    assert assembler.feed(b"#") == ("", False)
    assert assembler.feed(b"# more") == ("", True)


def test_withheld_prefix_is_released_when_it_does_not_become_a_stop():
    assembler = TextAssembler(["\nUser:"])
    assert assembler.feed(b"a\nUs") == ("a", False)
    assert assembler.feed(b"ually") == ("\nUsually", False)


def test_earliest_of_several_stops_wins():
    text, stopped = feed_all(TextAssembler(["END", "STOP"]), [b"one STOP two END"])
    assert (text, stopped) == ("one ", True)


@given(st.text(max_size=60), st.lists(st.integers(1, 7), max_size=30), st.sampled_from(["", "ab", "\n\n", "é!"]))
def test_any_split_gives_the_text_up_to_the_first_stop(text, cuts, stop):
    data = text.encode()
    pieces, i = [], 0
    for c in cuts:
        pieces.append(data[i:i + c])
        i += c
    pieces.append(data[i:])
    out, stopped = feed_all(TextAssembler([stop] if stop else []), pieces)
    if stop and stop in text:
        assert stopped and out == text[: text.index(stop)]
    else:
        assert not stopped and out == text


def test_common_prefix():
    assert _common_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert _common_prefix([1, 2, 3], [1, 9, 3]) == 1
    assert _common_prefix([], [1]) == 0
    assert _common_prefix([5], [6]) == 0
