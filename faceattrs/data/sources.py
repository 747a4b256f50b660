"""Where CelebA comes from: a local copy, an HTTP mirror or Google Drive (and the synthetic generator, registered).

Every source ends in the same verified folder in the published layout; the registry
``SOURCES`` maps ``data.source`` to the function that fills it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import pandas as pd
import requests
import urllib3
from tqdm import tqdm

from faceattrs.core.errors import InputError, choose
from faceattrs.core.params import DataParams
from faceattrs.data import archive, celeba
from faceattrs.data.celeba import ATTRIBUTES, FormatError

PUBLISHED_MD5 = {f.name: f.md5 for f in celeba.PUBLISHED_FILES}
PUBLISHED_SIZE = {f.name: f.size for f in celeba.PUBLISHED_FILES if f.size is not None}
# The files a download needs; bbox and landmarks are optional extras of the release.
REQUIRED_DOWNLOADS = (celeba.ZIP_FILE, celeba.ATTR_FILE, celeba.PARTITION_FILE, celeba.IDENTITY_FILE)
OPTIONAL_DOWNLOADS = (celeba.BBOX_FILE, celeba.LANDMARKS_FILE)
# FORMAT.md gives no size for bbox and landmarks: their 202,599 rows of under 60 bytes make about 12 MB.
UNPUBLISHED_SIZE_CAP = 64 << 20
# The slowest transfer a download waits for: the zip in about 3 hours. A slower link gets
# there over several runs, each resuming from the partial file the one before it kept.
MIN_BYTES_PER_S = 128 << 10


class SourceError(InputError):
    """A source that cannot deliver a valid CelebA; the message says which file and why."""


class BadUrl(SourceError):
    """``data.url.base`` (or a redirect) that is no http(s) URL."""


class HttpStatusError(SourceError):
    """A server's answer other than the file; ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class DownloadFailed(SourceError):
    """The connection failed on every try; the partial file is kept for the next run to resume."""


class DeadlineExceeded(SourceError):
    """A file that took longer than its size allows at the slowest rate waited for (``MIN_BYTES_PER_S``)."""


class TooLarge(SourceError):
    """A file larger than the one published (or, for a local image, than any image may be)."""


class BadContentRange(SourceError):
    """A partial answer (206) that starts elsewhere than where the request asked it to."""


class WrongFile(SourceError):
    """Bytes that are not the file asked for: an HTML page, or an md5 that does not match."""


class NotARegularFile(SourceError):
    """A symbolic link, named pipe, device or folder where a local CelebA should hold a plain file."""


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


# The user name and password of a URL: between "scheme://" (where there is one) and the first "@" before the path.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/?#]*)@")


def public_url(url: str) -> str:
    """``url`` without a user name and password: what every message and report shows of it."""
    return _USERINFO.sub(lambda m: m["scheme"] or "", url, count=1)


def _scrub(message: str, url: str) -> str:
    """``message`` with the credentials of ``url`` taken out, wherever a library put them."""
    found = _USERINFO.match(url)
    if found is None:
        return message
    message = message.replace(url, public_url(url))
    userinfo = found["userinfo"]
    for secret in (userinfo, *userinfo.split(":", 1)[1:]):
        if secret:
            message = message.replace(secret, "***").replace(unquote(secret), "***")
    return message


def check_base(base: str) -> str:
    """``data.url.base`` as given, if it is an http(s) URL with a host; BadUrl naming the key otherwise."""
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018  (parsing the port is what checks it)
    except ValueError as err:
        raise BadUrl(f"data.url.base: {public_url(base)!r} is not an http(s) URL ({err})") from None
    if not parts.scheme:
        why = "no scheme"
    elif parts.scheme not in ("http", "https"):
        why = f"scheme {parts.scheme!r}"
    elif not parts.hostname:
        why = "no host"
    else:
        return base
    raise BadUrl(f"data.url.base: {public_url(base)!r} is not an http(s) URL ({why})")


