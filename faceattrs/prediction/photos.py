"""Photos to faces the model can score: aligned images as they are, any other photo through detection and alignment."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from faceattrs.core.attributes import ALIGNED_SIZE
from faceattrs.core.errors import InputError
from faceattrs.faces import align

# The columns each scored face adds to the predictions: where it was found, and how.
FACE_COLUMNS = ["photo", "face", "box_left", "box_top", "box_width", "box_height", "face_score", "eyes"]


@dataclass(frozen=True)
class PhotoFace:
    """One face to score: from an aligned image (``face`` 0, no box) or found in a photo (``face`` 1, 2, ...)."""

    name: str
    photo: Path
    face: int
    box: tuple[int, int, int, int] | None  # left, top, width, height in the file's own (upright) pixels
    score: float | None
    eyes: np.ndarray | None
    eyes_from: str  # "aligned" | "haar" | "box"
    aligned: np.ndarray  # (218, 178, 3) uint8
    # What the model scores: an aligned file's own bytes, decoded as preprocess decoded the
    # training images (at reduced scale where it did), or the pixels of a face aligned here,
    # or of an aligned file stored turned (its bytes would decode sideways or upside down).
    source: bytes | np.ndarray


@dataclass
class Found:
    faces: list[PhotoFace]
    aligned: list[Path]  # photos taken as CelebA-aligned, detection skipped
    no_face: list[Path]


def _bytes_of(path) -> bytes:
    return path.getvalue() if isinstance(path, io.BytesIO) else Path(path).read_bytes()


def find(paths: list, mean_eyes: np.ndarray | None, min_score: float = 0.0, names: list[str] | None = None) -> Found:
    """Every face of ``paths`` (files, or named in-memory files); a 178x218 image is taken as aligned, scored whole.

    Rows are named by ``names`` (default: each file's name), with ``#k`` for the k-th of several faces.
    """
    found = Found([], [], [])
    for i, path in enumerate(paths):
        label = names[i] if names else Path(path.name).name
        img = align.open_photo(path)
        if align.is_aligned(img):
            found.aligned.append(path)
            pixels = np.asarray(img)
            # A file stored turned, upright by its EXIF orientation, is scored upright: its bytes decode as stored.
            source = _bytes_of(path) if img.info["orientation"] == 1 else pixels
            found.faces.append(PhotoFace(label, path, 0, None, None, None, "aligned", pixels, source))
            continue
        if mean_eyes is None:
            raise InputError(
                f"{path}: {img.width}x{img.height}, not a {ALIGNED_SIZE} aligned face, and the model file has no mean "
                "eye positions to align it to (its shards were made without list_landmarks_align_celeba.txt)"
            )
        faces = align.faces_in(img, mean_eyes, min_score)
        if not faces:
            found.no_face.append(path)
        scale = img.info.get("scale", 1.0)
        for k, face in enumerate(faces, start=1):
            b = face.box
            pixels = np.asarray(face.aligned)
            found.faces.append(
                PhotoFace(
                    label if len(faces) == 1 else f"{label}#{k}",
                    path,
                    k,
                    tuple(round(v * scale) for v in (b.left, b.top, b.width, b.height)),
                    round(b.score, 3),
                    face.eyes * scale,
                    face.eyes_from,
                    pixels,
                    pixels,
                )
            )
    return found


def row_names(paths: list[Path]) -> list[str]:
    """A row name per photo: its file name, or the path as given where two photos share a name."""
    counts = Counter(p.name for p in paths)
    return [p.name if counts[p.name] == 1 else str(p) for p in paths]


def face_table(faces: list[PhotoFace]) -> pd.DataFrame:
    """Where each face came from, indexed like the predictions."""
    rows = [[str(f.photo), f.face, *(f.box or (None,) * 4), f.score, f.eyes_from] for f in faces]
    frame = pd.DataFrame(rows, columns=FACE_COLUMNS, index=pd.Index([f.name for f in faces], name="image_id"))
    return frame.astype(dict.fromkeys(FACE_COLUMNS[2:6], "Int64"))


def strongest(row: pd.Series, names: tuple[str, ...], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` predicted attributes of one face with the highest probability."""
    on = [(n, float(row[f"p_{n}"])) for n in names if row[n]]
    return sorted(on, key=lambda t: -t[1])[:k]


def annotate(photo: Path, rows: pd.DataFrame, names: tuple[str, ...]) -> Image.Image:
    """The photo with each face's box, eyes and strongest attributes drawn on it."""
    img = align.open_photo(photo)
    shrink = 1 / img.info.get("scale", 1.0)  # boxes are in the file's pixels, the picture may be smaller
    draw = ImageDraw.Draw(img)
    scale = max(img.size) / 800  # lines and text readable whether the photo is small or large
    font = ImageFont.load_default(size=max(11, round(14 * scale)))
    width = max(2, round(2 * scale))
    for _, row in rows.iterrows():
        if pd.isna(row["box_left"]):
            continue
        left, top, w, h = (round(int(row[c]) * shrink) for c in ("box_left", "box_top", "box_width", "box_height"))
        draw.rectangle([left, top, left + w, top + h], outline=(255, 210, 0), width=width)
        lines = [f"face {row['face']}"] + [f"{n} {p:.2f}" for n, p in strongest(row, names)]
        text = "\n".join(lines)
        box = draw.multiline_textbbox((left, top + h + width), text, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.multiline_text((left, top + h + width), text, fill=(255, 255, 255), font=font)
    return img
