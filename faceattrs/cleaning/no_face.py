"""The cleaning's check for pictures with no face in them, by the face detector prediction uses too."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import simplejpeg
from PIL import Image

from faceattrs.core.parallel import imap
from faceattrs.data.archive import ImageArchive
from faceattrs.faces.detect import face_score


def _decode(data: bytes) -> np.ndarray:
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:  # a JPEG that libjpeg-turbo refuses but PIL reads
        import io

        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


def _score_member(name: str, images: ImageArchive) -> float:
    return face_score(_decode(images.read(name)))


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
