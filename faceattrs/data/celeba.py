"""CelebA's published file formats: the names, checksums, readers and byte-exact writers.

Every reader parses by whitespace (the published files align values with runs of
spaces and end lines with CRLF) and reports a malformed line as ``file:line``.
Labels leave this module as int8 0/1, the form every later stage uses.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The format's names, re-exported: its readers and writers are read beside them.
from faceattrs.core.attributes import ATTRIBUTES, IMAGE_HEIGHT, IMAGE_WIDTH, POSITIVE_RATES  # noqa: F401
from faceattrs.core.errors import InputError

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
BBOX_FILE = "list_bbox_celeba.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
ZIP_FILE = "img_align_celeba.zip"
BBOX_HEADER = ("image_id", "x_1", "y_1", "width", "height")
LANDMARK_HEADER = (
    "lefteye_x",
    "lefteye_y",
    "righteye_x",
    "righteye_y",
    "nose_x",
    "nose_y",
    "leftmouth_x",
    "leftmouth_y",
    "rightmouth_x",
    "rightmouth_y",
)
PARTITION_NAMES = {0: "train", 1: "val", 2: "test"}


@dataclass(frozen=True)
class PublishedFile:
    name: str
    md5: str
    gdrive_id: str
    size: int | None  # bytes, where FORMAT.md gives them


# md5 and Google Drive ids of the aligned release, as torchvision lists them; sizes as FORMAT.md gives them.
PUBLISHED_FILES = (
    PublishedFile(ZIP_FILE, "00d2c5bc6d35e252742224ab0c1e8fcb", "0B7EVK8r0v71pZjFTYXZWM3FlRnM", 1_443_490_838),
    PublishedFile(ATTR_FILE, "75e246fa4810816ffd6ee81facbd244c", "0B7EVK8r0v71pblRyaVFSWGxPY0U", 26_721_026),
    PublishedFile(IDENTITY_FILE, "32bd1bd63d3c78cd57e08160ec5ed1e2", "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", 3_424_458),
    PublishedFile(BBOX_FILE, "00566efa6fedff7a56946cd1c10f1c16", "0B7EVK8r0v71pbThiMVRxWXZ4dU0", None),
    PublishedFile(LANDMARKS_FILE, "cc24ecafdb5b50baae59b03474781f8c", "0B7EVK8r0v71pd0FJY3Blby1HUTQ", None),
    PublishedFile(PARTITION_FILE, "d32c9cbf5e040fd4025c592c306e6668", "0B7EVK8r0v71pY0NSMzRuSXJEVkk", 2_836_386),
)
TEXT_FILES = (ATTR_FILE, PARTITION_FILE, IDENTITY_FILE, BBOX_FILE, LANDMARKS_FILE)


class FormatError(InputError):
    """A CelebA file that does not follow the published format; the message names file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = Path(path), line, message


def image_name(index: int) -> str:
    """The published file name of the 1-based image ``index`` (``000001.jpg``)."""
    return f"{index:06d}.jpg"


