"""/v1/audio/transcriptions and /v1/audio/translations over the whisper backend.

Requests are multipart/form-data as the OpenAI SDK sends them. The uploaded file is read
into memory (its size is capped by the upload limit) and decoded in-process, block by block
as the backend transcribes; its file name is never used for anything. ``stream=true`` sends
OpenAI's transcript events as each segment is final.
"""

from __future__ import annotations

import logging
import math
import unicodedata
import zlib
from typing import Iterator

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.http import (ApiRequest, Server, client_gone, deadline, json_response, mid_stream_error, sse,
                              stream_response, text_response)
from localai.audio import AudioStream
from localai.capabilities import Capability, Segment, Transcript
from localai.errors import InvalidRequest, PayloadTooLarge

log = logging.getLogger("localai.audio")

RESPONSE_FORMATS = schemas.AUDIO_RESPONSE_FORMATS
GRANULARITIES = ("word", "segment")
STREAM_FORMATS = ("json", "text")
# whisper's encoder reads 50 positions per second of audio (1500 per 30 s window): the
# streamed usage counts those as the input's audio tokens.
AUDIO_TOKENS_PER_SECOND = 50


def on_transcriptions(app: Server, request: ApiRequest) -> Response:
    return _handle(app, request, translate=False)


def on_translations(app: Server, request: ApiRequest) -> Response:
    return _handle(app, request, translate=True)


def _form(app: Server, request: ApiRequest):
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("Audio requests must be sent as multipart/form-data with the audio in a `file` field.",
                             param="file")
    try:
        return request.form, request.files
    except RequestEntityTooLarge:
        limit = app.settings.upload_limit_mb
        raise PayloadTooLarge(f"The uploaded file is larger than this server's limit of {limit:g} MB "
                              "(--upload-limit / UPLOAD_LIMIT).", param="file", code="file_too_large") from None


def _temperature(value: str | None) -> float | None:
    """The request's temperature; None: the model's default (0 unless its YAML says otherwise)."""
    if value is None or value == "":
        return None
    try:
        temperature = float(value)
    except ValueError:
        raise InvalidRequest(f"Invalid temperature {value!r}: expected a number between 0 and 1.",
                             param="temperature") from None
    if not 0.0 <= temperature <= 1.0:
        raise InvalidRequest(f"temperature must be between 0 and 1, got {temperature:g}.", param="temperature")
    return temperature


def _granularities(form, response_format: str) -> set[str]:
    values = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    wanted = {v.strip() for v in values if v.strip()}
    unknown = wanted - set(GRANULARITIES)
    if unknown:
        raise InvalidRequest(f"Invalid timestamp_granularities {sorted(unknown)}: use 'word' and/or 'segment'.",
                             param="timestamp_granularities")
    if "word" in wanted and response_format != "verbose_json":
        raise InvalidRequest("timestamp_granularities 'word' requires response_format 'verbose_json'.",
                             param="timestamp_granularities")
    return wanted


def _handle(app: Server, request: ApiRequest, *, translate: bool) -> Response:
    form, files = _form(app, request)
    upload = files.get("file")
    if upload is None:
        raise InvalidRequest("Missing the audio file: send it in the `file` field.", param="file")
    schemas.validate("audio", {**{key: form.getlist(key) if key.endswith("[]") else form.get(key) for key in form},
                               "file": ""})
    config = app.resolve_model(request, form.get("model") or None)
    app.manager.require(config, Capability.TRANSCRIPTION)
    response_format = (form.get("response_format") or "json").strip()
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(f"Invalid response_format {response_format!r}: use one of {', '.join(RESPONSE_FORMATS)}.",
                             param="response_format")
    granularities = _granularities(form, response_format)
    temperature = _temperature(form.get("temperature"))
    prompt = form.get("prompt") or None
    stream = _flag(form.get("stream"), "stream")
    if stream and translate:
        raise InvalidRequest("stream is supported on /v1/audio/transcriptions, not on translations.", param="stream")
    if stream and response_format not in STREAM_FORMATS:
        raise InvalidRequest(f"stream=true sends transcript events; response_format must be "
                             f"{' or '.join(STREAM_FORMATS)}, not {response_format!r}.", param="stream")

    engine = app.manager.engine_for(config, Capability.TRANSCRIPTION)
    if translate:
        engine.check_translate()
        language = None  # translations take no language: the source is detected
    else:
        language = engine.language(form.get("language"))

    audio = AudioStream(upload.read(), max_seconds=app.settings.max_audio_seconds)
    try:
        job = engine.start(audio.blocks(), language=language, translate=translate, prompt=prompt,
                           temperature=temperature, word_timestamps="word" in granularities)
    except BaseException:
        audio.close()
        raise
    if stream:
        return stream_response(_events(app, request, job, audio), on_close=job.cancel)
    transcript = job.result(abandoned=client_gone(request), deadline=deadline(app.settings))
    request.record.tokens = sum(len(s.tokens) for s in transcript.segments)
    temperature = engine.default_temperature if temperature is None else temperature

    if response_format == "text":
        return text_response(transcript.text + "\n")
    if response_format == "srt":
        return text_response(srt(transcript.segments))
    if response_format == "vtt":
        return text_response(vtt(transcript.segments))
    if response_format == "lrc":
        return text_response(lrc(transcript.segments))
    usage = {"type": "duration", "seconds": math.ceil(audio.duration)}
    if response_format == "json":
        return json_response({"text": transcript.text, "usage": usage})
    body: dict = {
        "task": "translate" if translate else "transcribe",
        # OpenAI: the input's language for transcriptions, the output's ("english") for translations.
        "language": "english" if translate else engine.language_name(transcript.language or language),
        "duration": audio.duration,
        "text": transcript.text,
    }
    # OpenAI's rule: segments unless only word timestamps were asked for.
    if granularities != {"word"}:
        body["segments"] = segments_json(transcript.segments, temperature)
    if "word" in granularities:
        body["words"] = words_json(transcript)
    body["usage"] = usage
    return json_response(body)


