"""The raw images as CelebA publishes them: one zip, read by file name, written byte-reproducibly.

The stages read images straight out of ``img_align_celeba.zip`` instead of unpacking
202,599 files: DVC then caches and pushes one file, not a folder of small ones, and a
download is linked in place instead of copied. The JPEGs are stored, not deflated,
so reading a member is a seek and a read.
"""

from __future__ import annotations

import functools
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from faceattrs.core.errors import InputError
from faceattrs.data import celeba, image_header

# Fixed member timestamps keep the same images the same bytes, so DVC sees no change.
_EPOCH = (1980, 1, 1, 0, 0, 0)
# Caps on one member, checked from the zip's directory before a byte of it is read. CelebA's
# aligned JPEGs are 5-15 KB each (the published zip: 1,443,490,838 bytes for 202,599, about
# 7 KB apiece); 8 MiB is over 500 times the largest, room for any re-encoding of a face.
MAX_MEMBER_BYTES = 8 << 20
# JPEG data is entropy-coded already: deflate shrinks it by a few percent, a flat picture (the
# most compressible there is) about 3 times. A member that inflates 100 times is no JPEG; a zip
# bomb inflates about 1000 times. Members under RATIO_FROM_BYTES cost little whatever they hold.
MAX_RATIO = 100
RATIO_FROM_BYTES = 64 << 10
# What zipfile raises for a damaged zip, beyond BadZipFile: a bad offset, a truncated or
# undecodable record, an unsupported compression method, encryption.
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
)


class ArchiveError(InputError):
    """The image archive is missing, is not a zip, or lacks an image."""


class MemberTooLarge(ArchiveError):
    """A member whose directory entry gives a size, or a compression ratio, that no CelebA image has."""


class DuplicateName(ArchiveError):
    """Two members with one file name in different folders: which one is the image is anyone's guess."""


def _check_member(path: str, info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise MemberTooLarge(
            f"{path}: member {info.filename} is {info.file_size} bytes, over the {MAX_MEMBER_BYTES:,}-byte cap "
            "for one image; not read"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FROM_BYTES and ratio > MAX_RATIO:
        raise MemberTooLarge(
            f"{path}: member {info.filename} is compressed {ratio:.0f}x ({info.file_size} bytes in "
            f"{info.compress_size}), over the {MAX_RATIO}x any JPEG allows; not read"
        )


@functools.lru_cache(maxsize=4)
def _open(path: str, pid: int, version: tuple[int, int, int]) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    # One open handle per file per process (and per version of the file): opening parses
    # the whole central directory, far too slow to repeat for every chunk of work.
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such image archive") from None
    except IsADirectoryError:
        raise ArchiveError(f"{path}: a folder, not an image archive") from None
    except _DAMAGED as err:
        raise ArchiveError(f"{path}: not a readable zip file ({err})") from None
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.lower().endswith(".jpg"):
            continue
        _check_member(path, info)
        name = PurePosixPath(info.filename).name
        if name in members:
            raise DuplicateName(
                f"{path}: {members[name].filename} and {info.filename} share the name {name}; "
                "an image archive holds each file name once"
            )
        members[name] = info
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
        """The bytes of image ``name``; an image whose header claims absurd dimensions is refused here, once for
        every decoder that would otherwise size its buffer by it."""
        archive, members = self._members()
        if name not in members:
            raise ArchiveError(f"{self.path}: holds no image {name}")
        try:
            data = archive.read(members[name])
        except _DAMAGED as err:
            raise ArchiveError(f"{self.path}: cannot read member {members[name].filename} ({err})") from None
        image_header.check(data, f"{self.path}:{name}")
        return data

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
