"""What the request checks cost per request, in microseconds (run: `python3 build.py bench -k validation`).

A typical chat body and a typical batched completion go through what every request pays
before any model work: the depth scan of the raw bytes, the strict parse (finite numbers,
well-formed Unicode) and the schema validation, against a plain ``json.loads`` as the floor.
"""

from __future__ import annotations

import json
import time

import pytest

from localai.api import schemas
from localai.api.http import json_depth, read_json

pytestmark = pytest.mark.bench
BODIES = {
    "chat": ("chat", {"model": "smollm2-135m-instruct", "temperature": 0.7, "max_tokens": 256, "stream": True,
                      "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": "Write a short poem about the sea. " * 8}]}),
    "chat+tools": ("chat", {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                            "tools": [{"type": "function", "function": {"name": f"tool_{i}", "parameters": {
                                "type": "object", "properties": {"city": {"type": "string"}}}}} for i in range(8)]}),
    "completion 4x": ("completion", {"model": "m", "prompt": ["Once upon a time"] * 4, "max_tokens": 16,
                                     "logprobs": 2}),
}


class _Body:
    """What read_json reads of a request: its body (werkzeug's own stream can be read only once)."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def get_data(self, cache: bool = True) -> bytes:
        return self.raw


def per_call_us(fn, repeat: int = 2000) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat * 1e6


@pytest.mark.parametrize("name", list(BODIES))
def test_bench_request_checks(benchmark, name):
    kind, body = BODIES[name]
    raw = json.dumps(body).encode()
    request = _Body(raw)

    def checked() -> None:
        schemas.validate(kind, read_json(request))

    def plain() -> None:
        json.loads(request.get_data(cache=False))

    benchmark.group = "request checks"
    benchmark.pedantic(checked, rounds=5, iterations=200)
    costs = {"plain parse": per_call_us(plain), "depth scan": per_call_us(lambda: json_depth(raw)),
             "strict parse": per_call_us(lambda: read_json(request)),
             "schema": per_call_us(lambda: schemas.validate(kind, json.loads(raw))),
             "all checks": per_call_us(checked)}
    benchmark.extra_info.update(costs)
    print(f"\n{name} ({len(raw)} bytes): " + ", ".join(f"{k} {v:.1f} us" for k, v in costs.items())
          + f"; added by the checks: {costs['all checks'] - costs['plain parse']:.1f} us")
