"""Shared fixtures: real models from the pinned archives, and a live server on a loopback port."""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    try:
        from localai.cli import build_info

        info = build_info()
        return [f"localai native: ggml {info['ggml']}, whisper.cpp {info['whisper.cpp']}",
                f"cpu: {info['cpu_features']}"]
    except Exception as exc:  # the header must never break collection
        return [f"localai native: unavailable ({exc})"]


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from localai.fetch import fetch_file

    return fetch_file("smollm2")


@pytest.fixture(scope="module")
def smollm_engine(smollm_path):
    """The llama backend's engine on SmolLM2 (2 slots, 2048 tokens each), one per test module."""
    from localai.backends.llama import LlamaEngine

    engine = LlamaEngine(str(smollm_path), context_size=2048, parallel=2, threads=2)
    yield engine
    engine.close()


class LiveServer:
    """`localai run` in a subprocess on 127.0.0.1 with an ephemeral port; stopped by the fixture."""

    def __init__(self, models_path: Path, *extra: str, env: dict | None = None):
        cmd = [sys.executable, "-m", "localai.cli", "run", "--address", "127.0.0.1:0",
               "--models-path", str(models_path), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, cwd=ROOT)
        self.log: list[str] = []
        line = self._wait_for_banner(timeout=120)
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_banner(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "listening on" in line:
                threading.Thread(target=self._drain_err, daemon=True).start()
                return line
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
        self.stop()
        raise RuntimeError("server did not start in time")

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)

    def _drain_err(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server the tests started (by its PID), killing it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="session")
def chat_models_path(tmp_path_factory, smollm_path) -> Path:
    """A models folder with the default chat YAML and the SmolLM2 weights (hard-linked)."""
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("models")
    place(smollm_path, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    (folder / "smollm2-135m-instruct.yaml").write_text((ROOT / "models" / "smollm2-135m-instruct.yaml").read_text())
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    return folder


@pytest.fixture(scope="session")
def server(chat_models_path):
    live = LiveServer(chat_models_path, "--parallel", "4", "--threads", "2")
    yield live
    live.stop()


def sse_events(raw: bytes) -> list:
    """Parse an SSE body into JSON payloads (and the literal "[DONE]")."""
    events = []
    for block in raw.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


@pytest.fixture(scope="session")
def whisper_model_path(tmp_path_factory) -> Path:
    """whisper tiny.en converted (as `build.py run` does) from the pinned CTranslate2 export."""
    from localai.defaults import install_whisper_model

    return install_whisper_model(tmp_path_factory.mktemp("whisper"))


@pytest.fixture(scope="session")
def bpe_gz() -> Path:
    """CLIP's BPE vocabulary (the pinned clip-anytorch wheel's bpe_simple_vocab_16e6.txt.gz)."""
    from localai.fetch import fetch_file

    return fetch_file("clip_bpe_vocab")


def _stablediffusion_requested() -> bool:
    """CI's BUILD_TAGS/GO_TAGS, or a build that says it made the image backend."""
    tags = f"{os.environ.get('BUILD_TAGS', '')} {os.environ.get('GO_TAGS', '')}".replace(",", " ").split()
    info = ROOT / "localai" / "_native" / "build-info.json"
    built = info.exists() and json.loads(info.read_text()).get("stablediffusion") is True
    return "stablediffusion" in tags or built


def pytest_runtest_setup(item):
    """Tests marked `stablediffusion` skip on builds without the image backend, but fail where it
    was asked for: a broken image build in CI must not pass as a skip."""
    if item.get_closest_marker("stablediffusion") is None:
        return
    from localai.backends.stablediffusion import available

    if available():
        return
    if _stablediffusion_requested():
        pytest.fail("the stablediffusion build was requested (BUILD_TAGS or build-info.json) but the sd-ncnn "
                    "bindings are missing: run `python3 build.py --stablediffusion` and read build/build.log")
    pytest.skip("image backend not built (build with `python3 build.py --stablediffusion`)")
