"""Atomic outputs: everything is written under a temporary name, flushed to disk, then renamed into place.

A killed stage leaves at most a hidden ``.<name>.tmp-<pid>@<host>.<random>`` sibling, never a half-written
output that DVC could cache as if it were complete. ``.gitignore`` and ``.dvcignore`` match that name, and
a stage calls ``remove_stale`` on its outputs when it starts, which removes those whose writer has died.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

# <name>.tmp-<pid>@<host>.<8 characters from tempfile>, and ".old" on a replaced folder on its way out.
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9.-]+)\.[a-z0-9_]{8}(?:\.old)?$")


def _host() -> str:
    # A pid names a process only on its own machine: a folder shared between machines holds others' files.
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def _prefix(path: Path) -> str:
    return f".{path.name}.tmp-{os.getpid()}@{_host()}."


def _temp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_prefix(path), dir=path.parent))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Every file and folder under ``root``, and ``root`` itself, on disk: a rename is durable only after its data."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _fsync(Path(folder, name))
        for name in dirs:
            _fsync(Path(folder, name))
    _fsync(root)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = tmp.with_name(tmp.name + ".old")
            path.rename(old)
            tmp.rename(path)
            _fsync(path.parent)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
            _fsync(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_prefix(path), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _stale(entry: Path, name: str | None = None) -> bool:
    """Whether ``entry`` is a temporary name (of ``name``, if given) left by a process of this machine that died."""
    found = _TEMP.match(entry.name)
    if found is None or (name is not None and found["name"] != name):
        return False
    return found["host"] == _host() and not _alive(int(found["pid"]))


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def remove_stale(*outputs: Path | str) -> list[Path]:
    """Remove what writers that died left of these outputs: temporary siblings, and temporary names inside an
    output folder (one that DVC persists between runs keeps them otherwise). Returns what was removed.

    A temporary name of a live process, or of another machine, is left alone.
    """
    removed = []
    for output in map(Path, outputs):
        if output.parent.is_dir():
            removed += [p for p in output.parent.iterdir() if _stale(p, output.name)]
        if output.is_dir() and not output.is_symlink():
            for folder, dirs, files in os.walk(output):
                found = [Path(folder, n) for n in dirs + files if _stale(Path(folder, n))]
                dirs[:] = [d for d in dirs if Path(folder, d) not in found]
                removed += found
    for entry in removed:
        _remove(entry)
    return removed


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
