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
from typing import Iterable, Iterator

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


class AudioStream:
    """An uploaded file, checked from its header, decoded block by block on demand.

    ``blocks()`` yields 16 kHz mono float32 pieces of a few seconds each: a consumer that
    keeps only a window of them (the whisper backend does) never holds the whole recording
    as float32. Iterate it once; the file is closed when the iteration ends.
    """

    def __init__(self, data: bytes, *, max_seconds: float | None = None, target_rate: int = TARGET_RATE) -> None:
        if not data:
            raise AudioDecodeError("The audio file is empty.", param="file")
        sound = _open(data)
        try:
            rate, channels, frames = sound.samplerate, sound.channels, sound.frames
            if not 0 < rate <= _MAX_SAMPLE_RATE or not 0 < channels <= _MAX_CHANNELS:
                raise AudioDecodeError(f"The audio header is invalid ({rate} Hz, {channels} channels).",
                                       param="file")
            if frames <= 0:
                raise AudioDecodeError("The audio file contains no samples.", param="file")
            self.max_frames = None
            if max_seconds is not None:
                self.max_frames = math.ceil(max_seconds * rate)
                if frames > self.max_frames:
                    raise AudioTooLong(
                        f"The audio is {frames / rate:.1f} seconds long; this server accepts at most "
                        f"{max_seconds:g} seconds (--max-audio-seconds).", param="file")
        except BaseException:
            sound.close()
            raise
        self._sound = sound
        self.source_rate, self.source_channels = rate, channels
        self.source_format = sound.format if not sound.subtype else f"{sound.format}/{sound.subtype}"
        self.target_rate = target_rate
        self.frames_read = 0
        self._header_frames = frames
        self._finished = False

    @property
    def duration(self) -> float:
        """Seconds of the recording: from the header until the last block is read, then exact."""
        frames = self.frames_read if self._finished else self._header_frames
        return frames / self.source_rate

    def close(self) -> None:
        self._sound.close()

    def blocks(self) -> Iterator[np.ndarray]:
        """Decode, downmix and resample one block at a time (AudioDecodeError when corrupt)."""
        sound, rate = self._sound, self.source_rate
        stream = (soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
                  if rate != self.target_rate else None)
        try:
            while True:
                try:
                    block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioDecodeError(f"The audio file is corrupt ({_reason(exc)}).", param="file") from None
                n = len(block)
                self.frames_read += n
                # The header was checked already; this guards against a header that understates.
                if self.max_frames is not None and self.frames_read > self.max_frames:
                    raise AudioTooLong(f"The audio is longer than this server's limit of "
                                       f"{self.max_frames / rate:g} seconds (--max-audio-seconds).", param="file")
                last = n < _BLOCK_FRAMES
                mono = downmix(block)
                del block
                if stream is not None:
                    mono = stream.resample_chunk(mono, last=last)
                if last:
                    self._finished = True
                    if self.frames_read == 0:
                        raise AudioDecodeError("The audio file contains no decodable samples.", param="file")
                if len(mono):
                    yield _finite(mono)
                if last:
                    return
        finally:
            sound.close()


def _finite(samples: np.ndarray) -> np.ndarray:
    """Float WAVs can carry NaN/inf; whisper would propagate them."""
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode_audio(data: bytes, *, max_seconds: float | None = None, target_rate: int = TARGET_RATE) -> DecodedAudio:
    """Decode an audio file held in memory to mono float32 at ``target_rate``, all at once.

    Raises AudioDecodeError for empty, unknown or corrupt input and AudioTooLong when the
    header says the audio lasts longer than ``max_seconds`` (checked before decoding).
    """
    audio = AudioStream(data, max_seconds=max_seconds, target_rate=target_rate)
    pieces = list(audio.blocks())
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return DecodedAudio(samples=samples, duration=audio.duration, source_rate=audio.source_rate,
                        source_channels=audio.source_channels, source_format=audio.source_format)


class AudioWindows:
    """Windows of at most ``size`` samples over a stream of blocks, filled into one buffer of
    that size: only the window and one block are held. ``advance`` says where the next window
    starts, so a consumer may read the end of the current one again. The array ``current``
    returns is overwritten by the next call."""

    def __init__(self, blocks: Iterable[np.ndarray], size: int) -> None:
        self._blocks = iter(blocks)
        self.size = size
        self._window = np.empty(size, dtype=np.float32)
        self._filled = 0
        self._carry: np.ndarray | None = None  # the part of a block beyond the window
        self._exhausted = False
        self.offset = 0  # samples before the current window

    def _next_block(self) -> np.ndarray | None:
        if self._carry is not None:
            block, self._carry = self._carry, None
            return block
        for block in self._blocks:
            if len(block):
                return np.asarray(block, dtype=np.float32)
        self._exhausted = True
        return None

    def current(self) -> tuple[np.ndarray, bool]:
        """(the window's samples, whether it reaches the end of the audio)."""
        while self._filled < self.size and (block := self._next_block()) is not None:
            take = min(len(block), self.size - self._filled)
            self._window[self._filled:self._filled + take] = block[:take]
            self._filled += take
            if take < len(block):
                self._carry = block[take:]
        if self._carry is None and not self._exhausted:  # full: is there more after it?
            self._carry = self._next_block()
        return self._window[:self._filled], self._carry is None

    def advance(self, samples: int) -> None:
        samples = min(samples, self._filled)
        kept = self._filled - samples
        self._window[:kept] = self._window[samples:self._filled]  # numpy copies overlapping ranges safely
        self._filled = kept
        self.offset += samples


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
