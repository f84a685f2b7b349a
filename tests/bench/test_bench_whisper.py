"""Side by side: jfk.wav through our HTTP endpoint vs whisper.cpp's own `whisper-cli`.

Same source build, same converted tiny.en model, same threads, same decoding (greedy: our
server's default; whisper-cli is told `-bs 1`, as its own default is a 5-beam search).
Our time is the whole HTTP round trip (upload, decode, resample, whisper_full, JSON); the
model is loaded once, as a server does. whisper-cli's time is its own `total - load`
(reading the WAV, the state, whisper_full, printing): the same work minus our HTTP and
audio decoding. Rounds alternate between the two so both see the same machine.

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
from tests.audio_support import JFK_TEXT, JFK_WAV, MAX_WER, ROOT, wer
from tests.support import LiveServer

WHISPER_CLI = ROOT / "build" / "bin" / "whisper-cli"
ROUNDS = 9
AUDIO_SECONDS = 11.0


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory, whisper_model_path):
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("bench-audio")
    (folder / "whisper-1.yaml").write_text((ROOT / "models" / "whisper-1.yaml").read_text())
    place(whisper_model_path, folder / whisper_model_path.name)
    live = LiveServer(folder, "--threads", str(default_threads()))
    yield live
    live.stop()


def run_whisper_cli(model, threads: int) -> tuple[float, float, str]:
    """(seconds whisper-cli spent after loading the model, its whole process wall time, its transcript)."""
    started = time.perf_counter()
    result = subprocess.run([str(WHISPER_CLI), "-m", str(model), "-f", str(JFK_WAV), "-t", str(threads),
                             "-bs", "1", "-nt", "-l", "en"], capture_output=True, text=True, check=True)
    timings = {name: float(ms) for name, ms in
               re.findall(r"whisper_print_timings:\s+(\w+) time =\s+([\d.]+) ms", result.stderr)}
    assert "total" in timings and "load" in timings, result.stderr[-2000:]
    return (timings["total"] - timings["load"]) / 1000.0, time.perf_counter() - started, result.stdout


@pytest.mark.bench
def test_bench_transcription_vs_whisper_cli(benchmark, bench_server, whisper_model_path):
    if not WHISPER_CLI.exists():
        pytest.fail(f"{WHISPER_CLI} is missing: run `python3 build.py bench` (it builds whisper-cli)")
    threads = default_threads()
    wav = JFK_WAV.read_bytes()
    url = f"{bench_server.url}/v1/audio/transcriptions"

    def ours() -> str:
        response = requests.post(url, files={"file": ("jfk.wav", wav)}, data={"model": "whisper-1"}, timeout=300)
        response.raise_for_status()
        return response.json()["text"]

    cli_times: list[float] = []
    cli_walls: list[float] = []
    cli_texts: list[str] = []

    def whisper_cli_round() -> None:  # pedantic's untimed setup: alternates the two
        seconds, wall, text = run_whisper_cli(whisper_model_path, threads)
        cli_times.append(seconds)
        cli_walls.append(wall)
        cli_texts.append(text)

    ours()  # load the model and warm the state, as a serving process would be
    text = benchmark.pedantic(ours, setup=whisper_cli_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)

    # Same work: both transcripts are right and identical word for word.
    assert wer(JFK_TEXT, text) <= MAX_WER, text
    assert wer(text, cli_texts[-1]) == 0.0, (text, cli_texts[-1])

    our_median = benchmark.stats.stats.median
    cli_median = statistics.median(cli_times)
    cli_wall = statistics.median(cli_walls)
    speed_ratio = cli_median / our_median  # >= 1: we are faster; target >= 0.97
    benchmark.extra_info.update({
        "threads": threads, "rounds": ROUNDS, "ours_median_s": our_median, "whisper_cli_median_s": cli_median,
        "whisper_cli_process_wall_s": cli_wall,
        "speed_vs_whisper_cli": speed_ratio, "real_time_factor": our_median / AUDIO_SECONDS,
    })
    print(f"\njfk.wav ({AUDIO_SECONDS:.0f} s), tiny.en, {threads} threads, median of {ROUNDS}: "
          f"HTTP endpoint {our_median * 1000:.0f} ms, whisper-cli {cli_median * 1000:.0f} ms "
          f"(total - load; {cli_wall * 1000:.0f} ms as a whole process); speed ratio {speed_ratio:.3f}x whisper-cli; "
          f"real-time factor {our_median / AUDIO_SECONDS:.3f} ({AUDIO_SECONDS / our_median:.1f}x real time)")