def _flag(value: str | None, param: str) -> bool:
    text = (value or "").strip().lower()
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise InvalidRequest(f"Invalid {param} {value!r}: expected true or false.", param=param)


def _events(app: Server, request: ApiRequest, job, audio: AudioStream) -> Iterator[bytes]:
    """OpenAI's transcript events: a ``transcript.text.delta`` per segment as it is final, then
    ``transcript.text.done`` with the whole text; an error after the first event is an event."""
    started = False
    gone, stop_at = client_gone(request), deadline(app.settings)  # one deadline for the whole stream
    try:
        for segment in job.segments(abandoned=gone, deadline=stop_at):
            yield sse({"type": "transcript.text.delta", "delta": segment.text if started else segment.text.lstrip()})
            started = True
        transcript = job.result(abandoned=gone, deadline=stop_at)
    except Exception as exc:
        if not started:
            raise
        yield sse({"type": "error", **mid_stream_error(exc, log, "transcription").body()})
        return
    output = sum(len(s.tokens) for s in transcript.segments)
    request.record.tokens = output
    audio_tokens = math.ceil(audio.duration * AUDIO_TOKENS_PER_SECOND)
    yield sse({"type": "transcript.text.done", "text": transcript.text,
               "usage": {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": output,
                         "total_tokens": audio_tokens + output,
                         "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}})


# ---- response bodies ----------------------------------------------------------------------------------

def compression_ratio(text: str) -> float:
    """OpenAI's gzip-style measure of repetition: raw bytes / zlib-compressed bytes."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def segments_json(segments: list[Segment], temperature: float) -> list[dict]:
    """OpenAI's segment objects. As in openai-whisper, avg_logprob and compression_ratio describe
    the whole 30 s decoding window a segment came from (segments of one window share ``seek``)."""
    windows: dict[int, list[Segment]] = {}
    for segment in segments:
        windows.setdefault(segment.seek, []).append(segment)
    window_stats = {}
    for seek, members in windows.items():
        logprobs = [t.logprob for m in members for t in m.tokens]
        window_stats[seek] = (sum(logprobs) / len(logprobs) if logprobs else 0.0,
                              compression_ratio("".join(m.text for m in members)))
    out = []
    for index, segment in enumerate(segments):
        avg_logprob, ratio = window_stats[segment.seek]
        out.append({
            "id": index,
            "seek": segment.seek,
            "start": segment.start,
            "end": segment.end,
            "text": segment.text,
            "tokens": segment.token_ids,
            # whisper.cpp does not report which fallback temperature a window needed; this is the request's.
            "temperature": temperature,
            "avg_logprob": avg_logprob,
            "compression_ratio": ratio,
            "no_speech_prob": segment.no_speech_prob,
        })
    return out


def _strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[start:end]


def words_json(transcript: Transcript) -> list[dict]:
    """OpenAI's words: the bare word (no surrounding punctuation) with its start and end."""
    out = []
    for word in transcript.words:
        text = _strip_punctuation(word.text)
        if text:
            out.append({"word": text, "start": max(0.0, word.start), "end": max(0.0, word.end)})
    return out


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[Segment]) -> str:
    blocks = [f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
              for i, s in enumerate(segments, start=1)]
    return "\n".join(blocks) + ("\n" if blocks else "")


def vtt(segments: list[Segment]) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks) + ("\n" if blocks else "")


def lrc(segments: list[Segment]) -> str:
    """LocalAI's (and whisper-cli's) lyrics format: ``[mm:ss.xx]`` and the text, a line per segment."""
    lines = ["[by:localai]"]
    for segment in segments:
        centis = max(0, round(segment.start * 100))
        minutes, centis = divmod(centis, 6000)
        lines.append(f"[{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}]{segment.text.strip()}")
    return "\n".join(lines) + "\n"
