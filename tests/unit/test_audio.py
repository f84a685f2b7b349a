"""Audio input: in-memory decoding of every supported container, downmix, anti-aliased resampling,
limits checked from the header, and garbage refused with a clean error."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings, strategies as st

from localai.audio import (TARGET_RATE, AudioDecodeError, AudioStream, AudioTooLong, AudioWindows, decode_audio,
                           downmix, resample)
from localai.errors import InvalidRequest
from tests.audio_support import JFK_WAV


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# ---- decoding ----

def test_wav_16k_is_passed_through_exactly():
    data = JFK_WAV.read_bytes()
    decoded = decode_audio(data)
    reference, rate = soundfile.read(JFK_WAV, dtype="float32")
    assert rate == TARGET_RATE and decoded.source_rate == TARGET_RATE
    assert decoded.samples.dtype == np.float32 and decoded.samples.flags.c_contiguous
    np.testing.assert_array_equal(decoded.samples, reference)
    assert decoded.duration == pytest.approx(11.0)
    assert decoded.source_format == "WAV/PCM_16"


@pytest.mark.parametrize("fmt, subtype, rate", [
    ("FLAC", "PCM_16", 44100),
    ("OGG", "VORBIS", 44100),
    ("OGG", "OPUS", 48000),
    ("MP3", "MPEG_LAYER_III", 44100),
    ("WAV", "FLOAT", 22050),
    ("AIFF", "PCM_24", 8000),
])
def test_every_container_decodes_to_16k_mono(fmt, subtype, rate):
    source = tone(440.0, 2.0, rate)
    decoded = decode_audio(encode(source, rate, fmt, subtype))
    assert decoded.source_rate == rate and decoded.source_format.startswith(fmt)
    assert decoded.duration == pytest.approx(2.0, abs=0.06)  # lossy codecs pad a little
    assert len(decoded.samples) == pytest.approx(2.0 * TARGET_RATE, abs=0.06 * TARGET_RATE)
    assert dominant_frequency(decoded.samples, TARGET_RATE) == pytest.approx(440.0, abs=2.0)
    assert rms(decoded.samples) == pytest.approx(rms(source), rel=0.1)


def test_stereo_is_downmixed_by_averaging():
    rate = 16000
    left, right = tone(300.0, 1.0, rate, 0.4), tone(1200.0, 1.0, rate, 0.2)
    decoded = decode_audio(encode(np.stack([left, right], axis=1), rate, "WAV", "FLOAT"))
    assert decoded.source_channels == 2
    np.testing.assert_allclose(decoded.samples, (left + right) / 2, atol=1e-6)


def test_opposite_channels_cancel():
    x = tone(500.0, 0.5, 16000)
    assert rms(downmix(np.stack([x, -x], axis=1))) < 1e-6
    assert downmix(x[:, None]).shape == x.shape


def test_resampler_is_anti_aliased():
    """A 12 kHz tone at 44.1 kHz is above the 8 kHz Nyquist of 16 kHz: it must vanish, not fold
    to 4 kHz as plain decimation or linear interpolation would leave it."""
    rate = 44100
    high = tone(12000.0, 1.0, rate)
    out = resample(high, rate)
    assert len(out) == pytest.approx(TARGET_RATE, abs=2)
    interior = slice(500, -500)  # away from the filter's transients at the abrupt start and end
    assert rms(out[interior]) < 1e-3 * rms(high)
    naive = np.interp(np.arange(TARGET_RATE) / TARGET_RATE, np.arange(rate) / rate, high)
    assert rms(naive[interior]) > 0.1 * rms(high)  # what the resampler saves us from


def test_resampler_keeps_the_speech_band():
    rate = 48000
    out = decode_audio(encode(tone(3000.0, 1.0, rate), rate, "WAV", "FLOAT")).samples
    assert dominant_frequency(out, TARGET_RATE) == pytest.approx(3000.0, abs=2.0)
    assert rms(out[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_block_boundaries_do_not_click():
    """The streaming resampler over 64k-frame blocks equals resampling all at once."""
    rate = 44100
    source = tone(440.0, 4.0, rate)  # several blocks
    streamed = decode_audio(encode(source, rate, "WAV", "FLOAT")).samples
    whole = resample(source, rate)
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)


def test_non_finite_samples_are_cleaned():
    samples = tone(440.0, 0.5, 16000)
    samples[100], samples[200], samples[300] = np.nan, np.inf, -np.inf
    out = decode_audio(encode(samples, 16000, "WAV", "FLOAT")).samples
    assert np.all(np.isfinite(out)) and out[100] == 0.0 and out[200] == 1.0 and out[300] == -1.0


# ---- limits ----

def test_duration_limit_is_checked_from_the_header_before_decoding(monkeypatch):
    """An hour of silence compresses to a few kB of FLAC: refused without decoding a sample."""
    rate = 8000
    buf = io.BytesIO()
    with soundfile.SoundFile(buf, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(60):
            out.write(block)
    data = buf.getvalue()
    assert len(data) < 300_000  # small upload, 3600 s of audio

    def no_decoding(*args, **kwargs):
        raise AssertionError("samples were decoded before the duration check")

    monkeypatch.setattr(soundfile.SoundFile, "read", no_decoding)
    with pytest.raises(AudioTooLong, match="3600.0 seconds long") as info:
        decode_audio(data, max_seconds=600)
    assert info.value.param == "file" and isinstance(info.value, InvalidRequest)


def test_audio_at_the_limit_is_accepted():
    data = encode(tone(440.0, 5.0, 16000), 16000, "WAV")
    assert decode_audio(data, max_seconds=5).duration == pytest.approx(5.0)
    with pytest.raises(AudioTooLong):
        decode_audio(data, max_seconds=4.99)


# ---- garbage ----

@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello world, this is not audio" * 10, "could not be decoded"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "could not be decoded"),  # truncated header
    (b"\x00" * 4096, "could not be decoded"),
    (b"fLaC" + b"\xff" * 100, "could not be decoded"),
])
def test_garbage_is_refused(data, message):
    with pytest.raises(AudioDecodeError, match=message) as info:
        decode_audio(data)
    assert info.value.code == "invalid_audio" and info.value.param == "file"


def test_header_without_samples_is_refused():
    with pytest.raises(AudioDecodeError, match="no samples"):
        decode_audio(encode(np.zeros(0, dtype=np.float32), 16000, "WAV"))


def test_truncated_file_decodes_what_is_there():
    data = JFK_WAV.read_bytes()
    decoded = decode_audio(data[: len(data) // 2])
    assert decoded.duration == pytest.approx(5.5, abs=0.01)


_VALID = [encode(tone(440.0, 0.3, 16000), 16000, "WAV"),
          encode(tone(440.0, 0.3, 16000), 16000, "FLAC"),
          encode(tone(440.0, 0.3, 16000), 16000, "OGG", "VORBIS")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(_VALID), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                    max_size=8), cut=st.integers(0, 10**6))
def test_corrupted_files_fail_cleanly(base, flips, cut):
    """Damaged audio either decodes to finite 16 kHz samples or raises our 400-class error."""
    data = bytearray(base[: max(1, cut % (len(base) + 1))])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        decoded = decode_audio(bytes(data), max_seconds=60)
    except InvalidRequest:
        return
    assert decoded.samples.dtype == np.float32 and np.all(np.isfinite(decoded.samples))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_fail_cleanly(data):
    try:
        decode_audio(data, max_seconds=60)
    except InvalidRequest:
        pass


# ---- streaming decode and windows ----

def test_stream_blocks_equal_the_whole_decode():
    data = encode(tone(440.0, 9.0, 44100), 44100, "FLAC")
    stream = AudioStream(data)
    blocks = list(stream.blocks())
    assert len(blocks) > 1 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), decode_audio(data).samples)
    assert stream.duration == pytest.approx(9.0) and stream.frames_read == 9 * 44100


def test_stream_checks_the_header_before_decoding():
    with pytest.raises(AudioTooLong):
        AudioStream(encode(tone(440.0, 3.0, 16000), 16000, "WAV"), max_seconds=2)
    with pytest.raises(AudioDecodeError):
        AudioStream(b"not audio" * 50)


def test_windows_cover_the_audio_and_re_read_what_the_consumer_asks():
    audio = np.arange(1000, dtype=np.float32)
    blocks = [audio[i:i + 70] for i in range(0, 1000, 70)]
    windows = AudioWindows(iter(blocks), 300)
    seen, finals = [], []
    while True:
        window, final = windows.current()
        assert len(window) <= 300
        np.testing.assert_array_equal(window, audio[windows.offset:windows.offset + len(window)])
        seen.append((windows.offset, len(window)))
        finals.append(final)
        if final:
            break
        windows.advance(250)  # the consumer keeps the last 50 samples for the next window
    assert seen == [(0, 300), (250, 300), (500, 300), (750, 250)]
    assert finals == [False, False, False, True]


def test_a_window_exactly_at_the_end_is_final():
    windows = AudioWindows(iter([np.ones(100, np.float32), np.ones(0, np.float32)]), 100)
    window, final = windows.current()
    assert len(window) == 100 and final


def test_ten_minutes_stream_in_bounded_memory():
    """A 10-minute recording through the stream and 5-minute windows (the whisper backend's)
    never holds the recording as float32: the peak stays well under its 38 MB."""
    import tracemalloc

    rate, seconds = 16000, 600
    buf = io.BytesIO()
    with soundfile.SoundFile(buf, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        for i in range(seconds // 10):
            out.write((tone(200.0 + i, 10.0, rate) * 32767).astype(np.int16))
    data = buf.getvalue()
    whole = seconds * rate * 4
    tracemalloc.start()
    try:
        windows = AudioWindows(AudioStream(data).blocks(), 300 * rate)
        total = 0
        while True:
            window, final = windows.current()
            total += len(window)
            if final:
                break
            windows.advance(len(window))
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        decode_audio(data)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == seconds * rate
    assert whole_peak > whole  # what the old all-at-once decode costs, so the bound below means something
    assert streamed_peak < 0.6 * whole, streamed_peak
