"""The gallery's pure logic and the installer on local files: address policy, DNS pinning,
URI forms, definitions, and the rules every install keeps on disk."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
import yaml

from localai.config import load_model_configs
from localai.errors import GalleryError
from localai.gallery import GalleryService, load_entries
from localai.gallery.install import Installer, build_definition, parse_yaml
from localai.gallery.net import UrlPolicy, UrlRefused, address_refusal, open_url, pinned_address
from localai.gallery.sources import Cancelled, Transfer, parse_pypi, resolve
from localai.settings import Settings
from tests.gallery_support import ModelHost

TRUSTED = UrlPolicy(allow_private=True, allow_files=True)
STRICT = UrlPolicy()


@pytest.mark.parametrize("address, allowed_strict, allowed_private", [
    ("8.8.8.8", True, True),
    ("2606:4700:4700::1111", True, True),
    ("127.0.0.1", False, True),
    ("10.1.2.3", False, True),
    ("192.168.1.1", False, True),
    ("100.64.0.1", False, True),
    ("::1", False, True),
    ("fc00::1", False, True),
    ("::ffff:127.0.0.1", False, True),  # IPv4-mapped: judged as the IPv4 address
    ("::ffff:8.8.8.8", True, True),
    ("2002:7f00:1::", False, True),  # 6to4 around 127.0.0.1
    ("169.254.169.254", False, False),  # cloud metadata, never
    ("fd00:ec2::254", False, False),
    ("fe80::1", False, False),
    ("0.0.0.0", False, False),
    ("224.0.0.1", False, False),
    ("240.0.0.1", False, False),
])
def test_address_policy(address, allowed_strict, allowed_private):
    assert (address_refusal(address, STRICT) is None) is allowed_strict
    assert (address_refusal(address, UrlPolicy(allow_private=True)) is None) is allowed_private


def test_the_first_allowed_answer_is_pinned():
    assert pinned_address("h", 80, STRICT, lambda host, port: ["10.0.0.1", "8.8.8.8"]) == "8.8.8.8"
    with pytest.raises(UrlRefused, match="10.0.0.1 is a loopback or private address"):
        pinned_address("h", 80, STRICT, lambda host, port: ["10.0.0.1"])


def test_the_connection_goes_to_the_checked_address():
    """DNS rebinding: the name is resolved once per hop and the socket connects to that answer,
    whatever a second lookup would say; the name still goes out as the Host header."""
    host = ModelHost()
    host.add("/x", b"hello")
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    calls = []

    def resolver(name: str, port: int) -> list[str]:
        calls.append(name)
        return next(answers)

    try:
        response, _ = open_url(f"http://models.example:{host.port}/x", UrlPolicy(allow_private=True),
                               resolver=resolver)
        assert response.read() == b"hello"
        response.close()
        assert calls == ["models.example"]
        assert host.seen[-1].headers["Host"] == f"models.example:{host.port}"
    finally:
        host.close()


def test_uri_shorthands():
    assert resolve("github:go-skynet/model-gallery/gpt4all-j.yaml") == \
        "https://raw.githubusercontent.com/go-skynet/model-gallery/main/gpt4all-j.yaml"
    assert resolve("github:o/r/p.yaml@dev").endswith("/o/r/dev/p.yaml")
    assert resolve("huggingface://TheBloke/phi-2-GGUF/phi-2.Q8_0.gguf") == \
        "https://huggingface.co/TheBloke/phi-2-GGUF/resolve/main/phi-2.Q8_0.gguf"
    assert resolve("hf://o/r/dir/f.bin@v1") == "https://huggingface.co/o/r/resolve/v1/dir/f.bin"


@pytest.mark.parametrize("uri", ["pypi:--index-url=http://evil==1#a", "pypi:name @ http://x==1#a", "pypi:x==1",
                                 "pypi:x==1#../../etc/passwd", "pypi:x==-e#a", "pypi:x#a", "pypi:x==1 2#a"])
def test_pypi_uris_are_plain_names_only(uri):
    with pytest.raises(GalleryError):
        parse_pypi(uri)


def test_yaml_errors_say_where_not_what():
    with pytest.raises(GalleryError) as caught:
        parse_yaml("a: [SECRET-VALUE\n  : :", "the definition")
    assert "line" in str(caught.value) and "SECRET" not in str(caught.value)


# ---- the installer on local files ----------------------------------------------------------------------

@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    return path


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models"
    path.mkdir()
    return path


def tiny(weights, sha256=None, **extra) -> dict:
    return {"name": "tiny", "config_file": "backend: llama\nparameters:\n  model: tiny.gguf\n  temperature: 0.2\n",
            "files": [{"filename": "tiny.gguf", "uri": f"file://{weights}",
                       "sha256": sha256 or hashlib.sha256(weights.read_bytes()).hexdigest()}], **extra}


def installer(models) -> Installer:
    return Installer(models, max_file_bytes=1 << 30, protected=[models / "generated-images"])


def test_install_with_name_overrides_and_a_manifest(models, weights):
    definition = build_definition(tiny(weights), TRUSTED, name="gpt-3.5-turbo",
                                  overrides={"parameters": {"top_k": 5}})
    installed = installer(models).install(definition)
    assert (models / "tiny.gguf").read_bytes() == weights.read_bytes()
    configs, errors = load_model_configs(models)
    assert not errors and configs["gpt-3.5-turbo"].parameters.top_k == 5
    assert configs["gpt-3.5-turbo"].parameters.temperature == 0.2
    assert installed.config_path.name == "gpt-3.5-turbo.yaml"
    assert yaml.safe_load((models / "._gallery_gpt-3.5-turbo.yaml").read_text())["files"] == ["tiny.gguf"]


def test_parts_are_concatenated_and_each_checked(models, tmp_path):
    parts = [tmp_path / f"p{i}" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_bytes(bytes([i]) * 1000)
    whole = b"".join(p.read_bytes() for p in parts)
    spec = {"filename": "joined.bin", "sha256": hashlib.sha256(whole).hexdigest(), "parts": [
        {"uri": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in parts]}
    raw = {"name": "joined", "config_file": {"backend": "llama", "parameters": {"model": "joined.bin"}},
           "files": [spec]}
    installer(models).install(build_definition(raw, TRUSTED))
    assert (models / "joined.bin").read_bytes() == whole
    spec["parts"][1]["sha256"] = "0" * 64
    (models / "joined.bin").unlink()
    with pytest.raises(GalleryError, match="part 2"):
        installer(models).install(build_definition({**raw, "name": "joined2"}, TRUSTED))
    assert not (models / "joined.bin").exists()


def test_hash_mismatch_leaves_nothing_behind(models, weights):
    with pytest.raises(GalleryError, match="does not match"):
        installer(models).install(build_definition(tiny(weights, sha256="0" * 64), TRUSTED))
    assert list(models.iterdir()) == []


@pytest.mark.parametrize("filename", ["../escape.gguf", "/etc/passwd", "", "x/../../y", "a.yaml", "b.tmpl", ".x",
                                      "generated-images/a.png"])
def test_file_names_cannot_escape_or_shadow(models, weights, filename):
    raw = {"name": "x", "config_file": {"backend": "llama"}, "files": [{"filename": filename, "uri": str(weights)}]}
    with pytest.raises(GalleryError):
        installer(models).install(build_definition(raw, TRUSTED))
    assert list(models.iterdir()) == []


def test_an_existing_file_is_kept_unless_overwrite(models, weights):
    (models / "tiny.gguf").write_bytes(b"someone else's")
    with pytest.raises(GalleryError, match="exists with other content"):
        installer(models).install(build_definition(tiny(weights), TRUSTED))
    assert (models / "tiny.gguf").read_bytes() == b"someone else's"
    installer(models).install(build_definition(tiny(weights), TRUSTED), overwrite=True)
    assert (models / "tiny.gguf").read_bytes() == weights.read_bytes()


def test_local_files_need_a_trusting_policy(models, weights):
    with pytest.raises(UrlRefused, match="local file"):
        installer(models).install(build_definition(tiny(weights), STRICT))


def test_a_cancelled_install_removes_what_it_made(models, weights):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        installer(models).install(build_definition(tiny(weights), TRUSTED), cancel=cancel)
    assert list(models.iterdir()) == []


def test_delete_keeps_files_another_model_uses(models, weights):
    service = GalleryService(Settings(models_path=models))
    try:
        service.preload([tiny(weights), {**tiny(weights), "name": "twin"}])
        service.delete_now("tiny")
        assert (models / "tiny.gguf").exists() and not (models / "tiny.yaml").exists()
        service.delete_now("twin")
        assert list(models.iterdir()) == []
        with pytest.raises(GalleryError, match="no model named"):
            service.installer.delete("twin", {})
    finally:
        service.close()


def test_preload_entries_and_bad_input(tmp_path, models, weights):
    listing = tmp_path / "preload.yaml"
    listing.write_text(yaml.safe_dump([{**tiny(weights), "name": "a"}]))
    entries = load_entries(json.dumps([{"url": "file:///nowhere.yaml"}]), listing)
    service = GalleryService(Settings(models_path=models))
    try:
        installed, failures = service.preload(entries)
    finally:
        service.close()
    assert [i.name for i in installed] == ["a"] and len(failures) == 1 and "nowhere.yaml" in failures[0]
    for bad in ("{not: a list", '{"url": "x"}', "[1, 2]"):
        with pytest.raises(GalleryError):
            load_entries(bad, None)


def test_size_limit_counts_the_whole_file(models, tmp_path):
    parts = [tmp_path / f"p{i}" for i in range(2)]
    for part in parts:
        part.write_bytes(b"z" * 600)
    raw = {"name": "big", "config_file": {"backend": "llama"},
           "files": [{"filename": "big.bin", "parts": [{"uri": str(p)} for p in parts]}]}
    small = Installer(models, max_file_bytes=1000)
    with pytest.raises(GalleryError, match="over the limit"):
        small.install(build_definition(raw, TRUSTED))
    assert list(models.iterdir()) == []
    assert Transfer(max_bytes=5).too_large("f").args[0].startswith("f: the download is over the limit")
