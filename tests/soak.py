"""Soak test: concurrent streaming clients against a real server for a bounded time.

    .venv/bin/python tests/soak.py --clients 8 --seconds 600

Starts `localai run` on a loopback port with the default chat model (or targets --url), then
runs N clients until the time is up. Each client mixes valid streamed chats (most requests),
valid plain chats and completions, and hostile requests (malformed bodies, dead-end grammars,
out-of-range values). Reports every status seen, errors (5xx, refusals not in OpenAI's shape,
streams that end without [DONE], connection failures), p50/p99 latency and time to first
token, and the server's resident memory over the run. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import CHAT_MODEL, LiveServer  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about rain.",
             "Explain photosynthesis in one sentence.", "What is 12 times 7?", "Tell me a fun fact about cats."]
HOSTILE = [
    b"{not json", b'{"messages": ' + b"[" * 500 + b"]" * 500 + b"}", b'{"messages": []}',
    json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "grammar": 'root ::= "a"',
                "ignore_eos": True}).encode(),
    json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "top_k": 10 ** 9}).encode(),
    json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": 1.5}).encode(),
    json.dumps({"model": CHAT_MODEL, "prompt": [0] * 200_000}).encode(),
    json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "\ud800"}]}).encode(),
    json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x" * 100_000}]}).encode(),
]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.latency: list[float] = []
        self.ttft: list[float] = []

    def add(self, status: int, latency: float, ttft: float | None = None, error: str | None = None) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latency.append(latency)
            if ttft is not None:
                self.ttft.append(ttft)
            if error:
                self.errors.append(error)


def one_request(port: int, rng: random.Random, stats: Stats) -> None:
    roll = rng.random()
    path = "/v1/chat/completions"
    stream = False
    if roll < 0.7:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
                "max_tokens": rng.randint(8, 64), "temperature": rng.choice([0, 0.7]), "stream": True}
        stream = True
    elif roll < 0.8:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
                "max_tokens": 24}
    elif roll < 0.85:
        path, body = "/v1/completions", {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": 24}
    else:
        body = None
    data = json.dumps(body).encode() if body is not None else rng.choice(HOSTILE)
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        ttft = None
        if stream and response.status == 200:
            chunks = []
            while True:
                line = response.readline()
                if not line:
                    break
                if ttft is None and b'"content": "' in line and b'"content": ""' not in line:
                    ttft = time.perf_counter() - started
                chunks.append(line)
            raw = b"".join(chunks)
        else:
            raw = response.read()
        conn.close()
    except OSError as exc:
        stats.add(-1, time.perf_counter() - started, error=f"connection: {exc}")
        return
    latency = time.perf_counter() - started
    error = None
    if response.status >= 500:
        error = f"{response.status}: {raw[:200]!r}"
    elif response.status >= 400:
        try:
            if set(json.loads(raw)["error"]) != {"message", "type", "param", "code"}:
                error = f"bad error shape: {raw[:200]!r}"
        except (ValueError, KeyError, TypeError):
            error = f"not an OpenAI error: {raw[:200]!r}"
    elif stream and not raw.rstrip().endswith(b"data: [DONE]"):
        error = f"stream without [DONE]: {raw[-200:]!r}"
    stats.add(response.status, latency, ttft, error)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-path", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)

    live = LiveServer(args.models_path, "--threads", "2", "--parallel", "4")
    stats = Stats()
    deadline = time.monotonic() + args.seconds
    rss: list[tuple[float, int]] = [(0.0, rss_kib(live.proc.pid))]
    begun = time.monotonic()

    def client(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() < deadline:
            one_request(live.port, rng, stats)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            rss.append((time.monotonic() - begun, rss_kib(live.proc.pid)))
        for t in threads:
            t.join()
        after_warmup = [kib for at, kib in rss if at >= min(60, args.seconds / 4)] or [rss[-1][1]]
        total = sum(stats.statuses.values())
        print(f"soak: {args.clients} clients for {args.seconds:.0f} s, {total} requests "
              f"({total / args.seconds:.2f}/s)")
        print(f"  statuses: {dict(sorted(stats.statuses.items()))}")
        print(f"  errors: {len(stats.errors)}")
        for error in stats.errors[:10]:
            print(f"    {error}")
        print(f"  latency p50 {percentile(stats.latency, 0.5):.2f} s, p99 {percentile(stats.latency, 0.99):.2f} s")
        print(f"  time to first token (streams) p50 {percentile(stats.ttft, 0.5):.2f} s, "
              f"p99 {percentile(stats.ttft, 0.99):.2f} s")
        print(f"  server RSS: start {rss[0][1] / 1024:.0f} MiB, after warm-up {after_warmup[0] / 1024:.0f} MiB, "
              f"end {rss[-1][1] / 1024:.0f} MiB, max {max(k for _, k in rss) / 1024:.0f} MiB "
              f"(growth after warm-up {(after_warmup[-1] - after_warmup[0]) / 1024:+.1f} MiB)")
        print(f"  healthy at the end: {http_ok(live.port)}")
        return 1 if stats.errors else 0
    finally:
        live.stop()


def http_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/healthz")
    return conn.getresponse().status == 200


if __name__ == "__main__":
    sys.exit(main())
