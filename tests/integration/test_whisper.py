"""whisper tiny.en through our bindings and backend: accuracy, timestamps, states, concurrency."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile

from localai.backends.whisper import WhisperEngine, load
from localai.bindings import default_threads
from localai.bindings import whisper as W
from localai.config import ModelConfig, Parameters
from localai.errors import InvalidRequest, NativeError
from localai.settings import Settings
from tests.audio_support import FOX_FLAC, JFK_TEXT, JFK_WAV, MAX_WER, wer


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    samples, rate = soundfile.read(JFK_WAV, dtype="float32")
    assert rate == W.SAMPLE_RATE and samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def model(whisper_model_path):
    with W.WhisperModel(whisper_model_path) as m:
        yield m


@pytest.fixture(scope="module")
def plain(model, jfk) -> W.Transcript:
    """One default transcription of the clip, shared by the tests that only read it."""
    return model.transcribe(jfk, n_threads=2)


def test_jfk_transcript_is_accurate(model, plain):
    assert wer(JFK_TEXT, plain.text) <= MAX_WER, plain.text
    assert plain.language == "en"
    assert not model.multilingual


def test_segments_carry_openai_fields(model, plain):
    segments = plain.segments
    assert segments and segments[0].start == 0.0
    assert all(s.start < s.end <= 11.5 for s in segments)
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))
    first = segments[0]
    # A window's first segment opens with a timestamp token; the clip is one window (seek 0).
    assert first.tokens[0].is_timestamp and first.tokens[0].id == model.token_beg
    assert all(s.seek == 0 for s in segments)
    text_tokens = [t for s in segments for t in s.tokens if not t.is_timestamp]
    assert all(t.id < model.token_eot for t in text_tokens)
    assert all(t.logprob <= 0.0 and 0.0 <= t.probability <= 1.0 for t in text_tokens)
    assert all(0.0 <= s.no_speech_prob < 0.5 for s in segments)
    assert -1.5 < first.avg_logprob < 0


def test_word_timestamps_are_ordered_and_inside_the_clip(model, jfk):
    transcript = model.transcribe(jfk, n_threads=2, word_timestamps=True)
    words = transcript.words
    assert wer(JFK_TEXT, " ".join(w.text for w in words)) <= MAX_WER
    assert all(0.0 <= w.start <= w.end <= 11.5 for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    fellow = next(w for w in words if w.text.lower() == "fellow")
    assert 0.5 < fellow.start < 2.5  # "fellow" is said about a second in


def test_long_audio_spans_windows_with_increasing_seek(model, jfk):
    """33 s of audio needs two 30 s windows: later segments report a later seek."""
    audio = np.concatenate([jfk, jfk, jfk])
    transcript = model.transcribe(audio, n_threads=2)
    assert wer(" ".join([JFK_TEXT] * 3), transcript.text) <= MAX_WER, transcript.text
    seeks = [s.seek for s in transcript.segments]
    assert seeks == sorted(seeks) and seeks[0] == 0 and seeks[-1] > 0
    assert all(s.start * 100 >= s.seek for s in transcript.segments)
    assert transcript.segments[-1].end > 30.0


def test_concurrent_states_do_not_interfere(model, jfk):
    """Two requests on two states at once give exactly what each gives alone (on fresh states)."""
    first_half = jfk[: len(jfk) // 2]
    alone = [model.transcribe(jfk, n_threads=1).text, model.transcribe(first_half, n_threads=1).text]
    assert alone[0] != alone[1]
    states = [model.new_state(), model.new_state()]
    results: dict[int, list[str]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def run(index: int, audio: np.ndarray) -> None:
        try:
            results[index].append(states[index].transcribe(audio, n_threads=1).text)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(0, jfk)), threading.Thread(target=run, args=(1, first_half))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {0: [alone[0]], 1: [alone[1]]}
    for state in states:
        state.close()


def test_prompt_is_not_carried_to_the_next_request(model, jfk, plain):
    """The prompt changes the output (proof it is used), then leaves no trace on the state."""
    prompted = model.transcribe(jfk, n_threads=2, prompt="JFK, 1961. And so, my fellow Americans: ask not.")
    assert prompted.text != plain.text and wer(JFK_TEXT, prompted.text) <= MAX_WER
    assert model.transcribe(jfk, n_threads=2).text == plain.text


def test_closed_state_and_model_refuse_work(whisper_model_path, jfk):
    m = W.WhisperModel(whisper_model_path)
    state = m.new_state()
    state.close()
    state.close()
    with pytest.raises(NativeError):
        state.transcribe(jfk)
    other = m.new_state()
    m.close()  # frees the remaining state first
    assert other.closed
    with pytest.raises(NativeError):
        m.transcribe(jfk)
    m.close()


def test_language_table():
    assert W.language_id("en") == W.language_id("English") == 0
    assert W.language_name(W.language_id("de")) == "german"
    assert W.language_id("xx") == -1 and W.language_id("") == -1


# ---- the backend ----

@pytest.fixture(scope="module")
def engine(whisper_model_path):
    settings = Settings(models_path=whisper_model_path.parent, threads=1)
    config = ModelConfig(name="whisper-1", backend="whisper", parameters=Parameters(model=whisper_model_path.name),
                         parallel=2)
    eng = load(config, settings)
    yield eng
    eng.close()


def test_engine_transcribes_concurrent_requests(engine, jfk):
    assert isinstance(engine, WhisperEngine) and engine.n_threads == 1 and engine.max_parallel == 2
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(engine.transcribe(jfk).text)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(texts) == 2 and len(set(texts)) == 1
    assert wer(JFK_TEXT, texts[0]) <= MAX_WER
    assert len(engine._idle) <= 2  # never more states than the pool allows


def test_engine_validates_language_and_translation(engine):
    assert engine.language("EN") == "en" and engine.language("english") == "en"
    assert engine.language(None) is None and engine.language("auto") is None
    with pytest.raises(InvalidRequest, match="English-only"):
        engine.language("de")
    with pytest.raises(InvalidRequest, match="not supported"):
        engine.language("klingon")
    with pytest.raises(InvalidRequest, match="English-only"):
        engine.check_translate()
    assert engine.language_name("en") == "english"


def test_engine_threads_default_from_settings(whisper_model_path):
    config = ModelConfig(name="w", backend="whisper", parameters=Parameters(model=whisper_model_path.name))
    eng = load(config, Settings(models_path=whisper_model_path.parent, threads=2))
    try:
        assert eng.n_threads == 2 and eng.max_parallel == max(1, default_threads() // 2)
    finally:
        eng.close()
    config.threads = 1
    eng = load(config, Settings(models_path=whisper_model_path.parent, threads=2))
    try:
        assert eng.n_threads == 1
    finally:
        eng.close()


def test_engine_results_do_not_depend_on_earlier_requests(engine, jfk, whisper_model_path):
    """The beam search on a reused whisper.cpp state picks other words after earlier runs; the
    engine gives every request a fresh state, so the same audio always reads the same, and
    reads as on a state that never ran before (as whisper-cli does)."""
    fox, _ = soundfile.read(FOX_FLAC, dtype="float32")
    reference = W.WhisperModel(whisper_model_path)
    try:
        first_run = reference.new_state().transcribe(fox, n_threads=1).text
    finally:
        reference.close()
    texts = [engine.transcribe(audio).text for audio in (fox, jfk, fox, jfk, fox)]
    assert texts[0] == texts[2] == texts[4] == first_run
    assert texts[1] == texts[3]


def test_yaml_decoding_options_reach_the_engine(whisper_model_path):
    from localai.config import parse_model_config

    config = parse_model_config({"name": "w", "backend": "whisper", "beam_size": 1, "best_of": 3,
                                 "temperature_increment": 0, "entropy_threshold": 2.0, "logprob_threshold": -2,
                                 "no_speech_threshold": 0.4, "parameters": {"model": whisper_model_path.name,
                                                                            "temperature": 0.1}})
    eng = load(config, Settings(models_path=whisper_model_path.parent, threads=2))
    try:
        assert eng.decoding == W.DecodeOptions(beam_size=1, best_of=3, temperature=0.1, temperature_increment=0.0,
                                               entropy_threshold=2.0, logprob_threshold=-2.0,
                                               no_speech_threshold=0.4)
        assert eng.default_temperature == pytest.approx(0.1)
    finally:
        eng.close()
    default = load(ModelConfig(name="d", backend="whisper", parameters=Parameters(model=whisper_model_path.name)),
                   Settings(models_path=whisper_model_path.parent, threads=2))
    try:
        assert default.decoding.beam_size == 5 and default.decoding.best_of == 5  # whisper-cli's
    finally:
        default.close()


def test_windows_join_into_one_timeline(whisper_model_path, jfk):
    """Three clips in 15 s windows: each window's last segment is read again by the next, and
    the segments line up on the recording's timeline as one 33 s transcription's do."""
    model = W.WhisperModel(whisper_model_path)
    eng = WhisperEngine(model, name="w", n_threads=2, max_parallel=1, window_seconds=15)
    try:
        gap = np.zeros(W.SAMPLE_RATE // 2, np.float32)
        audio = np.concatenate([jfk, gap, jfk, gap, jfk])
        blocks = [audio[i:i + 20000] for i in range(0, len(audio), 20000)]
        job = eng.start(iter(blocks))
        streamed = list(job.segments())
        transcript = job.result()
    finally:
        eng.close()
    assert [s.text for s in streamed] == [s.text for s in transcript.segments]
    assert wer(" ".join([JFK_TEXT] * 3), transcript.text) <= MAX_WER, transcript.text
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end > 30.0
    assert max(s.seek for s in transcript.segments) > 15 * 100  # a later window's
    assert all(s.start * 100 >= s.seek for s in transcript.segments)
