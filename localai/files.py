"""File-system helpers shared by everything that writes or names files: paths that must stay
inside a folder, files that appear whole or not at all, and progress bars for long work.

Standard library only: ``build.py`` uses this (through ``localai.fetch``) before any virtual
environment exists; tqdm is used when it is importable.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from localai.errors import ConfigError, LocalAIError


def safe_join(base: Path, relative: str, *, what: str = "file name", folder: str = "the models folder",
              error: Callable[[str], LocalAIError] = ConfigError) -> Path:
    """``relative`` joined to ``base``, refused (``error``) unless it stays inside ``base``.

    Refused: empty names, NUL bytes, URLs, absolute paths and drive letters, and ``..`` in
    either POSIX or Windows spelling (a name written on Windows must not escape either); and
    any path whose folders, with symlinks followed, lead outside ``base``. The last component
    itself may be a symlink placed by whoever runs the server (a model file linked in from
    elsewhere); replacing it with ``os.replace`` replaces the link, never its target.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise error(f"{what}: is empty")
    if "\x00" in relative:
        raise error(f"{what}: contains a NUL byte")
    if "://" in relative:
        raise error(f"{what}: {relative!r} is a URL; download the file into {folder} and name it by its file name")
    for pure in (PurePosixPath(relative), PureWindowsPath(relative)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            raise error(f"{what}: {relative!r} is outside {folder} (absolute paths and '..' are not allowed)")
    path = Path(base) / relative
    root = Path(base).resolve()
    parent = path.parent.resolve()
    if parent != root and root not in parent.parents:
        raise error(f"{what}: {relative!r} leads outside {folder} through a symbolic link")
    return path


@contextlib.contextmanager
def atomic_path(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path`` to create the file at; it is renamed over ``path``
    only when the block ends without an error (and removed if it does not), so a reader
    never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists() and not tmp.is_symlink():
            os.chmod(tmp, mode)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, sync: bool = False) -> Iterator[BinaryIO]:
    """``atomic_path`` opened for writing. ``sync`` flushes the data to disk before the rename
    can become visible."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        yield fh
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """``atomic_output`` for data already in memory."""
    with atomic_output(path, mode=mode) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


class _NoProgress:
    """What ``progress`` gives when no bar is drawn: the iterable itself, and no-op updates."""

    def __init__(self, iterable: Iterable | None):
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable or ())

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(iterable: Iterable | None = None, *, desc: str, unit: str = "it", total: int | None = None,
             byte_sizes: bool = False) -> Any:
    """A tqdm progress bar over ``iterable`` (or for manual ``update``s) when stderr is a
    terminal and tqdm is installed; otherwise a stand-in that draws nothing, so logs and
    captured output stay free of bar redraws."""
    if not sys.stderr.isatty():
        return _NoProgress(iterable)
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=byte_sizes, leave=False)