def size_cap(name: str, md5: str | None) -> int:
    """The most bytes a download of the published file ``name`` may have, checked as it arrives."""
    published = PUBLISHED_SIZE.get(name)
    if published is None:
        return UNPUBLISHED_SIZE_CAP
    if md5 == PUBLISHED_MD5[name]:
        return published  # the published file, byte for byte
    return published + published // 4  # another copy (a rezipped archive, other line ends): about as large


@dataclass
class _Budget:
    """What one file may take, over all its tries: bytes, and the time until a deadline that grows with its size."""

    url: str  # public
    part: Path
    timeout: float
    max_bytes: int | None
    started: float = field(default_factory=time.monotonic)
    limit: float = math.inf  # seconds from ``started``

    def expect(self, total: int | None) -> None:
        """Refuse a file announced larger than the cap; set the deadline from the cap, else the announced size."""
        if total is not None and self.max_bytes is not None and total > self.max_bytes:
            self.part.unlink(missing_ok=True)
            raise TooLarge(
                f"{self.url}: the server announces {total:,} bytes, more than the {self.max_bytes:,} "
                "the file may have; nothing was kept"
            )
        size = self.max_bytes or total or max(PUBLISHED_SIZE.values())
        self.limit = min(self.limit, self.timeout + size / MIN_BYTES_PER_S)

    def check(self, have: int) -> None:
        """Called with the bytes the part holds after every block read."""
        if self.max_bytes is not None and have > self.max_bytes:
            self.part.unlink(missing_ok=True)
            raise TooLarge(
                f"{self.url}: more than {self.max_bytes:,} bytes, the most the file may have; nothing was kept"
            )
        if time.monotonic() - self.started > self.limit:
            raise DeadlineExceeded(
                f"{self.url}: not done within the deadline of {self.limit:.1f} s (the timeout, plus a second for "
                f"each {MIN_BYTES_PER_S >> 10} KiB the file may have); rerun to resume from {have} bytes"
            )


