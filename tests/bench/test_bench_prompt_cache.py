"""The host-RAM prompt cache, side by side with llama-server (its defaults: --cache-ram 8192 MiB),
same model, threads and slots, in paired rounds. Run with `python3 build.py bench -k prompt_cache`.

  evicted_prefix   a ~560-token prompt with a fresh last line, asked after 4 unrelated requests
                   went through the 4 slots: time to first token (seconds)
  multi_user_chat  3 apps with their own ~400-token system prompt, 4 users each, 5 turns per user
                   (every turn resends the history plus a new question), 4 requests in flight:
                   mean and p90 time to first token, and the wall time of the whole run
  restore_speed    (ours only) bytes per cached token, and microseconds per token to restore a
                   prefix against milliseconds per token to compute it

Every round uses new text (the round number is in every prompt), so no round profits from an
earlier one. The last test prints the ratios and writes .benchmarks/prompt-cache.json.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bench.support import UpstreamLlamaServer, paired_ratio, paired_rounds
from tests.support import ROOT, LiveServer

pytestmark = pytest.mark.bench

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
PARALLEL = 4
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
CHAT_ROUNDS = int(os.environ.get("BENCH_CHAT_ROUNDS", "3"))
LLAMA_SERVER = Path(os.environ.get("LOCALAI_LLAMA_SERVER") or ROOT / "build" / "bin" / "llama-server")
MODEL = "smollm2-135m-instruct"
RESULTS: dict[str, dict] = {}

TOPICS = ["astronomy", "gardening", "tax law", "cooking", "sailing", "chess", "medieval history", "plumbing",
          "jazz", "beekeeping", "rail travel", "typography"]


@pytest.fixture(scope="module")
def servers(chat_models_path, smollm_path):
    if not LLAMA_SERVER.exists():
        pytest.fail("build/bin/llama-server is missing: run `python3 build.py bench`")
    ours = LiveServer(chat_models_path, "--threads", str(THREADS), "--parallel", str(PARALLEL))
    upstream = UpstreamLlamaServer(LLAMA_SERVER, smollm_path, THREADS, "-np", str(PARALLEL), "-c", str(4096 * PARALLEL))
    yield {"localai": ours.port, "llama-server": upstream.port}
    ours.stop()
    upstream.stop()


def stream_first_token(port: int, path: str, body: dict) -> tuple[float, str]:
    """(seconds to the first generated text, the whole text) of one streamed request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", path, body=json.dumps({**body, "stream": True}), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    first, parts = None, []
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        choices = json.loads(line[6:]).get("choices") or []
        if not choices:
            continue
        text = choices[0].get("text") or (choices[0].get("delta") or {}).get("content") or ""
        if text:
            parts.append(text)
            if first is None:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    conn.close()
    return (first if first is not None else total), "".join(parts)


def completion(port: int, prompt: str, max_tokens: int) -> float:
    return stream_first_token(port, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens,
                                                       "temperature": 0})[0]


# ---- (a) a long prompt whose slot was taken ---------------------------------------------------------

def long_prompt(round_: int) -> str:
    lines = [f"Reference sheet {round_}: the maintenance schedule of the harbour crane fleet."]
    for i in range(28):
        lines.append(f"Crane {i + 1}: inspect the hoist rope, grease the slewing ring, test the limit switches.")
    return "\n".join(lines) + "\n"


