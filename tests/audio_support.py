"""Helpers for the speech tests: the reference clip, its transcript, and word error rate."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JFK_WAV = ROOT / "native/whisper.cpp/upstream/samples/jfk.wav"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
MAX_WER = 0.10
# Made with espeak-ng (tests/data/README.md): synthetic speech whisper tiny.en finds hard.
FOX_FLAC = ROOT / "tests/data/speech-en.flac"
FOX_TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
SPEECH_ES = ROOT / "tests/data/speech-es.flac"
SPEECH_ES_TEXT = "Buenos días. El perro juega en el jardín y hoy hace muy buen tiempo."
SPEECH_ES_ENGLISH = "Good morning. The dog plays in the garden and the weather is very good today."


def normalized_words(text: str) -> list[str]:
    """Lowercase words without punctuation: what WER compares."""
    return re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance / number of reference words."""
    ref, hyp = normalized_words(reference), normalized_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1,  # deletion
                             current[j - 1] + 1,  # insertion
                             previous[j - 1] + (ref_word != hyp_word))  # substitution
        previous = current
    return previous[-1] / len(ref)