def http_download(
    url: str,
    dest: Path,
    md5: str | None,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
    max_bytes: int | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``.part``; verified before it gets its name.

    The whole file, over every retry, has a deadline (``timeout`` plus a second per
    ``MIN_BYTES_PER_S`` of ``max_bytes``, or of the announced size), since a server that
    trickles bytes never lets one read time out; more than ``max_bytes`` stops the download.
    A checksum mismatch or an HTML page in place of the file removes the partial
    download and raises, so no file that looks complete is ever left behind.
    Credentials in ``url`` reach the server, never a message.
    """
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    budget = _Budget(public_url(url), part, timeout, max_bytes)
    budget.expect(None)
    for attempt in itertools.count(1):
        try:
            _fetch_into(url, part, timeout, progress, budget)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            if attempt > retries:
                raise DownloadFailed(
                    f"{budget.url}: download failed after {retries} retries ({_scrub(str(err), url)}); "
                    f"rerun to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as err:
            raise BadUrl(f"{budget.url}: not a URL this downloader can fetch ({_scrub(str(err), url)})") from None
        except requests.exceptions.TooManyRedirects:
            raise HttpStatusError(f"{budget.url}: too many redirects") from None
    _verify(part, dest, md5, budget.url)
    os.replace(part, dest)
    return dest


def _verify(part: Path, dest: Path, md5: str | None, url: str) -> None:
    if looks_like_html(part) and not dest.name.endswith((".html", ".htm")):
        part.unlink()
        raise WrongFile(
            f"{url}: the server sent an HTML page instead of {dest.name} "
            "(a quota-exceeded or virus-scan page?); nothing was kept"
        )
    if md5 is not None:
        found = md5sum(part)
        if found != md5:
            part.unlink()
            raise WrongFile(
                f"{url}: md5 mismatch for {dest.name}: expected {md5}, got {found}; the partial file was removed"
            )


def _check_range(response: requests.Response, have: int, url: str, part: Path) -> None:
    """A 206 must continue the part where it ends: anything else, appended, would corrupt it."""
    found = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", found.strip())
    if match is None or int(match[1]) != have:
        raise BadContentRange(
            f"{url}: asked for bytes {have}- and got Content-Range {found!r}; "
            f"the partial file is kept as it was (remove {part} to download from the start)"
        )


def _fetch_into(url: str, part: Path, timeout: float, progress: bool, budget: _Budget) -> None:
    have = part.stat().st_size if part.exists() else 0
    budget.check(have)
    # Identity: a Range counts bytes of the file as sent, and a compressed answer would count others.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:  # the part is already whole
            return
        if response.status_code not in (200, 206):
            raise HttpStatusError(f"{budget.url}: HTTP {response.status_code} {response.reason}", response.status_code)
        resume = response.status_code == 206
        if resume:
            _check_range(response, have, budget.url, part)
        else:
            have = 0
        length = response.headers.get("Content-Length", "")
        total = have + int(length) if length.isdigit() else None
        budget.expect(total)
        with (
            open(part, "ab" if resume else "wb") as handle,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress
            ) as bar,
        ):
            _copy_body(response, handle, bar, have, budget)


def _copy_body(response: requests.Response, handle: BinaryIO, bar: tqdm, have: int, budget: _Budget) -> None:
    # read1 returns what one read brings: a trickle of bytes returns to the deadline check at each
    # one, where iter_content would wait for a whole block.
    while True:
        try:
            block = response.raw.read1(1 << 16, decode_content=True)
        except urllib3.exceptions.HTTPError as err:  # what requests' iter_content would call a ConnectionError
            raise requests.ConnectionError(err) from None
        if not block:
            return
        handle.write(block)
        have += len(block)
        bar.update(len(block))
        budget.check(have)


# ---------------------------------------------------------------- turning downloads into the layout


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def link_archive(zip_path: Path, out: Path) -> None:
    """Put the published image zip into the layout, as a hard link where the disk allows.

    Opening it checks every image's directory entry (archive.MemberTooLarge, archive.DuplicateName).
    """
    if not len(archive.ImageArchive(zip_path)):
        raise SourceError(f"{zip_path}: holds no .jpg images")
    _link_or_copy(zip_path, out / celeba.ZIP_FILE)


_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "not a regular file (a named pipe)",
    stat.S_IFSOCK: "not a regular file (a socket)",
    stat.S_IFCHR: "not a regular file (a device)",
    stat.S_IFBLK: "not a regular file (a device)",
    stat.S_IFDIR: "not a regular file (a folder)",
}


def regular_file(path: Path, st: os.stat_result | None = None) -> os.stat_result:
    """``path``'s own status, if it is a plain file; NotARegularFile otherwise.

    A link would pack whatever it points to into data/raw, which DVC caches and pushes,
    and a pipe or a device (/dev/zero) is read forever.
    """
    st = st or os.lstat(path)
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        raise NotARegularFile(
            f"{path}: {_KINDS.get(kind, 'not a regular file')}; a CelebA folder must hold the files themselves"
        )
    return st


def pack_images(src_dir: Path, out: Path, progress: bool) -> None:
    """Pack a folder of JPEGs into the layout's zip (a Kaggle or unpacked copy of CelebA)."""
    if not src_dir.is_dir():
        raise SourceError(f"{src_dir}: no such folder of images")
    with os.scandir(src_dir) as entries:
        found = sorted((e for e in entries if e.name.endswith(".jpg")), key=lambda e: e.name)
    if not found:
        raise SourceError(f"{src_dir}: holds no .jpg images")
    for entry in found:
        size = regular_file(Path(entry.path), entry.stat(follow_symlinks=False)).st_size
        if size > archive.MAX_MEMBER_BYTES:
            raise TooLarge(f"{entry.path}: {size} bytes, over the {archive.MAX_MEMBER_BYTES:,}-byte cap for one image")
    bar = tqdm(found, desc="pack images", unit="img", disable=not progress)
    archive.pack(((e.name, Path(e.path).read_bytes()) for e in bar), out / celeba.ZIP_FILE)


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
        except HttpStatusError as err:
            if name in OPTIONAL_DOWNLOADS and err.status == 404:
                continue
            raise
    return files


def from_url(params: DataParams, out: Path, downloads: Path, workers: int, progress: bool) -> Origins:
    base = check_base(params.url.base).rstrip("/")
    fetch = lambda name, dest, md5: http_download(  # noqa: E731
        f"{base}/{name}", dest, md5, params.url.timeout_s, params.url.retries, progress, size_cap(name, md5)
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
    if _present(root / "list_attr_celeba.csv"):
        return _from_kaggle(root, kaggle_images if kaggle_images.is_dir() else root / celeba.IMAGE_DIR, out, progress)
    missing = [name for name in (celeba.ATTR_FILE, celeba.PARTITION_FILE) if not _present(root / name)]
    if missing:
        raise SourceError(
            f"{root}: not a CelebA folder: missing {', '.join(missing)} "
            "(and no list_attr_celeba.csv of the Kaggle layout)"
        )
    origins = {}
    for name in celeba.TEXT_FILES:
        if _present(root / name):
            shutil.copyfile(root / name, out / name)
            origins[name] = Origin(root / name)
    if _present(root / celeba.ZIP_FILE):
        link_archive(root / celeba.ZIP_FILE, out)
        origins[celeba.ZIP_FILE] = Origin(root / celeba.ZIP_FILE)
    elif (root / celeba.IMAGE_DIR).is_dir():
        pack_images(root / celeba.IMAGE_DIR, out, progress)
        origins[celeba.ZIP_FILE] = Origin(root / celeba.IMAGE_DIR)
    else:
        raise SourceError(f"{root}: neither {celeba.IMAGE_DIR}/ nor {celeba.ZIP_FILE} is there")
    return origins


def _present(path: Path) -> bool:
    """Whether a file of a local folder is there; NotARegularFile if it is there as anything but a plain file."""
    if not os.path.lexists(path):
        return False
    regular_file(path)
    return True


def _from_kaggle(root: Path, images: Path, out: Path, progress: bool) -> Origins:
    """The Kaggle layout: nested image folder and CSV labels; it has no identity file."""
    attrs = celeba.read_kaggle_csv(root / "list_attr_celeba.csv", ATTRIBUTES)
    bad = ~attrs.isin([-1, 1]).all(axis=1)
    if bad.any():
        first = attrs.index.get_loc(attrs.index[bad][0]) + 2
        raise FormatError(root / "list_attr_celeba.csv", first, "values must be -1 or 1")
    (out / celeba.ATTR_FILE).write_bytes(celeba.format_attributes(((attrs + 1) // 2).astype("int8")))
    if not _present(root / "list_eval_partition.csv"):
        raise SourceError(f"{root}: a Kaggle layout (list_attr_celeba.csv) with no list_eval_partition.csv")
    partition = celeba.read_kaggle_csv(root / "list_eval_partition.csv", ("partition",))["partition"]
    (out / celeba.PARTITION_FILE).write_bytes(celeba.format_pairs(partition))
    if _present(root / "list_bbox_celeba.csv"):
        bbox = celeba.read_kaggle_csv(root / "list_bbox_celeba.csv", celeba.BBOX_HEADER[1:])
        (out / celeba.BBOX_FILE).write_bytes(celeba.format_table(bbox, celeba.BBOX_HEADER))
    if _present(root / "list_landmarks_align_celeba.csv"):
        marks = celeba.read_kaggle_csv(root / "list_landmarks_align_celeba.csv", celeba.LANDMARK_HEADER)
        (out / celeba.LANDMARKS_FILE).write_bytes(celeba.format_table(marks, celeba.LANDMARK_HEADER))
    if _present(root / celeba.IDENTITY_FILE):
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
    present = set(images.names())
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
        err.args = (_with_origins(str(err), out, origins),)
        raise err from None


def _with_origins(message: str, out: Path, origins: Origins) -> str:
    """``message`` with every path into ``out`` replaced by the file it came from."""
    for name, origin in origins.items():
        message = message.replace(str(out / name), str(origin.path))
    return message


def public_params(params: DataParams) -> dict:
    """The ``data`` params as a report records them: a URL's credentials left out (reports are tracked by git)."""
    dumped = params.model_dump(mode="json")
    if dumped["url"]["base"]:
        dumped["url"]["base"] = public_url(dumped["url"]["base"])
    return dumped
