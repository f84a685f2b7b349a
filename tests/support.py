"""Helpers the tests share: the real server started on a loopback port, and reading its answers."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from werkzeug.datastructures import Headers

ROOT = Path(__file__).resolve().parent.parent
CHAT_MODEL = "smollm2-135m-instruct"
# Tests that check a model's answer, or compare two answers, ask for a fresh computation: a
# prefix reused from earlier traffic was computed in a pass of another size, and on some CPUs
# (AVX-512 with BF16) that is enough to flip a near-tie in greedy decoding (see the README).
FRESH = {"cache_prompt": False}


class LiveServer:
    """`localai run` in a subprocess on 127.0.0.1 with an ephemeral port; stopped by the fixture."""

    def __init__(self, models_path: Path, *extra: str, env: dict | None = None, wait_ready: bool = True):
        cmd = [sys.executable, "-m", "localai.cli", "run", "--address", "127.0.0.1:0",
               "--models-path", str(models_path), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, cwd=ROOT)
        self.log: list[str] = []
        line = self._wait_for_banner(timeout=120)
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._drain, daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout=600)

    def wait_ready(self, timeout: float) -> None:
        """Until /readyz says the start-up work (gallery installs, preloads) is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + "".join(self.log[-20:]))
            time.sleep(0.1)
        raise RuntimeError("server did not become ready in time")

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


def post(server, path: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, Headers, bytes]:
    """POST JSON (or raw bytes) to a live server: (status, headers, body)."""
    return request(server, "POST", path, body, headers)


def get(server, path: str, headers: dict | None = None) -> tuple[int, Headers, bytes]:
    return request(server, "GET", path, None, headers)


def request(server, method: str, path: str, body: dict | bytes | None = None,
            headers: dict | None = None) -> tuple[int, Headers, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, Headers(response.getheaders()), raw  # names case-insensitive, as in HTTP


def openai_error(status: int, raw: bytes, expected: int, param: str | None = "any") -> dict:
    """The error object of an answer, checked for OpenAI's shape, the status and (unless "any") the param."""
    assert status == expected, (status, raw[:500])
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    if param != "any":
        assert error["param"] == param, error
    return error


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
