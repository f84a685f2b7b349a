"""A model split over two loopback ggml RPC workers vs the same model local-only, in one run.

    flock /tmp/localai-build.lock python3 build.py bench -k rpc

One server serves SmolLM2 twice: `local` and `split` (rpc_workers: two `localai worker`
processes on loopback, which hold two thirds of the layers by free memory). Scenarios, greedy
/v1/completions with ignore_eos: one stream of 128 tokens, and four concurrent streams of 128.
Rounds pair the two models, alternating the order. On one machine the workers share its two
cores with the server, so this measures the overhead of the split (each token crosses two
process boundaries and the activations go over TCP), not a speed-up: that comes only when the
workers are other machines with memory and cores of their own.

Bytes moved per token are the kernel's counters of the workers' TCP connections (`ss -ti`:
bytes_sent + bytes_received) over the measured rounds: what a real network would carry. The
workers run one thread each: three processes with two spinning threads each on two cores ran
the split at a third of the speed.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import threading
import time

import pytest

from tests.bench.support import paired_ratio, paired_rounds
from tests.e2e.test_distributed import start_worker
from tests.support import free_port, post, stop_process

pytestmark = pytest.mark.bench

ROUNDS = 5
TOKENS = 128
PROMPT = "Once upon a time, in a land far away, there lived"


@pytest.fixture(scope="module")
def setup(chat_models_path, tmp_path_factory):
    from localai.defaults import place
    from tests.support import LiveServer

    if not shutil.which("ss"):
        pytest.fail("`ss` (Debian's iproute2) is needed to count the bytes the workers move")
    ports = [free_port(), free_port()]
    workers = [start_worker(port, threads=1) for port in ports]
    folder = tmp_path_factory.mktemp("bench-rpc")
    weights = next(p for p in chat_models_path.iterdir() if p.suffix == ".gguf")
    place(weights, folder / weights.name)
    for name, extra in (("local", ""), ("split", f"rpc_workers: [{', '.join(f'127.0.0.1:{p}' for p in ports)}]\n")):
        (folder / f"{name}.yaml").write_text(f"name: {name}\nbackend: llama\ncontext_size: 1024\n{extra}"
                                             f"parameters:\n  model: {weights.name}\n")
    server = LiveServer(folder, "--threads", "2", "--parallel", "4", "--cache-ram", "0")
    yield server, ports
    server.stop()
    for worker in workers:
        stop_process(worker)


def completion(server, model: str, prompt: str) -> int:
    status, _, raw = post(server, "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": TOKENS,
                                                      "temperature": 0, "ignore_eos": True, "cache_prompt": False})
    assert status == 200, raw
    return json.loads(raw)["usage"]["completion_tokens"]


def one_stream(server, model: str) -> float:
    started = time.perf_counter()
    tokens = completion(server, model, PROMPT)
    return tokens / (time.perf_counter() - started)


def four_streams(server, model: str) -> float:
    counts: list[int] = []
    threads = [threading.Thread(target=lambda i=i: counts.append(completion(server, model, f"{PROMPT} {i} knights")))
               for i in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def worker_bytes(ports: list[int]) -> int:
    """Bytes sent and received so far on the established TCP connections to the workers' ports."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True, text=True, check=True).stdout
    total = 0
    for block in re.split(r"\n(?=\S)", out):  # one connection: its line, then its indented details
        ends = re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)", block)
        if ends and int(ends.group(1)) in ports:
            total += sum(int(n) for n in re.findall(r"bytes_(?:sent|received):(\d+)", block))
    return total


@pytest.mark.parametrize("scenario", ["one_stream", "four_streams"])
def test_bench_split_over_two_workers_vs_local(benchmark, setup, scenario):
    server, ports = setup
    measure = {"one_stream": one_stream, "four_streams": four_streams}[scenario]
    for model in ("local", "split"):
        measure(server, model)  # load and warm both
    bytes_before = worker_bytes(ports)
    values = paired_rounds(benchmark, {model: (lambda m=model: measure(server, m)) for model in ("local", "split")},
                           ROUNDS)
    moved = worker_bytes(ports) - bytes_before
    split_tokens = (1 if scenario == "one_stream" else 4) * TOKENS * ROUNDS * 2  # each round: warm-up + measure
    ratio = paired_ratio(values["split"], values["local"])
    benchmark.extra_info.update({"scenario": scenario, "local_tps": statistics.median(values["local"]),
                                 "split_tps": statistics.median(values["split"]), "split_vs_local": ratio,
                                 "worker_bytes_per_token": moved / split_tokens})
    print(f"\n{scenario}: local {statistics.median(values['local']):.1f} t/s, split over 2 loopback workers "
          f"{statistics.median(values['split']):.1f} t/s (ratio {ratio:.3f}, median of {ROUNDS} paired rounds); "
          f"the workers moved {moved / split_tokens / 1024:.1f} KiB per generated token (prompt processing "
          "included)")
