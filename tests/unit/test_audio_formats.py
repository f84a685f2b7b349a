"""The transcription response bodies (srt, vtt, verbose_json pieces) and the WER helper."""

from __future__ import annotations

import zlib

import pytest

from localai.api.routes.audio import compression_ratio, lrc, segments_json, srt, vtt, words_json
from localai.capabilities import Segment, Token, Transcript, Word
from tests.audio_support import wer


def seg(start: float, end: float, text: str, seek: int = 0, logprobs=(-0.5, -0.1)) -> Segment:
    tokens = [Token(id=i, text=b"x", logprob=lp, probability=0.5, start=start, end=end, is_timestamp=False)
              for i, lp in enumerate(logprobs)]
    return Segment(start=start, end=end, text=text, no_speech_prob=0.01, seek=seek, tokens=tokens)


SEGMENTS = [seg(0.0, 3.32, " Hello there."), seg(3.32, 3725.5, " General Kenobi!")]


def test_srt():
    assert srt(SEGMENTS) == ("1\n00:00:00,000 --> 00:00:03,320\nHello there.\n\n"
                             "2\n00:00:03,320 --> 01:02:05,500\nGeneral Kenobi!\n\n")
    assert srt([]) == ""


def test_vtt():
    assert vtt(SEGMENTS) == ("WEBVTT\n\n00:00:00.000 --> 00:00:03.320\nHello there.\n\n"
                             "00:00:03.320 --> 01:02:05.500\nGeneral Kenobi!\n\n")
    assert vtt([]) == "WEBVTT\n\n"


def test_lrc():
    """whisper-cli's -olrc layout: minutes (not wrapped at an hour), seconds, hundredths."""
    assert lrc(SEGMENTS) == "[by:localai]\n[00:00.00]Hello there.\n[00:03.32]General Kenobi!\n"
    assert lrc([seg(3725.5, 3726.0, " Later.")]) == "[by:localai]\n[62:05.50]Later.\n"
    assert lrc([]) == "[by:localai]\n"


def test_segments_share_their_window_statistics():
    segments = [seg(0.0, 5.0, " a a a a a a a a", 0, (-1.0, -3.0)), seg(5.0, 9.0, " b", 0, (-2.0,)),
                seg(30.0, 31.0, " other window", 3000, (-0.2,))]
    out = segments_json(segments, 0.2)
    assert [s["id"] for s in out] == [0, 1, 2]
    assert out[0]["avg_logprob"] == out[1]["avg_logprob"] == pytest.approx(-2.0)
    assert out[2]["avg_logprob"] == pytest.approx(-0.2) and out[2]["seek"] == 3000
    window = " a a a a a a a a b"
    assert out[0]["compression_ratio"] == pytest.approx(len(window) / len(zlib.compress(window.encode())))
    assert out[0]["tokens"] == [0, 1] and out[0]["temperature"] == 0.2 and out[0]["no_speech_prob"] == 0.01


def test_compression_ratio_flags_repetition():
    assert compression_ratio("the " * 200) > 2.4 > compression_ratio("And so my fellow Americans, ask not.")
    assert compression_ratio("") == 0.0


def test_words_lose_surrounding_punctuation_only():
    words = [Word("Hello,", 0.0, 0.4, 0.9), Word("¿qué?", 0.4, 0.8, 0.9), Word("don't", 0.8, 1.0, 0.9),
             Word("...", 1.0, 1.1, 0.9), Word("U.S.", 1.1, 1.5, 0.9)]
    transcript = Transcript(language="en", segments=[Segment(0.0, 1.5, "", words=words)])
    assert [w["word"] for w in words_json(transcript)] == ["Hello", "qué", "don't", "U.S"]
    assert words_json(transcript)[0] == {"word": "Hello", "start": 0.0, "end": 0.4}


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ("ask not what your country", "Ask not, what your country!", 0.0),
    ("ask not what your country", "ask what your country", 0.2),  # one deletion
    ("ask not what your country", "ask not what your great country", 0.2),  # one insertion
    ("ask not what your country", "ask knot what your country", 0.2),  # one substitution
    ("a b", "", 1.0),
    ("", "", 0.0),
])
def test_wer(reference, hypothesis, expected):
    assert wer(reference, hypothesis) == pytest.approx(expected)
