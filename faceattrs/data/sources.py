"""Where CelebA comes from: a local copy, an HTTP mirror or Google Drive (and the synthetic generator, registered).

Every source ends in the same verified folder in the published layout; the registry
``SOURCES`` maps ``data.source`` to the function that fills it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import requests
from tqdm import tqdm

from faceattrs.core.errors import InputError, choose
from faceattrs.core.params import DataParams
from faceattrs.data import archive, celeba
from faceattrs.data.celeba import ATTRIBUTES, FormatError

PUBLISHED_MD5 = {f.name: f.md5 for f in celeba.PUBLISHED_FILES}
# The files a download needs; bbox and landmarks are optional extras of the release.
REQUIRED_DOWNLOADS = (celeba.ZIP_FILE, celeba.ATTR_FILE, celeba.PARTITION_FILE, celeba.IDENTITY_FILE)
OPTIONAL_DOWNLOADS = (celeba.BBOX_FILE, celeba.LANDMARKS_FILE)


class SourceError(InputError):
    """A source that cannot deliver a valid CelebA; the message says which file and why."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def looks_like_html(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:200]


# ---------------------------------------------------------------- HTTP(S) mirror


def http_download(
    url: str, dest: Path, md5: str | None, timeout: float = 60.0, retries: int = 3, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``.part``; verified before it gets its name.

    A checksum mismatch or an HTML page in place of the file removes the partial
    download and raises, so no file that looks complete is ever left behind.
    """
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            _fetch_into(url, part, timeout, progress)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            attempt += 1
            if attempt > retries:
                raise SourceError(
                    f"{url}: download failed after {retries} retries ({err}); "
                    f"rerun to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from None
    if looks_like_html(part) and not dest.name.endswith((".html", ".htm")):
        part.unlink()
        raise SourceError(
            f"{url}: the server sent an HTML page instead of {dest.name} "
            "(a quota-exceeded or virus-scan page?); nothing was kept"
        )
    if md5 is not None:
        found = md5sum(part)
        if found != md5:
            part.unlink()
            raise SourceError(
                f"{url}: md5 mismatch for {dest.name}: expected {md5}, got {found}; the partial file was removed"
            )
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, timeout: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:  # the part is already whole
            return
        if response.status_code not in (200, 206):
            raise SourceError(f"{url}: HTTP {response.status_code} {response.reason}")
        resume = response.status_code == 206
        if not resume:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, "ab" if resume else "wb") as handle,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress
            ) as bar,
        ):
            for block in response.iter_content(chunk_size=1 << 16):
                handle.write(block)
                bar.update(len(block))


# ---------------------------------------------------------------- turning downloads into the layout


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def link_archive(zip_path: Path, out: Path) -> None:
    """Put the published image zip into the layout, as a hard link where the disk allows."""
    try:
        found = len(archive.ImageArchive(zip_path))
    except archive.ArchiveError as err:
        raise SourceError(str(err)) from None
    if not found:
        raise SourceError(f"{zip_path}: holds no .jpg images")
    _link_or_copy(zip_path, out / celeba.ZIP_FILE)


def pack_images(src_dir: Path, out: Path, progress: bool) -> None:
    """Pack a folder of JPEGs into the layout's zip (a Kaggle or unpacked copy of CelebA)."""
    paths = sorted(src_dir.glob("*.jpg"))
    if not paths:
        raise SourceError(f"{src_dir}: holds no .jpg images")
    items = ((p.name, p.read_bytes()) for p in tqdm(paths, desc="pack images", unit="img", disable=not progress))
    archive.pack(items, out / celeba.ZIP_FILE)


@dataclass(frozen=True)
class Origin:
    """Where a file of the layout came from, so errors name the user's file, not the temporary copy."""

    path: Path
    line_offset: int = 0  # added to a line number of the layout's file (a converted CSV has other lines)


Origins = dict[str, Origin]


def _assemble(files: dict[str, Path], out: Path, progress: bool) -> Origins:
    """Build the layout from downloaded published files (zip + text files)."""
    link_archive(files[celeba.ZIP_FILE], out)
    for name, path in files.items():
        if name != celeba.ZIP_FILE:
            shutil.copyfile(path, out / name)
    return {name: Origin(path) for name, path in files.items()}


def _download_files(
    fetch: Callable[[str, Path, str | None], Path], downloads: Path, md5: dict[str, str]
) -> dict[str, Path]:
    downloads.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in REQUIRED_DOWNLOADS + OPTIONAL_DOWNLOADS:
        try:
            files[name] = fetch(name, downloads / name, md5.get(name, PUBLISHED_MD5[name]))
        except SourceError as err:
            if name in OPTIONAL_DOWNLOADS and "HTTP 404" in str(err):
                continue
            raise
    return files


def from_url(params: DataParams, out: Path, downloads: Path, workers: int, progress: bool) -> Origins:
    base = params.url.base.rstrip("/")
    fetch = lambda name, dest, md5: http_download(  # noqa: E731
        f"{base}/{name}", dest, md5, params.url.timeout_s, params.url.retries, progress
    )
    return _assemble(_download_files(fetch, downloads, params.url.md5), out, progress)


def from_gdrive(params: DataParams, out: Path, downloads: Path, workers: int, progress: bool) -> Origins:
    from torchvision.datasets.utils import download_file_from_google_drive

    ids = {f.name: f.gdrive_id for f in celeba.PUBLISHED_FILES}

    def fetch(name: str, dest: Path, md5: str | None) -> Path:
        if not (dest.exists() and md5sum(dest) == md5):
            try:
                download_file_from_google_drive(ids[name], str(dest.parent), dest.name)
            except Exception as err:  # gdown raises its own types for quota and permission pages
                raise SourceError(f"Google Drive file {name} ({ids[name]}): {err}") from err
        if looks_like_html(dest):
            dest.unlink()
            raise SourceError(
                f"Google Drive sent an HTML page instead of {name} (quota exceeded?); try data.source=url with a mirror"
            )
        if md5 is not None and md5sum(dest) != md5:
            found = md5sum(dest)
            dest.unlink()
            raise SourceError(f"Google Drive file {name}: md5 mismatch: expected {md5}, got {found}")
        return dest

    return _assemble(_download_files(fetch, downloads, {}), out, progress)


def from_local(params: DataParams, out: Path, downloads: Path, workers: int, progress: bool) -> Origins:
    root = Path(params.local.path).expanduser()
    if not root.is_dir():
        raise SourceError(f"data.local.path: {root} is not a folder")
    kaggle_images = root / celeba.IMAGE_DIR / celeba.IMAGE_DIR
    if (root / "list_attr_celeba.csv").exists():
        return _from_kaggle(root, kaggle_images if kaggle_images.is_dir() else root / celeba.IMAGE_DIR, out, progress)
    missing = [name for name in (celeba.ATTR_FILE, celeba.PARTITION_FILE) if not (root / name).exists()]
    if missing:
        raise SourceError(
            f"{root}: not a CelebA folder: missing {', '.join(missing)} "
            "(and no list_attr_celeba.csv of the Kaggle layout)"
        )
    origins = {}
    for name in celeba.TEXT_FILES:
        if (root / name).exists():
            shutil.copyfile(root / name, out / name)
            origins[name] = Origin(root / name)
    if (root / celeba.ZIP_FILE).exists():
        link_archive(root / celeba.ZIP_FILE, out)
        origins[celeba.ZIP_FILE] = Origin(root / celeba.ZIP_FILE)
    elif (root / celeba.IMAGE_DIR).is_dir():
        pack_images(root / celeba.IMAGE_DIR, out, progress)
        origins[celeba.ZIP_FILE] = Origin(root / celeba.IMAGE_DIR)
    else:
        raise SourceError(f"{root}: neither {celeba.IMAGE_DIR}/ nor {celeba.ZIP_FILE} is there")
    return origins


def _from_kaggle(root: Path, images: Path, out: Path, progress: bool) -> Origins:
    """The Kaggle layout: nested image folder and CSV labels; it has no identity file."""
    attrs = celeba.read_kaggle_csv(root / "list_attr_celeba.csv", ATTRIBUTES)
    bad = ~attrs.isin([-1, 1]).all(axis=1)
    if bad.any():
        first = attrs.index.get_loc(attrs.index[bad][0]) + 2
        raise FormatError(root / "list_attr_celeba.csv", first, "values must be -1 or 1")
    (out / celeba.ATTR_FILE).write_bytes(celeba.format_attributes(((attrs + 1) // 2).astype("int8")))
    partition = celeba.read_kaggle_csv(root / "list_eval_partition.csv", ("partition",))["partition"]
    (out / celeba.PARTITION_FILE).write_bytes(celeba.format_pairs(partition))
    if (root / "list_bbox_celeba.csv").exists():
        bbox = celeba.read_kaggle_csv(root / "list_bbox_celeba.csv", celeba.BBOX_HEADER[1:])
        (out / celeba.BBOX_FILE).write_bytes(celeba.format_table(bbox, celeba.BBOX_HEADER))
    if (root / "list_landmarks_align_celeba.csv").exists():
        marks = celeba.read_kaggle_csv(root / "list_landmarks_align_celeba.csv", celeba.LANDMARK_HEADER)
        (out / celeba.LANDMARKS_FILE).write_bytes(celeba.format_table(marks, celeba.LANDMARK_HEADER))
    if (root / celeba.IDENTITY_FILE).exists():
        shutil.copyfile(root / celeba.IDENTITY_FILE, out / celeba.IDENTITY_FILE)
    pack_images(images, out, progress)
    # A CSV has a header line where the text files have a count and a header (attributes,
    # bbox, landmarks), or nothing (partition): its rows sit one line lower, or one higher.
    origins = {
        celeba.ATTR_FILE: Origin(root / "list_attr_celeba.csv", -1),
        celeba.PARTITION_FILE: Origin(root / "list_eval_partition.csv", 1),
        celeba.BBOX_FILE: Origin(root / "list_bbox_celeba.csv", -1),
        celeba.LANDMARKS_FILE: Origin(root / "list_landmarks_align_celeba.csv", -1),
        celeba.IDENTITY_FILE: Origin(root / celeba.IDENTITY_FILE),
        celeba.ZIP_FILE: Origin(images),
    }
    return {name: origin for name, origin in origins.items() if (out / name).exists()}


Source = Callable[[DataParams, Path, Path, int, bool], Origins]
# Each source fills the layout and says where each file came from. The synthetic source lives with the
# generator and registers itself (faceattrs.synthetic.source), so that data never imports what it feeds.
SOURCES: dict[str, Source] = {"local": from_local, "url": from_url, "gdrive": from_gdrive}


def register(name: str) -> Callable[[Source], Source]:
    """A decorator that adds a source to ``SOURCES`` under ``name``, the ``data.source`` that selects it."""

    def add(source: Source) -> Source:
        SOURCES[name] = source
        return source

    return add


def verify_layout(folder: Path) -> dict:
    """Check a folder against the published layout; returns counts, raises naming what is wrong."""
    labels = celeba.read_attributes(folder / celeba.ATTR_FILE)
    partition = celeba.read_partition(folder / celeba.PARTITION_FILE)
    _same_files(folder / celeba.PARTITION_FILE, partition.index, labels.index)
    identity = None
    if (folder / celeba.IDENTITY_FILE).exists():
        identity = celeba.read_identity(folder / celeba.IDENTITY_FILE)
        _same_files(folder / celeba.IDENTITY_FILE, identity.index, labels.index)
    for name, reader in ((celeba.BBOX_FILE, celeba.read_bbox), (celeba.LANDMARKS_FILE, celeba.read_landmarks)):
        if (folder / name).exists():
            _same_files(folder / name, reader(folder / name).index, labels.index)
    images = archive.ImageArchive.of(folder)
    try:
        present = set(images.names())
    except archive.ArchiveError as err:
        raise SourceError(str(err)) from None
    missing = [name for name in labels.index if name not in present]
    if missing:
        raise SourceError(
            f"{images.path}: {len(missing)} of {len(labels)} images listed in "
            f"{celeba.ATTR_FILE} are missing, e.g. {', '.join(missing[:5])}"
        )
    return {
        "images": len(labels),
        "partitions": {celeba.PARTITION_NAMES[k]: int(v) for k, v in partition.value_counts().sort_index().items()},
        "identities": int(identity.nunique()) if identity is not None else None,
        "unlisted_images": len(present) - len(labels),
    }


def _same_files(path: Path, found: pd.Index, expected: pd.Index) -> None:
    if len(found) != len(expected) or not found.equals(expected):
        extra = found.difference(expected)
        lost = expected.difference(found)
        raise FormatError(
            path,
            None,
            f"lists other files than {celeba.ATTR_FILE}: "
            f"{len(lost)} missing (e.g. {list(lost[:3])}), {len(extra)} extra (e.g. {list(extra[:3])})",
        )


def fetch(params: DataParams, out: Path, downloads: Path, workers: int = 0, progress: bool = True) -> dict:
    """Fill ``out`` (an empty folder) from the configured source and verify it.

    An error in a file the source copied or converted names the file the user gave
    (with its own line number), not the temporary copy that is gone after the failure.
    """
    origins = choose(SOURCES, params.source, "data.source")(params, out, downloads, workers, progress)
    try:
        return verify_layout(out)
    except FormatError as err:
        origin = origins.get(err.path.name) if err.path.parent == out else None
        if origin is None:
            raise
        line = None if err.line is None else err.line + origin.line_offset
        raise FormatError(origin.path, line, err.message) from None
    except (SourceError, archive.ArchiveError) as err:
        raise type(err)(_with_origins(str(err), out, origins)) from None


def _with_origins(message: str, out: Path, origins: Origins) -> str:
    """``message`` with every path into ``out`` replaced by the file it came from."""
    for name, origin in origins.items():
        message = message.replace(str(out / name), str(origin.path))
    return message
