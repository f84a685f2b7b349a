"""Image generation end to end: a live `localai run` with the tiny asset set, the `openai` SDK and raw HTTP."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import openai
import pytest
import requests
from PIL import Image

from localai import sdassets
from tests.support import LiveServer

MODEL = "stablediffusion"


@pytest.fixture(scope="module")
def image_models_path(tmp_path_factory):
    """LocalAI's gallery layout: the YAML names the asset folder by parameters.model; a chat model beside it."""
    folder = tmp_path_factory.mktemp("image-models")
    sdassets.write_tiny_assets(folder / "stablediffusion_assets", seed=0)
    (folder / f"{MODEL}.yaml").write_text(
        f"name: {MODEL}\nbackend: stablediffusion\nstep: 3\nparameters:\n  model: stablediffusion_assets\n")
    (folder / "by-asset-dir.yaml").write_text(
        "name: by-asset-dir\nbackend: stablediffusion\nasset_dir: stablediffusion_assets\n")
    (folder / "chatty.yaml").write_text("name: chatty\nbackend: llama\nparameters:\n  model: absent.gguf\n")
    (folder / "escape.yaml").write_text("name: escape\nbackend: stablediffusion\nasset_dir: missing_assets\n")
    (folder / "secret.png").write_bytes(b"not for the image route")
    return folder


@pytest.fixture(scope="module")
def server(image_models_path):
    live = LiveServer(image_models_path, "--threads", "1")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-unused", max_retries=0)


def post(server, body: dict, path: str = "/v1/images/generations") -> requests.Response:
    return requests.post(server.url + path, data=json.dumps(body), headers={"Content-Type": "application/json"},
                         timeout=600)


def png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_openai_error(response: requests.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.stablediffusion
def test_sdk_b64_json(client):
    result = client.images.generate(model=MODEL, prompt="a red cube|blurry", size="256x256",
                                    response_format="b64_json", extra_body={"seed": 11})
    image = png(base64.b64decode(result.data[0].b64_json))
    assert image.size == (256, 256) and image.mode == "RGB"
    assert np.asarray(image).std() > 10


@pytest.mark.stablediffusion
def test_url_points_at_the_server(server, client, image_models_path):
    result = client.images.generate(model=MODEL, prompt="a blue sphere", size="384x256", extra_body={"seed": 3})
    url = result.data[0].url
    assert url.startswith(f"{server.url}/generated-images/b64") and url.endswith(".png")
    fetched = requests.get(url, timeout=60)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"
    assert png(fetched.content).size == (384, 256)
    name = url.rsplit("/", 1)[1]
    assert (image_models_path / "generated-images" / name).read_bytes() == fetched.content
    assert not list((image_models_path / "generated-images").glob(".*"))  # no temp files left


@pytest.mark.stablediffusion
def test_same_seed_same_bytes_and_n_images_differ(server):
    body = {"model": MODEL, "prompt": "a green tree", "size": "256x256", "seed": 42,
            "response_format": "b64_json", "n": 2}
    first = post(server, body)
    assert first.status_code == 200, first.text
    again = post(server, body).json()
    images = [base64.b64decode(item["b64_json"]) for item in first.json()["data"]]
    assert len(images) == 2
    assert images == [base64.b64decode(item["b64_json"]) for item in again["data"]]
    assert images[0] != images[1]  # image i uses seed + i
    other = post(server, {**body, "seed": 43, "n": 1}).json()
    assert base64.b64decode(other["data"][0]["b64_json"]) == images[1]
    assert base64.b64decode(post(server, {**body, "seed": 7, "n": 1}).json()["data"][0]["b64_json"]) != images[0]


@pytest.mark.stablediffusion
def test_sizes_modes_steps_and_defaults(server):
    for size, expected in (("512x512", (512, 512)), ("256x320", (256, 320)), ("big", (512, 512))):
        response = post(server, {"prompt": "a house", "size": size, "step": 2, "mode": 1, "seed": 1,
                                 "response_format": "b64_json"})  # no model: the first image model
        assert response.status_code == 200, response.text
        assert png(base64.b64decode(response.json()["data"][0]["b64_json"])).size == expected
    by_dir = post(server, {"model": "by-asset-dir", "prompt": "a house", "size": "256x256", "seed": 1,
                           "step": 3, "response_format": "b64_json"})
    default_steps = post(server, {"model": MODEL, "prompt": "a house", "size": "256x256", "seed": 1,
                                  "response_format": "b64_json"})  # the YAML's step: 3
    assert by_dir.json()["data"] == default_steps.json()["data"]


@pytest.mark.stablediffusion
@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "size": "100x100"}, "size"),
    ({"prompt": "x", "size": "256x250"}, "size"),
    ({"prompt": "x", "size": "2048x2048"}, "size"),
    ({"prompt": "x", "size": "256xabc"}, "size"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"size": "256x256"}, "prompt"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": 11}, "n"),
    ({"prompt": "x", "step": 0}, "step"),
    ({"prompt": "x", "step": "many"}, "step"),
    ({"prompt": "x", "mode": 3}, "mode"),
    ({"prompt": "x", "seed": 1.5}, "seed"),
    ({"prompt": "x", "response_format": "jpeg"}, "response_format"),
    ({"prompt": "x", "model": "chatty"}, "model"),
    ({"prompt": "cat " * 1300, "size": "256x256", "step": 1}, None),  # 1300 tokens: more than 16 chunks
    ({"prompt": "x" * 8001}, "prompt"),
])
def test_bad_requests_are_400(server, body, param):
    assert_openai_error(post(server, {"model": MODEL, **body} if "model" not in body else body), 400, param)


