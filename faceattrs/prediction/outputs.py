"""Predictions for new images (files, folders or shard sets) and the files they are written to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.core import atomic
from faceattrs.core.errors import InputError
from faceattrs.data import celeba
from faceattrs.evaluation.evaluate import split_logits
from faceattrs.prediction.predictor import Predictor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
    images = []
    for path in paths:
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            images.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return images


def is_shard_set(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))


def predict_paths(predictor: Predictor, paths: list[Path], split: str = "test") -> tuple[pd.Index, np.ndarray]:
    """Logits for image files, folders of images, or a shard folder (its ``split`` shards)."""
    names, logits = [], []
    photos = []
    for path in paths:
        if is_shard_set(path):
            folder = path if path.is_dir() else path.parent
            z, _, frame = split_logits(predictor, folder, split, paths=None if path.is_dir() else [path])
            names += list(frame.index)
            logits.append(z)
        else:
            photos += collect_images([path])
    if photos:
        names += [p.name for p in photos]
        logits.append(predictor.logits_for_photos(photos))
    if not names:
        raise InputError(f"no images found in {', '.join(map(str, paths))}")
    return pd.Index(names, name="image_id"), np.concatenate(logits)


def predictions_frame(
    index: pd.Index, logits: np.ndarray, names: tuple[str, ...], thresholds: np.ndarray
) -> pd.DataFrame:
    """0/1 predictions and probabilities (``p_<name>``) per image."""
    pred = pd.DataFrame((logits > thresholds).astype(np.int8), index=index, columns=list(names))
    probs = pd.DataFrame(1 / (1 + np.exp(-logits)), index=index, columns=[f"p_{n}" for n in names]).round(5)
    return pd.concat([pred, probs], axis=1)


def write_predictions(
    frame: pd.DataFrame, names: tuple[str, ...], out_dir: Path, stem: str = "predictions"
) -> dict[str, Path]:
    """The CelebA attribute-file format (``name`` then +-1 values) and CSV, both written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"celeba": out_dir / f"{stem}_attr.txt", "csv": out_dir / f"{stem}.csv"}
    atomic.write_bytes(paths["celeba"], celeba.format_attributes(frame, names))
    atomic.write_text(paths["csv"], frame.to_csv())
    return paths


def table_for_one(frame: pd.DataFrame, names: tuple[str, ...]) -> str:
    """A readable table of one image's predictions, most confident first."""
    row = frame.iloc[0]
    lines = [f"{frame.index[0]}", f"{'attribute':<22} {'prob':>6}  predicted"]
    for name in sorted(names, key=lambda n: -abs(row[f"p_{n}"] - 0.5)):
        lines.append(f"{name:<22} {row[f'p_{name}']:>6.3f}  {'yes' if row[name] else 'no'}")
    return "\n".join(lines)
