"""Gallery installs (PRELOAD_MODELS): offline, with file:// definitions and files."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from localai import gallery
from localai.config import load_model_configs


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    return path


def definition(tmp_path, weights, sha256=None) -> str:
    data = {
        "name": "tiny",
        "config_file": "backend: llama\nparameters:\n  model: tiny.gguf\n  temperature: 0.2\n",
        "files": [{"filename": "tiny.gguf", "uri": f"file://{weights}",
                   "sha256": sha256 or hashlib.sha256(weights.read_bytes()).hexdigest()}],
    }
    path = tmp_path / "tiny-gallery.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_install_from_definition_with_name_and_overrides(tmp_path, weights):
    models = tmp_path / "models"
    models.mkdir()
    entries = gallery.load_entries(json.dumps([{"url": f"file://{definition(tmp_path, weights)}",
                                                "name": "gpt-3.5-turbo",
                                                "overrides": {"parameters": {"top_k": 5}}}]), None)
    config_path = gallery.install(entries[0], models)
    assert (models / "tiny.gguf").read_bytes() == weights.read_bytes()
    configs, errors = load_model_configs(models)
    assert not errors
    config = configs["gpt-3.5-turbo"]
    assert config.parameters.top_k == 5 and config.parameters.temperature == 0.2
    assert config_path.name == "gpt-3.5-turbo.yaml"


def test_hash_mismatch_leaves_nothing_behind(tmp_path, weights):
    models = tmp_path / "models"
    models.mkdir()
    entry = {"url": definition(tmp_path, weights, sha256="0" * 64)}
    with pytest.raises(gallery.GalleryError, match="does not match"):
        gallery.install(entry, models)
    assert list(models.iterdir()) == []


@pytest.mark.parametrize("filename", ["../escape.gguf", "/etc/passwd", ""])
def test_file_names_cannot_escape_the_models_folder(tmp_path, weights, filename):
    entry = {"name": "x", "config_file": {"backend": "llama"},
             "files": [{"filename": filename, "uri": str(weights)}]}
    with pytest.raises(gallery.GalleryError, match="inside the models folder"):
        gallery.install(entry, tmp_path)


def test_preload_config_file_and_bad_input(tmp_path, weights):
    models = tmp_path / "models"
    models.mkdir()
    listing = tmp_path / "preload.yaml"
    listing.write_text(yaml.safe_dump([{"url": definition(tmp_path, weights), "name": "a"}]))
    assert [p.name for p in gallery.preload(None, listing, models)] == ["a.yaml"]
    with pytest.raises(gallery.GalleryError):
        gallery.load_entries("{not: a list", None)
    with pytest.raises(gallery.GalleryError):
        gallery.install({"url": str(tmp_path / "missing.yaml")}, models)


def test_github_shorthand():
    assert gallery._resolve_uri("github:go-skynet/model-gallery/gpt4all-j.yaml") == \
        "https://raw.githubusercontent.com/go-skynet/model-gallery/main/gpt4all-j.yaml"
    assert gallery._resolve_uri("github:o/r/p.yaml@dev").endswith("/o/r/dev/p.yaml")
