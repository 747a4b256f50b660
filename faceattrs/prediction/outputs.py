"""Predictions for new images (files, folders or shard sets) and the files they are written to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from faceattrs.core import atomic
from faceattrs.core.attributes import ALIGNED_SIZE
from faceattrs.core.errors import InputError
from faceattrs.data import celeba
from faceattrs.prediction import photos
from faceattrs.prediction.predictor import Predictor, split_logits

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PHOTOS_AT_ONCE = 256


def load_thresholds(path: Path | None, names: tuple[str, ...]) -> np.ndarray:
    """Thresholds tuned by evaluate, in target order; 0 (probability 0.5) without a file."""
    if path is None or not Path(path).exists():
        return np.zeros(len(names))
    tuned = json.loads(Path(path).read_text())
    missing = [n for n in names if n not in tuned]
    if missing:
        raise InputError(f"{path}: no threshold for {missing}; was it written for another model?")
    return np.array([tuned[n] for n in names])


def collect_images(paths: list[Path]) -> list[Path]:
    """The image files of ``paths`` (files, and folders' images), each file once."""
    images = []
    for path in paths:
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            images.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    seen = set()
    return [p for p in images if not (p.resolve() in seen or seen.add(p.resolve()))]


def is_shard_set(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))


def predict_paths(
    predictor: Predictor, paths: list[Path], split: str = "test", min_face_score: float = 0.0
) -> tuple[pd.Index, np.ndarray, pd.DataFrame | None]:
    """Logits for image files, folders of images, or a shard folder (its ``split`` shards).

    Photos go through ``photos.find``: one row per face, and a table of where each
    face is (None when there were no photos). Photos with no face are named on stderr;
    if no face is found at all, nothing is scored and InputError says so.
    """
    names, logits = [], []
    files = []
    for path in paths:
        if is_shard_set(path):
            folder = path if path.is_dir() else path.parent
            z, _, frame = split_logits(predictor, folder, split, paths=None if path.is_dir() else [path])
            names += list(frame.index)
            logits.append(z)
        else:
            files.append(path)
    files = collect_images(files)
    table = None
    if files:
        aligned, no_face, tables = 0, [], []
        # A few hundred photos at a time: only their aligned faces are held, never a whole folder's.
        labels = photos.row_names(files)
        for start in range(0, len(files), PHOTOS_AT_ONCE):
            chunk = slice(start, start + PHOTOS_AT_ONCE)
            found = photos.find(files[chunk], predictor.mean_eyes, min_face_score, labels[chunk])
            aligned += len(found.aligned)
            no_face += found.no_face
            if found.faces:
                names += [f.name for f in found.faces]
                logits.append(predictor.logits_for(f.source for f in found.faces))
                tables.append(photos.face_table(found.faces))
        if aligned:
            print(f"{aligned} of {len(files)} images are {ALIGNED_SIZE} CelebA-aligned: scored whole, no detection")
        if no_face:
            where = ", ".join(str(p) for p in no_face[:10]) + (" ..." if len(no_face) > 10 else "")
            message = f"no face found in {len(no_face)} of {len(files)} photos: {where}"
            if not tables:
                raise InputError(
                    f"{message}; nothing written (the detector finds frontal faces from about 30 pixels wide, "
                    "not profiles or smaller faces; --min-face-score lowers its bar)"
                )
            print(message, file=sys.stderr)
        table = pd.concat(tables) if tables else None
    if not names:
        raise InputError(f"no images found in {', '.join(map(str, paths))}")
    return pd.Index(names, name="image_id"), np.concatenate(logits), table


def predictions_frame(
    index: pd.Index,
    logits: np.ndarray,
    names: tuple[str, ...],
    thresholds: np.ndarray,
    faces: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """0/1 predictions and probabilities (``p_<name>``) per image, then where each face is (``faces``)."""
    pred = pd.DataFrame((logits > thresholds).astype(np.int8), index=index, columns=list(names))
    probs = pd.DataFrame(expit(logits), index=index, columns=[f"p_{n}" for n in names]).round(5)
    frame = pd.concat([pred, probs], axis=1)
    if faces is not None:
        if not index.is_unique:  # a shard row and a photo of one name: joining would pair each with both
            raise InputError(f"two inputs are named {index[index.duplicated()][0]!r}; predict them separately")
        frame = frame.join(faces)
    return frame


def write_annotated(frame: pd.DataFrame, names: tuple[str, ...], out_dir: Path) -> list[Path]:
    """One picture per photo with found faces: boxes and strongest attributes (``out_dir/annotated``)."""
    if "box_left" not in frame:
        return []
    written = []
    boxed = frame[frame["box_left"].notna()]
    shown = list(boxed["photo"].unique())
    stems = [Path(p).stem for p in shown]
    # One picture per photo, by its file's stem, or by its path where two photos share a stem.
    files = dict(
        zip(shown, stems if len(set(stems)) == len(stems) else [p.replace("/", "_") for p in shown], strict=True)
    )
    for photo, rows in boxed.groupby("photo", sort=False):
        target = out_dir / "annotated" / f"{files[photo]}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = photos.annotate(Path(photo), rows, names)
        with atomic.atomic_file(target) as tmp:
            picture.save(tmp, format="PNG")
        written.append(target)
    return written


def write_predictions(
    frame: pd.DataFrame, names: tuple[str, ...], out_dir: Path, stem: str = "predictions"
) -> dict[str, Path]:
    """The CelebA attribute-file format (``name`` then +-1 values) and CSV, both written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"celeba": out_dir / f"{stem}_attr.txt", "csv": out_dir / f"{stem}.csv"}
    atomic.write_bytes(paths["celeba"], celeba.format_attributes(frame, names))
    atomic.write_text(paths["csv"], frame.to_csv())
    return paths


def tables(frame: pd.DataFrame, names: tuple[str, ...]) -> str:
    """A readable table per face (or image), most confident attributes first, headed by where the face is."""
    out = []
    for image_id, row in frame.iterrows():
        head = f"{image_id}"
        if "box_left" in frame and not pd.isna(row["box_left"]):
            head += (
                f"  face {row['face']}: box {row['box_left']},{row['box_top']} {row['box_width']}x{row['box_height']},"
                f" detector score {row['face_score']:.2f}, eyes by {row['eyes']}"
            )
        elif "eyes" in frame:
            head += f"  ({ALIGNED_SIZE}: taken as CelebA-aligned, no detection)"
        lines = [head, f"{'attribute':<22} {'prob':>6}  predicted"]
        for name in sorted(names, key=lambda n: -abs(row[f"p_{n}"] - 0.5)):
            lines.append(f"{name:<22} {row[f'p_{name}']:>6.3f}  {'yes' if row[name] else 'no'}")
        out.append("\n".join(lines))
    return "\n\n".join(out)
