"""Model galleries: installing models while the server runs (``/models/apply``), before it
starts (``PRELOAD_MODELS``), or from the terminal (``localai models install``).

- ``net``: SSRF-checked HTTP(S) with pinned addresses and per-hop redirect checks.
- ``sources``: URIs (http, github:, huggingface://, pypi:, files) read into a file.
- ``install``: definitions, and the Installer that writes them into the models folder.
- ``index``: configured galleries (``GALLERIES``) and the built-in offline one.
- ``jobs``: the worker pool and LocalAI's job status.

``GalleryService`` ties them to one models folder (and, in the server, to the model manager,
so a model serves as soon as its job is done and is unloaded before it is deleted).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from localai.config import load_model_configs
from localai.errors import GalleryError, InvalidRequest, LocalAIError, ModelNotFound
from localai.files import progress as progress_bar
from localai.gallery.index import MAX_DEFINITION_BYTES, Gallery, Galleries, parse_galleries
from localai.gallery.install import (Definition, Installed, Installer, Progress, build_definition, manifest_path,
                                     merge, parse_yaml)
from localai.gallery.jobs import Job, JobQueue
from localai.gallery.net import UrlPolicy, UrlRefused
from localai.gallery.sources import Cancelled, Transfer, read_bytes
from localai.settings import Settings

__all__ = ["Cancelled", "Definition", "Gallery", "GalleryError", "GalleryService", "Installed", "Job", "UrlPolicy",
           "UrlRefused", "load_entries"]

log = logging.getLogger("localai.gallery")

TRUSTED = UrlPolicy(allow_private=True, allow_files=True)  # what the operator configured (preload, CLI, galleries)
_INLINE_FIELDS = ("config_file", "prompt_templates", "description", "license", "urls", "tags", "icon")


class TerminalProgress(Progress):
    """Progress on a terminal (tqdm bars per file; nothing when stderr is not a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def message(self, text: str) -> None:
        log.info("%s: %s", self.label, text)

    def file(self, name: str, total: int | None) -> None:
        self.close()
        self.bar = progress_bar(desc=name, unit="B", total=total, byte_sizes=True)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class GalleryService:
    """Installs, lists and deletes gallery models for one models folder."""

    def __init__(self, settings: Settings, manager: Any = None) -> None:
        self.settings = settings
        self.manager = manager
        self.models_path = Path(settings.models_path)
        self.request_policy = UrlPolicy(allow_private=settings.allow_private_urls,
                                        allow_files=settings.allow_private_urls)
        self.galleries = Galleries(parse_galleries(settings.galleries), TRUSTED)
        self.installer = Installer(self.models_path, max_file_bytes=settings.max_download_bytes,
                                   protected=[settings.images_path])
        self.jobs = JobQueue(settings.gallery_workers)

    # ---- resolving a request to a definition
    def definition(self, request: dict, *, trusted: bool = False) -> Definition:
        """The definition an apply request (or a PRELOAD_MODELS entry) describes: ``id`` from a
        gallery, else ``url``, with the request's inline fields, name, overrides and files on top."""
        policy = TRUSTED if trusted else self.request_policy
        overrides = request.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise GalleryError("overrides must be a mapping")
        info: dict = {}
        raw: Any = {}
        base_policy = policy
        if request.get("id"):
            gallery, entry = self.galleries.find(str(request["id"]))
            raw, entry_overrides = self.galleries.definition(gallery, entry)
            overrides = merge(entry_overrides, overrides)
            info = {"id": f"{gallery.name}@{entry['name']}", "gallery": gallery.as_dict()}
            base_policy = TRUSTED  # the gallery's files are as trusted as the gallery
        elif request.get("url") or request.get("config_url"):
            url = str(request.get("url") or request.get("config_url"))
            raw = parse_yaml(read_bytes(url, policy, Transfer(max_bytes=MAX_DEFINITION_BYTES)),
                             "the model definition") or {}
            if not isinstance(raw, dict):
                raise GalleryError("the model definition is not a mapping")
            info = {"url": url}
        raw = {**raw, **{k: request[k] for k in _INLINE_FIELDS if request.get(k) is not None}}
        return build_definition(raw, base_policy, name=request.get("name"), overrides=overrides,
                                extra_files=request.get("files"), extra_policy=policy, info=info)

    # ---- operations
    def install(self, request: dict, *, trusted: bool = False, progress: Progress | None = None,
                cancel: Any = None) -> Installed:
        definition = self.definition(request, trusted=trusted)
        if progress is not None:
            progress.message(f"installing {definition.name}")
        overwrite = bool(request.get("overwrite"))
        installed = self.installer.install(definition, overwrite=overwrite, progress=progress, cancel=cancel)
        if self.manager is not None:
            if overwrite:
                self.manager.unload(installed.name)  # its next request loads the new files
            self.manager.reload_configs()
        return installed

    def apply(self, request: dict) -> Job:
        """Queue an install; the job is readable at once."""
        if not any(request.get(k) for k in ("id", "url", "config_url", "config_file", "files")):
            raise InvalidRequest("Name the model to install: `id` (gallery@name), `url` (a definition), or "
                                 "`config_file`/`files` inline.", param="id")
        element = request.get("id") or request.get("name") or request.get("url") or request.get("config_url") \
            or "inline definition"
        job = Job(str(element)[:256])
        return self.jobs.submit(job, lambda job: self.install(request, progress=job, cancel=job.cancel_event).name)

    def configs(self) -> dict:
        if self.manager is not None:
            return dict(self.manager.configs)
        return load_model_configs(self.models_path)[0]

    def delete(self, name: str) -> Job:
        """Queue the deletion of a model (unloaded first); unknown names are refused at once."""
        if name not in self.configs() and not manifest_path(self.models_path, name).exists():
            raise ModelNotFound(name)
        job = Job(name, deletion=True)
        return self.jobs.submit(job, lambda job: self.delete_now(name, job))

    def delete_now(self, name: str, progress: Progress | None = None) -> str:
        if self.manager is not None:
            self.manager.unload(name)
        removed = self.installer.delete(name, self.configs())
        if progress is not None:
            progress.message(f"removed {', '.join(removed) or 'nothing'}")
        if self.manager is not None:
            self.manager.reload_configs()
        return name

    def available(self) -> list[dict]:
        return self.galleries.available(set(self.configs()))

    def preload(self, entries: list[dict]) -> tuple[list[Installed], list[str]]:
        """Install each entry (the operator's: files and private addresses allowed); a failure is
        reported and the others still install."""
        installed, failures = [], []
        for entry in entries:
            label = str(entry.get("id") or entry.get("name") or entry.get("url") or "entry")
            bar = TerminalProgress(label)
            try:
                installed.append(self.install(entry, trusted=True, progress=bar))
            except LocalAIError as exc:
                failures.append(f"{label}: {exc}")
            finally:
                bar.close()
        return installed, failures

    def close(self) -> None:
        self.jobs.shutdown()


def load_entries(preload_models: str | None, preload_config: Path | None) -> list[dict]:
    """The entries of PRELOAD_MODELS (JSON or YAML list) and PRELOAD_MODELS_CONFIG (a YAML file)."""
    entries: list = []
    try:
        for text in (preload_models, Path(preload_config).read_text() if preload_config else None):
            if not text:
                continue
            loaded = yaml.safe_load(text) or []
            if not isinstance(loaded, list):
                raise GalleryError("models to preload must be a list of mappings like {url: ..., name: ...}")
            entries += loaded
    except (yaml.YAMLError, OSError) as exc:
        raise GalleryError(f"cannot read the models to preload: {exc}") from None
    if not all(isinstance(e, dict) for e in entries):
        raise GalleryError("models to preload must be a list of mappings like {url: ..., name: ...}")
    return entries
