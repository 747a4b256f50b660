"""The raw images as CelebA publishes them: one zip, read by file name, written byte-reproducibly.

The stages read images straight out of ``img_align_celeba.zip`` instead of unpacking
202,599 files: DVC then caches and pushes one file, not a folder of small ones, and a
download is linked in place instead of copied. The JPEGs are stored, not deflated,
so reading a member is a seek and a read.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from faceattrs.core.errors import InputError
from faceattrs.data import celeba

# Fixed member timestamps keep the same images the same bytes, so DVC sees no change.
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ArchiveError(InputError):
    """The image archive is missing, is not a zip, or lacks an image."""


@functools.lru_cache(maxsize=4)
def _open(path: str, pid: int, version: tuple[int, int, int]) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    # One open handle per file per process (and per version of the file): opening parses
    # the whole central directory, far too slow to repeat for every chunk of work.
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such image archive") from None
    except zipfile.BadZipFile:
        raise ArchiveError(f"{path}: not a zip file") from None
    members = {PurePosixPath(m.filename).name: m for m in archive.infolist() if m.filename.lower().endswith(".jpg")}
    return archive, members


class ImageArchive:
    """Images of a zip by file name; cheap to pickle into worker processes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @classmethod
    def of(cls, raw: Path | str) -> ImageArchive:
        """The archive inside a raw CelebA folder."""
        return cls(Path(raw) / celeba.ZIP_FILE)

    def _members(self) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ArchiveError(f"{self.path}: no such image archive") from None
        return _open(str(self.path), os.getpid(), (st.st_ino, st.st_size, st.st_mtime_ns))

    def names(self) -> list[str]:
        return sorted(self._members()[1])

    def __contains__(self, name: str) -> bool:
        return name in self._members()[1]

    def __len__(self) -> int:
        return len(self._members()[1])

    def read(self, name: str) -> bytes:
        archive, members = self._members()
        if name not in members:
            raise ArchiveError(f"{self.path}: holds no image {name}")
        return archive.read(members[name])

    def __repr__(self) -> str:
        return f"ImageArchive({str(self.path)!r})"


class ArchiveWriter:
    """Adds images under ``img_align_celeba/`` as the published zip does, stored, with fixed timestamps."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED)

    def add(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(f"{celeba.IMAGE_DIR}/{name}", date_time=_EPOCH)
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pack(items: Iterable[tuple[str, bytes]], path: Path | str) -> None:
    """Write (name, bytes) pairs as an image archive at ``path``."""
    with ArchiveWriter(path) as writer:
        for name, data in items:
            writer.add(name, data)
