"""Uploaded audio → 16 kHz mono float32, in-process (libsndfile via soundfile, libsoxr via soxr).

No ffmpeg and no shell: the bytes are decoded from memory, so an uploaded file name is never
a path and never reaches a command line. libsndfile recognises the container from the
content (WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, ...).

Limits are checked from the header *before* any sample is decoded: a few kilobytes of FLAC
or Vorbis can describe hours of audio, so the upload size alone bounds nothing.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

from localai.errors import InvalidRequest

TARGET_RATE = 16000
# Frames read (and downmixed) per step: bounds the multichannel buffer while decoding.
_BLOCK_FRAMES = 1 << 16
# Beyond these the header is nonsense or hostile; no real recording uses them.
_MAX_SAMPLE_RATE = 768_000
_MAX_CHANNELS = 64


class AudioDecodeError(InvalidRequest):
    """The upload is not audio we can decode (HTTP 400)."""

    code = "invalid_audio"


class AudioTooLong(InvalidRequest):
    """The decoded audio would exceed the server's duration limit (HTTP 400)."""

    code = "audio_too_long"


@dataclass
class DecodedAudio:
    samples: np.ndarray  # float32, mono, TARGET_RATE
    duration: float  # seconds of the original recording
    source_rate: int
    source_channels: int
    source_format: str  # e.g. "FLAC", "OGG/VORBIS"


def _open(data: bytes) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(
            "The audio file could not be decoded; supported formats are WAV, FLAC, OGG (Vorbis, Opus), MP3, "
            f"AIFF and the other formats of libsndfile ({_reason(exc)}).", param="file") from None


def _reason(exc: Exception) -> str:
    text = str(exc).split(": ", 1)[-1] if isinstance(exc, soundfile.LibsndfileError) else str(exc)
    return text.strip().rstrip(".") or type(exc).__name__


def decode_audio(data: bytes, *, max_seconds: float | None = None, target_rate: int = TARGET_RATE) -> DecodedAudio:
    """Decode an audio file held in memory to mono float32 at ``target_rate``.

    Raises AudioDecodeError for empty, unknown or corrupt input and AudioTooLong when the
    header says the audio lasts longer than ``max_seconds`` (checked before decoding).
    """
    if not data:
        raise AudioDecodeError("The audio file is empty.", param="file")
    with _open(data) as sound:
        rate, channels, frames = sound.samplerate, sound.channels, sound.frames
        kind = sound.format if not sound.subtype else f"{sound.format}/{sound.subtype}"
        if not 0 < rate <= _MAX_SAMPLE_RATE or not 0 < channels <= _MAX_CHANNELS:
            raise AudioDecodeError(f"The audio header is invalid ({rate} Hz, {channels} channels).", param="file")
        if frames <= 0:
            raise AudioDecodeError("The audio file contains no samples.", param="file")
        max_frames = None
        if max_seconds is not None:
            max_frames = math.ceil(max_seconds * rate)
            if frames > max_frames:
                raise AudioTooLong(
                    f"The audio is {frames / rate:.1f} seconds long; this server accepts at most "
                    f"{max_seconds:g} seconds (--max-audio-seconds).", param="file")
        samples, read_frames = _read_mono_resampled(sound, rate, target_rate, max_frames)
    if read_frames == 0:
        raise AudioDecodeError("The audio file contains no decodable samples.", param="file")
    return DecodedAudio(samples=samples, duration=read_frames / rate, source_rate=rate,
                        source_channels=channels, source_format=kind)


def _read_mono_resampled(sound: soundfile.SoundFile, rate: int, target_rate: int,
                         max_frames: int | None) -> tuple[np.ndarray, int]:
    """Block by block: decode, downmix, resample; only the 16 kHz mono result is kept whole.

    Returns the samples and the number of source frames read."""
    stream = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ") if rate != target_rate else None
    pieces: list[np.ndarray] = []
    total = 0
    while True:
        try:
            block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioDecodeError(f"The audio file is corrupt ({_reason(exc)}).", param="file") from None
        n = len(block)
        total += n
        # The header was checked already; this guards against a header that understates.
        if max_frames is not None and total > max_frames:
            raise AudioTooLong(f"The audio is longer than this server's limit of {max_frames / rate:g} seconds "
                               "(--max-audio-seconds).", param="file")
        last = n < _BLOCK_FRAMES
        mono = downmix(block)
        if stream is not None:
            mono = stream.resample_chunk(mono, last=last)
        if len(mono):
            pieces.append(mono)
        if last:
            break
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if not np.all(np.isfinite(samples)):  # float WAVs can carry NaN/inf; whisper would propagate them
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.ascontiguousarray(samples, dtype=np.float32), total


def downmix(block: np.ndarray) -> np.ndarray:
    """(frames, channels) → (frames,) float32 by averaging the channels."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, source_rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Band-limited (anti-aliased) resampling of mono float32 audio with libsoxr."""
    if source_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), source_rate, target_rate, quality="HQ")
