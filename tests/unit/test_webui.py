"""The playground's routes in-process: the page and its files, their headers (CSP, caching, 304),
the model list with capabilities, API keys, and --disable-webui. The browser tests are
tests/e2e/test_playground.py."""

from __future__ import annotations

import argparse
import re

import pytest
from werkzeug.test import Client

from localai.api.app import create_app
from localai.manager import ModelManager
from localai.settings import Settings, add_arguments, from_arguments
from tests.fake_engine import fake_registry, write_fake_models

KEY = "sk-webui-test-key"
BUDGET = 40 * 1024  # the page, its script, style sheet and icon together


def make_client(tmp_path, **settings) -> Client:
    write_fake_models(tmp_path, "fake")
    (tmp_path / "whisper-x.yaml").write_text("name: whisper-x\nbackend: whisper\nparameters: {model: none.bin}\n")
    (tmp_path / "embedder.yaml").write_text("name: embedder\nbackend: llama\nembeddings: true\n"
                                            "parameters: {model: none.gguf}\n")
    (tmp_path / "odd.yaml").write_text("name: odd\nbackend: no-such-backend\n")
    config = Settings(models_path=tmp_path, **settings)
    app = create_app(config, ModelManager(config, fake_registry({})))
    return Client(app)


@pytest.fixture
def client(tmp_path):
    client = make_client(tmp_path)
    yield client
    client.application.close()


def asset_links(page: str) -> dict[str, str]:
    """name -> version of each /static/NAME?v=HASH link on the page."""
    return dict(re.findall(r'"/static/([\w.]+)\?v=([0-9a-f]{16})"', page))


def test_the_page_links_its_versioned_assets_and_nothing_external(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert set(asset_links(page)) == {"app.js", "style.css", "icon.svg"}
    # no inline script, style attribute or event handler attribute: the CSP would refuse them
    assert "<script>" not in page and not re.search(r"<[^>]*\s(style|on\w+)=", page)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN, no external font


def test_security_headers_on_the_page_and_its_files(client):
    page = client.get("/")
    for response in [page] + [client.get(f"/static/{name}") for name in ("app.js", "style.css", "icon.svg")]:
        csp = {d.split()[0]: d.split()[1:] for d in response.headers["Content-Security-Policy"].split("; ")}
        assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"]
        assert csp["connect-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
        assert csp["img-src"] == ["'self'", "data:", "blob:"] and csp["media-src"] == ["'self'", "blob:"]
        assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'none'"]
        assert not any("unsafe" in v for values in csp.values() for v in values)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/static/app.js").mimetype == "text/javascript"
    assert client.get("/static/style.css").mimetype == "text/css"
    assert client.get("/static/icon.svg").mimetype == "image/svg+xml"


def test_caching_etags_and_304(client):
    page = client.get("/")
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["ETag"]
    again = client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    for name, version in asset_links(page.get_data(as_text=True)).items():
        pinned = client.get(f"/static/{name}?v={version}")
        assert pinned.status_code == 200 and "immutable" in pinned.headers["Cache-Control"]
        assert pinned.headers["ETag"] == f'"{version}"'
        unpinned = client.get(f"/static/{name}")  # an old or missing version is revalidated, never pinned
        assert unpinned.headers["Cache-Control"] == "no-cache"
        assert client.get(f"/static/{name}?v=0000000000000000").headers["Cache-Control"] == "no-cache"
        assert client.get(f"/static/{name}", headers={"If-None-Match": f'"{version}"'}).status_code == 304
    assert client.head("/").status_code == 200


def test_the_whole_page_fits_its_budget(client):
    page = client.get("/").get_data()
    total = len(page) + sum(len(client.get(f"/static/{name}").get_data()) for name in ("app.js", "style.css",
                                                                                       "icon.svg"))
    assert total < BUDGET, total


@pytest.mark.parametrize("path", ["/static/../settings.py", "/static/__init__.py", "/static/index.html",
                                  "/static/", "/static/app.js/x"])
def test_only_the_packaged_assets_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_the_model_list_says_what_each_model_can_do(client):
    models = {m["id"]: m for m in client.get("/webui/models").get_json()["data"]}
    assert models["fake"]["capabilities"] == ["text", "tokenize"] and models["fake"]["backend"] == "fake"
    assert models["whisper-x"]["capabilities"] == ["transcription"]
    assert models["embedder"]["capabilities"] == ["text", "embeddings", "tokenize"]
    assert models["odd"]["capabilities"] == []  # listed, able to do nothing


def test_with_api_keys_the_page_is_public_and_the_api_is_not(tmp_path):
    client = make_client(tmp_path, api_keys=[KEY])
    try:
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        refused = client.get("/webui/models")
        assert refused.status_code == 401 and refused.get_json()["error"]["message"]
        assert client.get("/webui/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    finally:
        client.application.close()


def test_disable_webui_turns_the_routes_into_404s(tmp_path):
    client = make_client(tmp_path, disable_webui=True)
    try:
        for path in ("/", "/static/app.js", "/webui/models"):
            response = client.get(path)
            assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", path
        assert client.get("/v1/models").status_code == 200  # the API is untouched
    finally:
        client.application.close()


@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, False), (["--disable-webui"], {}, True), ([], {"DISABLE_WEBUI": "true"}, True),
    ([], {"LOCALAI_DISABLE_WEBUI": "1"}, True), ([], {"LOCALAI_DISABLE_WEBUI": "0", "DISABLE_WEBUI": "true"}, False),
])
def test_the_disable_webui_flag_and_environment(argv, env, expected):
    parser = argparse.ArgumentParser()
    add_arguments(parser, env)
    assert from_arguments(parser.parse_args(argv)).disable_webui is expected
