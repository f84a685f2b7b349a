"""Between tokens and text: fill-in-the-middle prompt layout, and token bytes to text deltas
(UTF-8 safe, stop strings withheld until decided)."""

from __future__ import annotations

import codecs


def fim_prompt(prefix: list[int], suffix: list[int], fim: tuple[int, int, int]) -> list[int]:
    """A fill-in-the-middle prompt in prefix-suffix-middle order: the model then writes the middle."""
    pre, suf, mid = fim
    return [pre, *prefix, suf, *suffix, mid]


class TextAssembler:
    """Turns token bytes into text deltas, never splitting a character or leaking a stop string."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.matched: str | None = None  # the stop string found, once one is

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was reached)."""
        text = self.held + self.decoder.decode(piece)
        if not self.stop:
            self.held = ""
            return text, False
        found = [(i, s) for s in self.stop if (i := text.find(s)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda f: f[0])
            self.held = ""
            return text[:cut], True
        keep = self._partial_stop_len(text)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self) -> str:
        """What is left at the end; bytes of a character cut off by max_tokens are dropped, not
        turned into U+FFFD."""
        text = self.held
        self.held = ""
        self.decoder.reset()
        return text

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best