@pytest.mark.stablediffusion
def test_unknown_model_and_broken_config(server, image_models_path):
    assert_openai_error(post(server, {"model": "nope", "prompt": "x"}), 404, "model")
    # a model that cannot load is unavailable (503, retried on the next request), never a 500
    error = assert_openai_error(post(server, {"model": "escape", "prompt": "x", "size": "256x256"}), 503)
    assert "missing_assets" in error["message"] and "does not exist" in error["message"]
    assert str(image_models_path) not in error["message"]  # the server's own paths stay on the server
    assert post(server, {"model": MODEL, "prompt": "still fine", "size": "256x256", "step": 1}).status_code == 200


@pytest.mark.stablediffusion
def test_generated_images_route_serves_only_its_folder(server):
    for path in ("/generated-images/../secret.png", "/generated-images/%2e%2e/secret.png",
                 "/generated-images/..%2fsecret.png", "/generated-images/.b64x.tmp",
                 "/generated-images/nope.png", "/generated-images/sub/dir.png", "/generated-images/"):
        response = requests.get(server.url + path, timeout=30)
        assert response.status_code == 404, path
        assert b"not for the image route" not in response.content


def test_without_the_backend_the_route_says_how_to_enable_it(monkeypatch, tmp_path):
    """A build without --stablediffusion: 501 with the fix, and the rest of the server unaffected."""
    from werkzeug.test import Client

    from localai.api.app import create_app
    from localai.backends import stablediffusion
    from localai.settings import Settings

    monkeypatch.setattr(stablediffusion, "available", lambda: False)
    (tmp_path / "sd.yaml").write_text("name: sd\nbackend: stablediffusion\nasset_dir: assets\n")
    client = Client(create_app(Settings(models_path=tmp_path)))
    response = client.post("/v1/images/generations", json={"prompt": "a cat", "size": "256x256"})
    assert response.status_code == 501
    error = response.get_json()["error"]
    assert "--stablediffusion" in error["message"] and "BUILD_TAGS=stablediffusion" in error["message"]
    assert error["type"] == "server_error" and error["code"] == "not_implemented"
    assert client.get("/v1/models").get_json()["data"][0]["id"] == "sd"
    assert client.get("/healthz").status_code == 200
