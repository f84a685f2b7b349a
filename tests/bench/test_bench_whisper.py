"""Side by side: our HTTP endpoint vs whisper.cpp's own `whisper-cli`, with matching decoding.

Same source build, same converted tiny.en model, same threads, for both decodings: the
default (a 5-beam search with temperature fallback, whisper-cli's own default) and greedy
(`beam_size: 1` in the model YAML; whisper-cli `-bs 1`). Both decode with timestamp tokens
(whisper-cli's `-nt` would decode without them, which changes the words).

Our time is the whole HTTP round trip (upload, audio decoding, resampling, whisper_full,
JSON); the model is loaded once, as a server does. whisper-cli's time is its own
`total - load` (reading the audio, whisper_full, printing): the same work minus our HTTP and
audio decoding. Rounds pair the two, the order alternating, so both see the same machine.
Word error rates on the committed clips are printed for both; the transcripts must be equal.

    flock /tmp/localai-build.lock python3 build.py bench -k whisper
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time

import pytest
import requests

from localai.bindings import default_threads
from tests.audio_support import FOX_FLAC, FOX_TEXT, JFK_TEXT, JFK_WAV, ROOT, wer
from tests.bench.support import paired_ratio, paired_rounds
from tests.support import LiveServer

WHISPER_CLI = ROOT / "build" / "bin" / "whisper-cli"
ROUNDS = 9
AUDIO_SECONDS = 11.0
# decoding: (whisper-cli flags, our model name)
DECODINGS = {"default": ((), "whisper-1"), "greedy": (("-bs", "1"), "whisper-greedy")}
CLIPS = {"jfk.wav": (JFK_WAV, JFK_TEXT), "speech-en.flac": (FOX_FLAC, FOX_TEXT)}


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory, whisper_model_path):
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("bench-audio")
    (folder / "whisper-1.yaml").write_text((ROOT / "models" / "whisper-1.yaml").read_text())
    (folder / "whisper-greedy.yaml").write_text(
        f"name: whisper-greedy\nbackend: whisper\nbeam_size: 1\nparameters:\n  model: {whisper_model_path.name}\n")
    place(whisper_model_path, folder / whisper_model_path.name)
    live = LiveServer(folder, "--threads", str(default_threads()))
    yield live
    live.stop()


def run_whisper_cli(model, audio, threads: int, flags: tuple[str, ...]) -> tuple[float, str]:
    """(seconds whisper-cli spent after loading the model, its transcript)."""
    result = subprocess.run([str(WHISPER_CLI), "-m", str(model), "-f", str(audio), "-t", str(threads),
                             "-l", "en", *flags], capture_output=True, text=True, check=True)
    timings = {name: float(ms) for name, ms in
               re.findall(r"whisper_print_timings:\s+(\w+) time =\s+([\d.]+) ms", result.stderr)}
    assert "total" in timings and "load" in timings, result.stderr[-2000:]
    text = " ".join(re.sub(r"^\[[^]]*\]\s*", "", line).strip() for line in result.stdout.splitlines() if line.strip())
    return (timings["total"] - timings["load"]) / 1000.0, text


@pytest.mark.bench
@pytest.mark.parametrize("decoding", list(DECODINGS))
def test_bench_transcription_vs_whisper_cli(benchmark, bench_server, whisper_model_path, decoding):
    if not WHISPER_CLI.exists():
        pytest.fail(f"{WHISPER_CLI} is missing: run `python3 build.py bench` (it builds whisper-cli)")
    flags, model = DECODINGS[decoding]
    threads = default_threads()
    url = f"{bench_server.url}/v1/audio/transcriptions"

    def ours_text(audio) -> str:
        response = requests.post(url, files={"file": (audio.name, audio.read_bytes())}, data={"model": model},
                                 timeout=300)
        response.raise_for_status()
        return response.json()["text"]

    def ours() -> float:
        started = time.perf_counter()
        ours_text(JFK_WAV)
        return time.perf_counter() - started

    def cli() -> float:
        return run_whisper_cli(whisper_model_path, JFK_WAV, threads, flags)[0]

    # Same work: on every clip, both transcripts are the same words; their error rates are printed.
    rates = {}
    for clip, (audio, reference) in CLIPS.items():
        text, cli_text = ours_text(audio), run_whisper_cli(whisper_model_path, audio, threads, flags)[1]
        rates[clip] = (wer(reference, text), wer(reference, cli_text))
        assert wer(cli_text, text) == 0.0, (clip, text, cli_text)

    times = paired_rounds(benchmark, {"ours": ours, "whisper-cli": cli}, ROUNDS)
    ratio = 1 / paired_ratio(times["ours"], times["whisper-cli"])  # >= 1: we are faster; target >= 0.97
    our_median, cli_median = statistics.median(times["ours"]), statistics.median(times["whisper-cli"])
    benchmark.extra_info.update({
        "decoding": decoding, "threads": threads, "rounds": ROUNDS, "ours_median_s": our_median,
        "whisper_cli_median_s": cli_median, "speed_vs_whisper_cli": ratio,
        "wer": {clip: {"ours": a, "whisper_cli": b} for clip, (a, b) in rates.items()},
    })
    print(f"\n{decoding} decoding, jfk.wav ({AUDIO_SECONDS:.0f} s), tiny.en, {threads} threads, {ROUNDS} paired "
          f"rounds: HTTP endpoint {our_median * 1000:.0f} ms, whisper-cli {cli_median * 1000:.0f} ms "
          f"(total - load); speed ratio {ratio:.3f}x whisper-cli (median of per-round ratios); WER "
          + ", ".join(f"{clip} {a:.3f} (whisper-cli {b:.3f})" for clip, (a, b) in rates.items()))
