"""localai vs llama.cpp's own llama-server, same model, same threads, in one run.

Run with `python3 build.py bench -k llama` (it builds build/bin/llama-server from the same
fetched source). Scenarios, each measured on both servers with /v1/completions, greedy,
ignore_eos so both generate exactly the same number of tokens:
  single_128   one stream generating 128 tokens            -> tokens/s
  streams4_128 four concurrent streams of 128 tokens       -> aggregate tokens/s
  ttft_512     time to first token for a 512-token prompt  -> seconds (a fresh prompt per round)
The last test prints the ratios (localai / llama-server) and writes them to
.benchmarks/llama-ratios.json.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, LiveServer, UpstreamLlamaServer

pytestmark = pytest.mark.bench

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
PARALLEL = 4
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# built by `python3 build.py bench`; LOCALAI_LLAMA_SERVER points at another build of the same source
LLAMA_SERVER = Path(os.environ.get("LOCALAI_LLAMA_SERVER") or ROOT / "build" / "bin" / "llama-server")
RESULTS: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def servers(chat_models_path, smollm_path):
    if not LLAMA_SERVER.exists():
        pytest.fail("build/bin/llama-server is missing: run `python3 build.py bench`")
    ours = LiveServer(chat_models_path, "--threads", str(THREADS), "--parallel", str(PARALLEL))
    upstream = UpstreamLlamaServer(LLAMA_SERVER, smollm_path, THREADS, "-np", str(PARALLEL), "-c", str(4096 * PARALLEL))
    yield {"localai": ours.port, "llama-server": upstream.port}
    ours.stop()
    upstream.stop()


def stream_completion(port: int, prompt, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, seconds to last token, tokens received) of one streamed completion."""
    body = {"model": "smollm2-135m-instruct", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    first = None
    chunks = 0
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        payload = json.loads(line[6:])
        choices = payload.get("choices") or []
        if choices and choices[0].get("text"):
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    conn.close()
    return first or total, total, chunks


PROMPT = "Once upon a time, in a land far away, there lived"


def single_128(port: int) -> float:
    _, total, _ = stream_completion(port, PROMPT, 128)
    return 128 / total


def streams4_128(port: int) -> float:
    totals: list[float] = []

    def one(i: int) -> None:
        totals.append(stream_completion(port, f"{PROMPT} {i} brave knights", 128)[1])

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 4 * 128 / (time.perf_counter() - started)


def ttft_512(port: int, _rng=random.Random(1234)) -> float:
    # 512 token ids from the ordinary-word range, fresh per call so no server can reuse a cached prefix
    prompt = [_rng.randrange(1000, 40000) for _ in range(512)]
    first, _, _ = stream_completion(port, prompt, 1)
    return first


SCENARIOS = {"single_128": single_128, "streams4_128": streams4_128, "ttft_512": ttft_512}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("server", ["localai", "llama-server"])
def test_bench(benchmark, servers, server, scenario):
    port = servers[server]
    SCENARIOS[scenario](port)  # warm-up (model load, caches)
    values: list[float] = []
    benchmark.group = scenario
    benchmark.extra_info["server"] = server
    benchmark.pedantic(lambda: values.append(SCENARIOS[scenario](port)), rounds=ROUNDS, iterations=1)
    RESULTS[(scenario, server)] = statistics.median(values)
    benchmark.extra_info["median"] = RESULTS[(scenario, server)]


def test_report_ratios():
    """Print localai / llama-server per scenario (tokens/s: higher is better; ttft: lower is better)."""
    measured = [s for s in SCENARIOS if (s, "localai") in RESULTS and (s, "llama-server") in RESULTS]
    if not measured:
        pytest.skip("no scenario was measured on both servers")
    report = {}
    lines = ["", f"localai vs llama-server (SmolLM2-135M Q4_1, {THREADS} threads, median of {ROUNDS})"]
    for scenario in measured:
        ours, theirs = RESULTS[(scenario, "localai")], RESULTS[(scenario, "llama-server")]
        unit = "s" if scenario.startswith("ttft") else "t/s"
        ratio = ours / theirs
        report[scenario] = {"localai": ours, "llama-server": theirs, "ratio": ratio, "unit": unit}
        lines.append(f"  {scenario:13s} localai {ours:8.3f} {unit:3s}  llama-server {theirs:8.3f} {unit:3s}  "
                     f"ratio {ratio:.3f}")
    print("\n".join(lines))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "llama-ratios.json").write_text(json.dumps(report, indent=2))
