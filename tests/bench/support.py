"""Helpers of the side-by-side benchmarks: paired rounds and the upstream baseline servers."""

from __future__ import annotations

import http.client
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

from tests.support import free_port, stop_process


def paired_rounds(benchmark, measures: dict[str, Callable[[], float]], rounds: int,
                  warmups: dict[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """Benchmark rounds in which every contender is measured once, each right after an unmeasured
    call to the same contender (its own measure, or its entry in ``warmups``), the order reversed
    each round. On 2 shared cores the machine drifts by ±10% over minutes, and a contender whose
    turn came right after another's ran ~20% slower on its first call: this way both fall on all
    contenders alike. Returns each contender's measured values, round by round."""
    values: dict[str, list[float]] = {name: [] for name in measures}
    order = list(measures)

    def one_round() -> None:
        for name in order:
            (warmups or measures)[name]()
            values[name].append(measures[name]())
        order.reverse()

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return values


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the per-round ratios ours / theirs."""
    return statistics.median(a / b for a, b in zip(ours, theirs))


class UpstreamLlamaServer:
    """llama.cpp's own llama-server (a benchmark baseline) on a free loopback port."""

    def __init__(self, binary: Path, model: Path, threads: int, *extra: str):
        self.port = free_port()
        cmd = [str(binary), "-m", str(model), "-t", str(threads), "-tb", str(threads),
               "--host", "127.0.0.1", "--port", str(self.port), "--no-webui", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._wait_healthy()
        except Exception:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        for _ in range(1200):  # bounded: 120 s
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("llama-server exited")
            time.sleep(0.1)
        raise RuntimeError("llama-server did not become healthy")

    def stop(self) -> None:
        stop_process(self.proc)