def evicted_prefix(port: int, state: dict) -> float:
    """Prime once per round with the long prompt, fill all four slots with unrelated requests,
    then time the long prompt with a fresh last line."""
    state["calls"] = state.get("calls", 0) + 1
    call = state["calls"]
    prompt = long_prompt((call + 1) // 2)  # the warm-up call of each round primes, the measured one reuses
    if call % 2 == 1:
        completion(port, prompt + "Question: which crane is first? Answer:", 4)
    threads = [threading.Thread(target=completion, args=(port, f"Unrelated {call}-{i}: {TOPICS[i]} " * 40, 4))
               for i in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if call % 2 == 1:
        return 0.0
    return completion(port, prompt + f"Question {call}: which crane needs new rope? Answer:", 1)


@pytest.mark.parametrize("scenario", ["evicted_prefix"])
def test_bench_evicted_prefix(benchmark, servers, scenario):
    states = {name: {} for name in servers}
    for name, port in servers.items():  # warm-up: model load
        completion(port, "Hello", 2)
    benchmark.group = "prompt cache: evicted prefix, time to first token (one round = both servers)"
    measure = {name: functools.partial(evicted_prefix, port, states[name]) for name, port in servers.items()}
    values = paired_rounds(benchmark, measure, ROUNDS)  # each measured call follows its priming call
    ours, theirs = values["localai"], values["llama-server"]
    RESULTS[scenario] = {"localai": statistics.median(ours), "llama-server": statistics.median(theirs),
                         "ratio": paired_ratio(ours, theirs), "unit": "s", "rounds": values}
    benchmark.extra_info.update({k: v for k, v in RESULTS[scenario].items() if k != "rounds"})


# ---- (b) many users of a few apps ------------------------------------------------------------------

def system_prompt(app: int, round_: int) -> str:
    rules = " ".join(f"Rule {j + 1}: when asked about {TOPICS[(app * 4 + j) % len(TOPICS)]}, answer in one "
                     "short sentence and suggest a next step." for j in range(12))
    return f"You are assistant {app} of round {round_}, working for the help desk of company {app}. {rules}"


def conversation_run(port: int, round_: int) -> dict:
    """Twelve conversations (app = user % 3), five turns each, four requests in flight."""
    ttfts: list[float] = []
    lock = threading.Lock()

    def user_thread(worker: int) -> None:
        users = [worker, worker + 4, worker + 8]
        histories = {u: [{"role": "system", "content": system_prompt(u % 3, round_)}] for u in users}
        for turn in range(5):
            for user in users:
                messages = histories[user] + [{"role": "user", "content": f"Question {turn + 1} from user {user}: "
                                               f"what about {TOPICS[(user + turn) % len(TOPICS)]}?"}]
                ttft, text = stream_first_token(port, "/v1/chat/completions", {
                    "model": MODEL, "messages": messages, "max_tokens": 24, "temperature": 0})
                histories[user] = messages + [{"role": "assistant", "content": text}]
                with lock:
                    ttfts.append(ttft)

    started = time.perf_counter()
    threads = [threading.Thread(target=user_thread, args=(w,)) for w in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ttfts.sort()
    return {"mean": statistics.fmean(ttfts), "p90": ttfts[int(0.9 * (len(ttfts) - 1))], "wall": wall,
            "requests": len(ttfts)}


def test_bench_multi_user_chat(benchmark, servers):
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    rounds = iter(range(1, 1000))

    def measure(name: str, port: int) -> float:
        result = conversation_run(port, next(rounds))
        runs[name].append(result)
        return result["mean"]

    benchmark.group = "prompt cache: multi-user chat, mean time to first token (one round = both servers)"
    values = paired_rounds(benchmark, {name: functools.partial(measure, name, port) for name, port in servers.items()},
                           CHAT_ROUNDS, warmups={name: (lambda: None) for name in servers})
    ours, theirs = runs["localai"], runs["llama-server"]
    result = {"unit": "s", "rounds": runs}
    for key in ("mean", "p90", "wall"):
        result[key] = {"localai": statistics.median(r[key] for r in ours),
                       "llama-server": statistics.median(r[key] for r in theirs),
                       "ratio": paired_ratio([r[key] for r in ours], [r[key] for r in theirs])}
    RESULTS["multi_user_chat"] = result
    benchmark.extra_info.update({k: result[k] for k in ("mean", "p90", "wall")})
    assert len(values["localai"]) == CHAT_ROUNDS


# ---- (c) what a cached token costs ------------------------------------------------------------------

def test_bench_restore_speed(benchmark, smollm_path):
    """Restore a 512-token prefix from the host cache into a slot, against computing it."""
    from localai.bindings import llama as L
    from localai.bindings import set_native_log_level
    from localai.prompt_cache import ModelPromptCache, PromptCache, parse_state

    set_native_log_level("error")
    L.backend_init()
    with L.Model(smollm_path) as model, \
            L.Context(model, n_ctx=4096 * PARALLEL, n_seq_max=PARALLEL, n_threads=THREADS) as ctx, \
            L.Batch(512) as batch:
        tokens = model.tokenize(long_prompt(0) * 2)[:512]
        timings: dict[str, list[float]] = {"compute": [], "save": [], "restore": []}
        cache = PromptCache(1 << 30)
        view = None
        scratch = np.empty(64 << 20, dtype=np.uint8)  # as the scheduler does: one reused buffer

        def one_round() -> None:
            nonlocal view
            ctx.memory_clear()
            batch.clear()
            batch.add(tokens, 0, 0, True)
            started = time.perf_counter()
            ctx.decode(batch)
            ctx.logits(batch.n_tokens - 1)
            timings["compute"].append(time.perf_counter() - started)
            started = time.perf_counter()
            state = ctx.seq_state(0, scratch)
            if view is None:
                view = ModelPromptCache(cache, "bench", parse_state(state).layout)
            cache.drop("bench")
            view.store("", tokens, state)
            timings["save"].append(time.perf_counter() - started)
            started = time.perf_counter()
            n, restored = view.restore("", tokens, len(tokens), 1, scratch)
            ctx.set_seq_state(1, restored)
            timings["restore"].append(time.perf_counter() - started)
            assert n == len(tokens) and ctx.seq_pos_max(1) == len(tokens) - 1

        one_round()
        for values in timings.values():
            values.clear()
        benchmark.group = "prompt cache: restore vs compute, 512 tokens (ours only)"
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
        per_token = view.stats().bytes / view.stats().tokens
    medians = {k: statistics.median(v) for k, v in timings.items()}
    RESULTS["restore_speed"] = {
        "tokens": len(tokens), "bytes_per_token": per_token,
        "compute_ms_per_token": 1000 * medians["compute"] / len(tokens),
        "save_us_per_token": 1e6 * medians["save"] / len(tokens),
        "restore_us_per_token": 1e6 * medians["restore"] / len(tokens),
    }
    benchmark.extra_info.update(RESULTS["restore_speed"])


def test_report():
    if not RESULTS:
        pytest.skip("nothing was measured")
    lines = ["", f"prompt cache: localai vs llama-server (SmolLM2-135M Q4_1, {THREADS} threads, {PARALLEL} slots, "
             "median of paired rounds; ratio = localai / llama-server, lower is faster)"]
    if "evicted_prefix" in RESULTS:
        r = RESULTS["evicted_prefix"]
        lines.append(f"  evicted_prefix TTFT   localai {r['localai']:.3f} s  llama-server {r['llama-server']:.3f} s  "
                     f"ratio {r['ratio']:.3f}")
    if "multi_user_chat" in RESULTS:
        r = RESULTS["multi_user_chat"]
        for key in ("mean", "p90", "wall"):
            lines.append(f"  multi_user_chat {key:5s} localai {r[key]['localai']:.3f} s  llama-server "
                         f"{r[key]['llama-server']:.3f} s  ratio {r[key]['ratio']:.3f}")
    if "restore_speed" in RESULTS:
        r = RESULTS["restore_speed"]
        lines.append(f"  cache: {r['bytes_per_token'] / 1024:.1f} KiB per token; restoring {r['tokens']} tokens "
                     f"{r['restore_us_per_token']:.2f} us/token (saving {r['save_us_per_token']:.2f} us/token) vs "
                     f"computing {r['compute_ms_per_token']:.3f} ms/token")
    print("\n".join(lines))
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "prompt-cache.json").write_text(json.dumps(RESULTS, indent=2))
