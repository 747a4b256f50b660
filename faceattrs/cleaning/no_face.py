"""The cleaning's check for pictures with no face in them, by the shared face detector (faceattrs.faces.detect)."""

from __future__ import annotations

from functools import partial

import pandas as pd

from faceattrs.cleaning.confirm import decode_rgb
from faceattrs.core.parallel import imap
from faceattrs.data.archive import ImageArchive
from faceattrs.faces.detect import face_score


def _score_member(name: str, images: ImageArchive) -> float:
    return face_score(decode_rgb(images.read(name)))


def face_scores(images: ImageArchive, names: list[str], workers: int = 0, progress: bool = True) -> pd.Series:
    """The best face score of each readable image, indexed by name."""
    scores = imap(
        partial(_score_member, images=images),
        names,
        total=len(names),
        workers=workers,
        desc="look for faces",
        progress=progress,
        chunksize=32,
    )
    return pd.Series(list(scores), index=pd.Index(names, name="image_id"), name="face_score", dtype=float)
