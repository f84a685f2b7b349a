"""localai vs llama.cpp's own llama-server, same model, same threads, in one run.

Run with `python3 build.py bench -k llama` (it builds build/bin/llama-server from the same
fetched source). Scenarios, each measured on both servers with /v1/completions, greedy,
ignore_eos so both generate exactly the same number of tokens:
  single_128   one stream generating 128 tokens            -> tokens/s
  streams4_128 four concurrent streams of 128 tokens       -> aggregate tokens/s
  ttft_512     time to first token for a 512-token prompt  -> seconds (a fresh prompt per round)
Each round measures both servers back to back, alternating which goes first, and the ratio is
the median of the per-round ratios. A last measurement runs llama_decode alone (no server) for
one and for four sequences: the ceiling either server can approach. The last test prints the
ratios (localai / llama-server) and writes them to .benchmarks/llama-ratios.json.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.bench.support import UpstreamLlamaServer, paired_ratio, paired_rounds
from tests.support import ROOT, LiveServer

pytestmark = pytest.mark.bench

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
PARALLEL = 4
# the warm-up before each measured request (see paired_rounds; 0: none): without it, ratios
# alternated 0.8 / 1.2 with the order of the round
WARMUP_TOKENS = int(os.environ.get("BENCH_WARMUP_TOKENS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
# built by `python3 build.py bench`; LOCALAI_LLAMA_SERVER points at another build of the same source
LLAMA_SERVER = Path(os.environ.get("LOCALAI_LLAMA_SERVER") or ROOT / "build" / "bin" / "llama-server")
RESULTS: dict[str, dict] = {}  # scenario -> medians, paired ratio, every round
CEILING: dict[int, float] = {}  # sequences per step -> raw llama_decode tokens/s


@pytest.fixture(scope="module")
def servers(chat_models_path, smollm_path):
    if not LLAMA_SERVER.exists():
        pytest.fail("build/bin/llama-server is missing: run `python3 build.py bench`")
    ours = LiveServer(chat_models_path, "--threads", str(THREADS), "--parallel", str(PARALLEL),
                      *os.environ.get("BENCH_LOCALAI_ARGS", "").split())  # e.g. "--cache-ram 0" for an A/B run
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
def test_bench(benchmark, servers, scenario):
    """Both servers in every round, in paired rounds (see tests.conftest.paired_rounds); the warm-up
    before each measured call is a short 16-token request."""
    measure = SCENARIOS[scenario]
    for port in servers.values():
        measure(port)  # warm-up (model load, caches)
    benchmark.group = f"llama {scenario} (one round = both servers)"
    values = paired_rounds(
        benchmark, {name: functools.partial(measure, port) for name, port in servers.items()}, ROUNDS,
        warmups={name: functools.partial(stream_completion, port, PROMPT, WARMUP_TOKENS) if WARMUP_TOKENS
                 else (lambda: None) for name, port in servers.items()})
    ours, theirs = values["localai"], values["llama-server"]
    RESULTS[scenario] = {
        "localai": statistics.median(ours), "llama-server": statistics.median(theirs),
        "ratio": paired_ratio(ours, theirs),
        "unit": "s" if scenario.startswith("ttft") else "t/s",
        "rounds": {"localai": ours, "llama-server": theirs},
    }
    benchmark.extra_info.update({k: v for k, v in RESULTS[scenario].items() if k != "rounds"})


def test_bench_decode_ceiling(benchmark, smollm_path):
    """What llama_decode itself does on this machine, with no server around it: tokens/s of one
    sequence advancing one token per step, and of four sequences advancing together (one batch,
    logits for all four, separate KV streams as both servers use). Four streams over HTTP cannot
    beat the second figure; divided by llama-server's four-stream rate it bounds the ratio any
    scheduler could reach against it."""
    from localai.bindings import llama as L
    from localai.bindings import set_native_log_level

    set_native_log_level("error")
    L.backend_init()
    steps = 128
    with L.Model(smollm_path) as model, \
            L.Context(model, n_ctx=4096 * PARALLEL, n_seq_max=PARALLEL, n_threads=THREADS) as ctx, \
            L.Batch(512) as batch:
        prompt = model.tokenize(PROMPT)

        def decode_rate(n_seq: int) -> float:
            ctx.memory_clear()
            for seq in range(n_seq):
                batch.clear()
                batch.add(prompt, 0, seq, True)
                ctx.decode(batch)
            started = time.perf_counter()
            for step in range(steps):
                batch.clear()
                for seq in range(n_seq):
                    batch.add([1000 + step], len(prompt) + step, seq, True)
                ctx.decode(batch)
            return n_seq * steps / (time.perf_counter() - started)

        rates: dict[int, list[float]] = {1: [], PARALLEL: []}

        def one_round() -> None:
            for n_seq in rates:
                rates[n_seq].append(decode_rate(n_seq))

        one_round()  # warm-up
        rates = {n: [] for n in rates}
        benchmark.group = "llama decode ceiling (no server)"
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    CEILING.update({n: statistics.median(v) for n, v in rates.items()})
    benchmark.extra_info.update({f"{n}_seq_tokens_per_s": r for n, r in CEILING.items()})


def test_report_ratios():
    """Print localai / llama-server per scenario (tokens/s: higher is better; ttft: lower is better)."""
    if not RESULTS:
        pytest.skip("no scenario was measured on both servers")
    lines = ["", f"localai vs llama-server (SmolLM2-135M Q4_1, {THREADS} threads, median of {ROUNDS} paired rounds)"]
    for scenario, r in RESULTS.items():
        unit = r["unit"]
        lines.append(f"  {scenario:13s} localai {r['localai']:8.3f} {unit:3s}  llama-server {r['llama-server']:8.3f} "
                     f"{unit:3s}  ratio {r['ratio']:.3f}")
    report = {"scenarios": RESULTS}
    if CEILING:
        one, many = CEILING[1], CEILING[PARALLEL]
        lines.append(f"  raw llama_decode: 1 sequence {one:.1f} t/s, {PARALLEL} sequences {many:.1f} t/s "
                     f"({many / one:.2f}x one)")
        report["decode_ceiling"] = {"1": one, str(PARALLEL): many}
        if "streams4_128" in RESULTS:
            bound = many / RESULTS["streams4_128"]["llama-server"]
            lines.append(f"  best ratio any scheduler could reach on streams4_128: {bound:.2f}")
            report["streams4_128_ratio_bound"] = bound
    print("\n".join(lines))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "llama-ratios.json").write_text(json.dumps(report, indent=2))