# Byte-order marks an editor may put first; CelebA's files are plain ASCII and have none.
_BOMS = {b"\xef\xbb\xbf": "UTF-8", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
_INT32 = (-(2**31), 2**31 - 1)


def _read(path: Path) -> bytes:
    """A text file's bytes, refusing a byte-order mark, which would make line 1 look right and compare wrong."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(path, None, "file not found") from None
    except OSError as err:
        raise FormatError(path, None, f"cannot read it ({err.strerror or err})") from None
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise FormatError(
                path, 1, f"starts with a {encoding} byte-order mark (BOM); save it as plain ASCII, without one"
            )
    return raw


def _integer(text: str, low: int = _INT32[0], high: int = _INT32[1]) -> int | None:
    """``text`` as an integer if it is one in plain ASCII digits within [low, high], else None."""
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        return None
    value = int(text)
    return value if low <= value <= high else None


def _check_name(path: Path, line: int, name: str) -> None:
    """A file name as the published files have them: ASCII, with no whitespace or control characters."""
    if not name.isascii():
        raise FormatError(path, line, f"file name {name!r} is not ASCII, as CelebA's text files must be")
    if any(c.isspace() for c in name):
        raise FormatError(path, line, f"file name {name!r} has a space or other whitespace, which separates fields")
    if not name.isprintable():
        raise FormatError(path, line, f"file name {name!r} has a control character")


def _lines(path: Path) -> list[str]:
    raw = _read(path)
    if raw.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise FormatError(path, 1, "is an HTML page, not a CelebA text file (a failed download?)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise FormatError(path, line, "non-ASCII bytes in a CelebA text file") from None
    return text.splitlines()


def _count_line(path: Path, lines: list[str]) -> int:
    if not lines or not lines[0].strip().isdigit():
        raise FormatError(
            path, 1, f"expected the image count on line 1, found {lines[0][:40]!r}" if lines else "file is empty"
        )
    return int(lines[0])


def _check_count(path: Path, declared: int, found: int) -> None:
    if declared != found:
        raise FormatError(path, 1, f"line 1 declares {declared} images but the file has {found} rows")


_SIGNS = frozenset(("-1", "1"))


def read_attributes(path: Path | str) -> pd.DataFrame:
    """``list_attr_celeba.txt`` as a frame indexed by file name, one int8 0/1 column per attribute."""
    path = Path(path)
    lines = _lines(path)
    declared = _count_line(path, lines)
    if len(lines) < 2:
        raise FormatError(path, 2, "missing the attribute-name header")
    names = lines[1].split()
    if tuple(names) != ATTRIBUTES:
        unknown = sorted(set(names) ^ set(ATTRIBUTES))
        detail = f"differs in {unknown}" if unknown else "has the attributes in a different order"
        raise FormatError(path, 2, f"header {detail}; expected the 40 official names in order")
    rows = list(lines[2:])
    files: list[str] = []
    values = np.empty((len(rows), len(ATTRIBUTES)), dtype=np.int8)
    for i, line in enumerate(rows):
        fields = line.split()
        lineno = i + 3
        if not fields:
            raise FormatError(path, lineno, "empty line")
        if len(fields) != len(ATTRIBUTES) + 1:
            raise FormatError(path, lineno, f"expected 41 fields (file name and 40 values), found {len(fields)}")
        if not _SIGNS.issuperset(fields[1:]):
            raise FormatError(path, lineno, "values must be -1 or 1")
        _check_name(path, lineno, fields[0])
        files.append(fields[0])
        values[i] = [v == "1" for v in fields[1:]]
    _check_count(path, declared, len(files))
    _check_unique(path, files, first_row_line=3)
    return pd.DataFrame(values, index=pd.Index(files, name="image_id"), columns=list(ATTRIBUTES))


def _check_unique(path: Path, files: list[str], first_row_line: int) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(files):
        if name in seen:
            raise FormatError(path, i + first_row_line, f"{name} is listed twice (first on line {seen[name]})")
        seen[name] = i + first_row_line


def _read_pairs(path: Path | str, what: str, valid: set[int] | None = None) -> pd.Series:
    path = Path(path)
    files, values = [], []
    for lineno, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            raise FormatError(path, lineno, "empty line")
        if len(fields) != 2:
            raise FormatError(path, lineno, f"expected 2 fields (file name and {what}), found {len(fields)}")
        value = _integer(fields[1])
        if value is None:
            raise FormatError(path, lineno, f"{what} must be an integer of at most 32 bits, found {fields[1][:40]!r}")
        if valid is not None and value not in valid:
            raise FormatError(path, lineno, f"{what} must be one of {sorted(valid)}, found {value}")
        _check_name(path, lineno, fields[0])
        files.append(fields[0])
        values.append(value)
    _check_unique(path, files, first_row_line=1)
    return pd.Series(values, index=pd.Index(files, name="image_id"), name=what, dtype=np.int32)


def read_partition(path: Path | str) -> pd.Series:
    """``list_eval_partition.txt``: 0 train, 1 val, 2 test, by file name."""
    return _read_pairs(path, "partition", valid={0, 1, 2}).astype(np.int8)


def read_identity(path: Path | str) -> pd.Series:
    """``identity_CelebA.txt``: the identity id of each file."""
    return _read_pairs(path, "identity")


def _read_table(path: Path | str, header: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    lines = _lines(path)
    declared = _count_line(path, lines)
    found_header = tuple(lines[1].split()) if len(lines) > 1 else ()
    # The bbox file names its first column; the landmarks file does not.
    if found_header not in (header, header[1:]) and ("image_id", *found_header) != header:
        raise FormatError(path, 2, f"expected header {' '.join(header)!r}, found {' '.join(found_header)!r}")
    columns = [c for c in header if c != "image_id"]
    files, values = [], []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(columns) + 1:
            raise FormatError(path, lineno, f"expected {len(columns) + 1} fields, found {len(fields)}")
        row = [_integer(v) for v in fields[1:]]
        if None in row:
            raise FormatError(path, lineno, "values must be integers of at most 32 bits")
        _check_name(path, lineno, fields[0])
        values.append(row)
        files.append(fields[0])
    _check_count(path, declared, len(files))
    _check_unique(path, files, first_row_line=3)
    return pd.DataFrame(
        np.array(values, dtype=np.int32).reshape(-1, len(columns)),
        index=pd.Index(files, name="image_id"),
        columns=columns,
    )


def read_bbox(path: Path | str) -> pd.DataFrame:
    """``list_bbox_celeba.txt``: x_1, y_1, width, height per file (in-the-wild coordinates)."""
    return _read_table(path, BBOX_HEADER)


def read_landmarks(path: Path | str) -> pd.DataFrame:
    """``list_landmarks_align_celeba.txt``: five (x, y) points per file, aligned coordinates."""
    return _read_table(path, ("image_id", *LANDMARK_HEADER))


def mean_eyes(landmarks: pd.DataFrame) -> np.ndarray:
    """Mean (x, y) of the left and right eye over rows of ``list_landmarks_align_celeba.txt``.

    Rows with a point at zero or outside the aligned image (missing or broken
    annotations) are left out; an empty result raises InputError.
    """
    values = landmarks[["lefteye_x", "lefteye_y", "righteye_x", "righteye_y"]].to_numpy(float)
    width, height = IMAGE_WIDTH, IMAGE_HEIGHT
    inside = (values > 0).all(axis=1) & (values[:, 0::2] < width).all(axis=1) & (values[:, 1::2] < height).all(axis=1)
    ordered = inside & (values[:, 0] < values[:, 2])
    if not ordered.any():
        raise InputError("no usable eye landmarks (every row is zero, outside the image or has the eyes swapped)")
    return values[ordered].mean(axis=0).reshape(2, 2)


# ---------------------------------------------------------------- writers
# Byte-exact with the published files: CRLF endings, the layouts FORMAT.md gives.


def format_attributes(labels: pd.DataFrame, names: tuple[str, ...] = ATTRIBUTES) -> bytes:
    """``list_attr_celeba.txt`` bytes for a 0/1 frame indexed by file name.

    Other ``names`` write predictions of other targets in the same layout.
    """
    signed = labels[list(names)].to_numpy(dtype=np.int8) * 2 - 1
    out = [f"{len(labels)}\r\n", " ".join(names) + " \r\n"]
    cells = np.where(signed > 0, " 1", "-1")
    out.extend(f"{name} {' '.join(row)}\r\n" for name, row in zip(labels.index, cells, strict=True))
    return "".join(out).encode("ascii")


def format_pairs(values: pd.Series) -> bytes:
    """``list_eval_partition.txt`` or ``identity_CelebA.txt`` bytes."""
    return "".join(f"{name} {int(v)}\r\n" for name, v in values.items()).encode("ascii")


def format_table(table: pd.DataFrame, header: tuple[str, ...]) -> bytes:
    """``list_bbox_celeba.txt`` (header names image_id) or landmarks bytes (header does not)."""
    out = [f"{len(table)}\r\n", " ".join(header) + " \r\n"]
    width = max(len(name) for name in table.index) if len(table) else 10
    for name, row in zip(table.index, table.to_numpy(), strict=True):
        out.append(f"{name:<{width}} " + " ".join(f"{int(v):4d}" for v in row) + "\r\n")
    return "".join(out).encode("ascii")


# ---------------------------------------------------------------- Kaggle CSV layout


def read_kaggle_csv(path: Path | str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A Kaggle CSV (``image_id`` then ``columns``), checked row by row, indexed by file name."""
    path = Path(path)
    raw = _read(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise FormatError(path, line, f"not UTF-8 (byte {raw[err.start]:#04x})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        expected = ["image_id", *columns]
        if header != expected:
            raise FormatError(
                path, 1, f"expected header {','.join(expected)[:80]}..., found {','.join(header or [])[:80]}"
            )
        files, values = [], []
        for row in reader:
            lineno = reader.line_num
            if len(row) != len(expected):
                raise FormatError(path, lineno, f"expected {len(expected)} columns, found {len(row)}")
            numbers = [_integer(v) for v in row[1:]]
            if None in numbers:
                raise FormatError(path, lineno, "values must be integers of at most 32 bits")
            _check_name(path, lineno, row[0])
            values.append(numbers)
            files.append(row[0])
    except csv.Error as err:
        raise FormatError(path, reader.line_num, f"not a readable CSV ({err})") from None
    _check_unique(path, files, first_row_line=2)
    return pd.DataFrame(
        np.array(values, dtype=np.int32).reshape(-1, len(columns)),
        index=pd.Index(files, name="image_id"),
        columns=list(columns),
    )
