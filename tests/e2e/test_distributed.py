"""Distributed inference over ggml's RPC backend, on loopback: two `localai worker` processes
started here hold most of SmolLM2's layers; the server's answers match the local-only model's;
a worker killed mid-stream fails that stream cleanly, the server stays up, and the model loads
again once the worker is back. A worker refuses a public address."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import sys
import time

import pytest

from tests.support import CHAT_MODEL, FRESH, ROOT, LiveServer, free_port, get, post, stop_process

PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


def start_worker(port: int, threads: int = 1) -> subprocess.Popen:
    """`localai worker` on a loopback port, once it accepts connections (stopped by the caller)."""
    proc = subprocess.Popen([sys.executable, "-m", "localai.cli", "worker", "--address", f"127.0.0.1:{port}",
                             "--threads", str(threads)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(600):  # hang guard only
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited: {proc.stdout.read()}")
            time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("the worker did not start listening")


@pytest.fixture(scope="module")
def ports() -> list[int]:
    return [free_port(), free_port()]


@pytest.fixture(scope="module")
def workers(ports):
    procs = {port: start_worker(port) for port in ports}
    yield procs
    for proc in procs.values():
        stop_process(proc)


@pytest.fixture(scope="module")
def server(chat_models_path, tmp_path_factory, workers, ports):
    """The default chat model, the same weights split over the two workers, and a model whose
    worker does not exist."""
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("rpc-models")
    for item in chat_models_path.iterdir():
        if item.suffix in (".gguf", ".yaml") and item.name != "broken.yaml":
            place(item, folder / item.name) if item.suffix == ".gguf" else (folder / item.name).write_text(item.read_text())
    weights = next(p.name for p in folder.iterdir() if p.suffix == ".gguf")
    endpoints = [f"127.0.0.1:{port}" for port in ports]
    (folder / "split.yaml").write_text(
        f"name: split\nbackend: llama\nrpc_workers: [{', '.join(endpoints)}]\ncontext_size: 1024\n"
        f"parameters:\n  model: {weights}\n"
        f"template:\n  use_tokenizer_template: true\n")
    (folder / "nowhere.yaml").write_text(
        f"name: nowhere\nbackend: llama\nrpc_workers: 127.0.0.1:{free_port()}\nparameters:\n  model: {weights}\n")
    live = LiveServer(folder, "--parallel", "2", "--threads", "1")
    yield live
    live.stop()


def chat(server, model: str, **extra) -> tuple[int, dict]:
    status, _, raw = post(server, "/v1/chat/completions", {"model": model, "messages": PROMPT, "temperature": 0,
                                                           "max_tokens": 24, **FRESH, **extra})
    return status, json.loads(raw)


def test_split_model_answers_as_the_local_one(server, ports):
    status, local = chat(server, CHAT_MODEL)
    assert status == 200, local
    status, split = chat(server, "split")
    assert status == 200, split
    assert split["choices"][0]["message"]["content"] == local["choices"][0]["message"]["content"]
    assert split["usage"] == local["usage"]
    monitor = json.loads(post(server, "/backend/monitor", {"model": "split"})[2])
    assert monitor["devices"] == ["CPU", *(f"RPC 127.0.0.1:{port}" for port in ports)], monitor
    assert monitor["process"] != server.proc.pid  # the split model runs in a process of its own
    assert any("layers on the RPC workers" in line for line in server.log)


def test_a_worker_that_is_down_at_load_time_is_a_clear_503(server):
    status, body = chat(server, "nowhere")
    assert status == 503 and body["error"]["code"] == "rpc_worker_unreachable", body
    assert "does not answer" in body["error"]["message"] and "localai worker" in body["error"]["message"]
    assert get(server, "/healthz")[0] == 200


def test_a_worker_lost_mid_stream_fails_the_stream_and_the_model_comes_back(server, workers, ports):
    status, before = chat(server, "split")
    assert status == 200
    conn_events: list[dict] = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    conn.request("POST", "/v1/chat/completions", json.dumps(
        {"model": "split", "messages": PROMPT, "max_tokens": 400, "ignore_eos": True, "stream": True, **FRESH}),
        {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    killed = False
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        conn_events.append(json.loads(line[len("data: "):]))
        if len(conn_events) == 3 and not killed:
            workers[ports[1]].kill()  # a worker we started, by its PID
            workers[ports[1]].wait()
            killed = True
    conn.close()
    assert killed
    error = conn_events[-1].get("error")
    assert error is not None and error["code"] == "rpc_worker_lost", conn_events[-3:]
    assert "RPC worker" in error["message"]
    # The server is up and its other models answer.
    assert get(server, "/healthz")[0] == 200
    assert chat(server, CHAT_MODEL)[0] == 200
    # The model is loaded again on the next request: the worker is still down, a clear 503.
    status, body = chat(server, "split")
    assert status == 503 and body["error"]["code"] == "rpc_worker_unreachable", body
    # Once the worker is back, the model answers as before.
    workers[ports[1]] = start_worker(ports[1])
    status, after = chat(server, "split")
    assert status == 200, after
    assert after["choices"][0]["message"]["content"] == before["choices"][0]["message"]["content"]


def test_a_worker_refuses_a_public_address():
    result = subprocess.run([sys.executable, "-m", "localai.cli", "worker", "--address", f"0.0.0.0:{free_port()}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no authentication" in result.stderr and "--insecure-public" in result.stderr
    result = subprocess.run([sys.executable, "-m", "localai.cli", "worker", "--address", "nonsense"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "host:port" in result.stderr


def test_a_worker_lost_during_a_plain_request_is_a_503(server, workers, ports):
    assert chat(server, "split")[0] == 200  # loaded, with both workers up
    results: list[tuple[int, dict]] = []
    request = threading.Thread(target=lambda: results.append(chat(server, "split", max_tokens=900, ignore_eos=True)))
    request.start()
    for _ in range(600):  # until the model is generating (hang guard only)
        monitor = json.loads(post(server, "/backend/monitor", {"model": "split"})[2])
        if monitor.get("active_sequences"):
            break
        time.sleep(0.05)
    workers[ports[0]].kill()
    workers[ports[0]].wait()
    request.join()
    status, body = results[0]
    assert status == 503 and body["error"]["code"] == "rpc_worker_lost", body
    assert get(server, "/healthz")[0] == 200
    workers[ports[0]] = start_worker(ports[0])
    assert chat(server, "split")[0] == 200
