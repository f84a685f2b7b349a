"""Galleries: LocalAI's indexes of installable models (``GALLERIES``), and our own offline one.

A gallery is ``{name, url}``; its index is a YAML list of entries (``name``, ``description``,
``license``, ``urls``, ``tags``, ``icon``, and either ``url`` pointing at a definition or the
definition's own ``config_file``/``files``; an entry's ``overrides`` and ``files`` apply on top
of its definition). A model is named ``gallery@name``. The gallery ``localai`` is always there:
the index shipped in this package, every model installable from the package index alone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localai.errors import ConfigError, GalleryError
from localai.gallery.install import parse_yaml
from localai.gallery.net import UrlPolicy
from localai.gallery.sources import Transfer, read_bytes

log = logging.getLogger("localai.gallery")

BUILTIN_NAME = "localai"
BUILTIN_INDEX = Path(__file__).with_name("index.yaml")
MAX_INDEX_BYTES = 32 << 20
MAX_DEFINITION_BYTES = 4 << 20
INDEX_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class Gallery:
    name: str
    url: str

    def as_dict(self) -> dict:
        return {"name": self.name, "url": self.url}


BUILTIN = Gallery(BUILTIN_NAME, f"file://{BUILTIN_INDEX}")


def parse_galleries(text: str | None) -> list[Gallery]:
    """``GALLERIES``: LocalAI's JSON list of ``{"name", "url"}``."""
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"GALLERIES must be a JSON list of {{name, url}}: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(g, dict) and isinstance(g.get("name"), str)
                                             and isinstance(g.get("url"), str) and g["name"] and g["url"]
                                             for g in data):
        raise ConfigError("GALLERIES must be a JSON list of {\"name\": ..., \"url\": ...}")
    return [Gallery(g["name"], g["url"]) for g in data]


class Galleries:
    """The configured galleries (the built-in one first, unless one is configured under its
    name), their indexes fetched on demand and kept for a few minutes."""

    def __init__(self, configured: list[Gallery], policy: UrlPolicy) -> None:
        by_name = {BUILTIN_NAME: BUILTIN}
        by_name.update({g.name: g for g in configured})
        self.galleries = list(by_name.values())
        self.policy = policy  # galleries are the operator's choice: their indexes and files are trusted as such
        self._cache: dict[str, tuple[float, list[dict]]] = {}
        self._lock = threading.Lock()

    def gallery(self, name: str) -> Gallery:
        for gallery in self.galleries:
            if gallery.name == name:
                return gallery
        raise GalleryError(f"no gallery named {name!r} (configured: {', '.join(g.name for g in self.galleries)})")

    def index(self, gallery: Gallery) -> list[dict]:
        with self._lock:
            cached = self._cache.get(gallery.name)
            if cached and time.monotonic() - cached[0] < INDEX_TTL_SECONDS:
                return cached[1]
        if gallery is BUILTIN:
            text = BUILTIN_INDEX.read_bytes()
        else:
            text = read_bytes(gallery.url, self.policy, Transfer(max_bytes=MAX_INDEX_BYTES))
        entries = parse_yaml(text, f"the index of gallery {gallery.name}")
        if not isinstance(entries, list):
            raise GalleryError(f"the index of gallery {gallery.name} is not a list of models")
        entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
        with self._lock:
            self._cache[gallery.name] = (time.monotonic(), entries)
        return entries

    def find(self, model_id: str) -> tuple[Gallery, dict]:
        """The gallery and entry of ``gallery@name`` (or a bare ``name``: the first gallery that has it)."""
        gallery_name, at, name = model_id.rpartition("@")
        galleries = [self.gallery(gallery_name)] if at else self.galleries
        for gallery in galleries:
            entries = self.index(gallery)
            for match in (lambda e: e["name"] == name, lambda e: e["name"].lower() == name.lower()):
                for entry in entries:
                    if match(entry):
                        return gallery, entry
        raise GalleryError(f"no model {name!r} in " + (f"gallery {gallery_name}" if at else "any gallery"))

    def definition(self, gallery: Gallery, entry: dict) -> tuple[dict, dict]:
        """The definition an index entry stands for: its ``url``'s (relative to the index), with
        the entry's own fields on top; and the entry's ``overrides``."""
        raw: dict[str, Any] = {}
        if entry.get("url"):
            url = _relative_to(gallery.url, entry["url"])
            raw = parse_yaml(read_bytes(url, self.policy, Transfer(max_bytes=MAX_DEFINITION_BYTES)),
                             f"the definition of {entry['name']}") or {}
            if not isinstance(raw, dict):
                raise GalleryError(f"the definition of {entry['name']} is not a mapping")
        merged = {**raw, **{k: v for k, v in entry.items() if k not in ("url", "overrides", "files")}}
        merged["files"] = list(raw.get("files") or []) + list(entry.get("files") or [])
        overrides = entry.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise GalleryError(f"the overrides of {entry['name']} are not a mapping")
        return merged, overrides

    def available(self, installed: set[str]) -> list[dict]:
        """Every gallery's models, LocalAI's ``/models/available`` shape plus ``id``."""
        models = []
        for gallery in self.galleries:
            try:
                entries = self.index(gallery)
            except GalleryError as exc:  # one unreachable gallery does not hide the others
                log.warning("gallery %s is unavailable: %s", gallery.name, exc)
                continue
            for entry in entries:
                item = {k: v for k, v in entry.items() if k not in ("config_file",)}
                item.update(id=f"{gallery.name}@{entry['name']}", gallery=gallery.as_dict(),
                            installed=entry["name"] in installed)
                models.append(item)
        return models


def _relative_to(base: str, url: str) -> str:
    """A definition URL from an index: absolute, or relative to the index's own URL."""
    if "://" in url or url.startswith(("github:", "pypi:", "/")):
        return url
    return urllib.parse.urljoin(base, url)
