"""The container image, built and run here: `python3 build.py image`, then the image serving the
default chat model from a mounted folder, behind an API key, stopped with SIGTERM.

Marked `container` (select with -m container, leave out with -m "not container"); skipped where
no container engine works. `.ci/run` installs podman first where it can.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.support import ROOT, free_port

pytestmark = pytest.mark.container
TAG = "localhost/localai:test"
KEY = "sk-container-0123456789"


def _image_module():
    spec = importlib.util.spec_from_file_location("image", ROOT / "container" / "image.py")
    sys.path.insert(0, str(ROOT / "container"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "container"))
    return module


@pytest.fixture(scope="module")
def engine():
    image = _image_module()
    try:
        path = image.find_engine()
    except image.ImageError as exc:
        pytest.skip(str(exc))
    return path, image.engine_environment(path)


@pytest.fixture(scope="module")
def built(engine):
    env = {k: v for k, v in os.environ.items() if k not in ("BUILD_TAGS", "GO_TAGS")}  # the default image
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "image", "--tag", TAG], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return TAG


def call(port: int, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_the_image_serves_behind_a_key_and_stops_cleanly(engine, built, chat_models_path):
    binary, env = engine
    chat_models_path.chmod(0o755)  # the server runs as an unprivileged user inside
    port, name = free_port(), f"localai-test-{uuid.uuid4().hex[:8]}"
    run = subprocess.run([binary, "run", "-d", "--name", name, "--network=slirp4netns", "-p", f"127.0.0.1:{port}:8080",
                          "-v", f"{chat_models_path}:/models:ro", "-e", f"API_KEY={KEY}", built],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 300  # a bound, not a measurement
        while True:
            try:
                if call(port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the container never became ready"
            time.sleep(0.25)
        status, raw = call(port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                                 "max_tokens": 4}, key=KEY)
        assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"], raw
        assert call(port, "GET", "/v1/models")[0] == 401
        user = subprocess.run([binary, "exec", name, "id", "-u"], capture_output=True, text=True, env=env)
        assert user.stdout.strip() not in ("", "0")  # not root
        stop = subprocess.run([binary, "stop", "-t", "10", name], capture_output=True, text=True, env=env, timeout=120)
        assert stop.returncode == 0, stop.stderr
        code = subprocess.run([binary, "inspect", name, "--format", "{{.State.ExitCode}}"], capture_output=True,
                              text=True, env=env).stdout.strip()
        assert code == "0"  # SIGTERM handled: a kill after the 10 s grace would be 137
        logs = subprocess.run([binary, "logs", name], capture_output=True, text=True, env=env)
        assert "stopped in" in logs.stdout + logs.stderr
    finally:
        subprocess.run([binary, "rm", "-f", name], capture_output=True, env=env)


def test_a_public_address_without_a_key_refuses_to_start(engine, built, tmp_path):
    binary, env = engine
    tmp_path.chmod(0o755)
    result = subprocess.run([binary, "run", "--rm", "-v", f"{tmp_path}:/models:ro", built], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 2 and "--api-keys" in result.stderr
