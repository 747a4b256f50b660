"""The ground truth a synthetic CelebA is written with: the sidecar file, and the labels before noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.data.celeba import ATTRIBUTES

TRUTH_FILE = "synthetic_truth.json"
# The change of a look-alike (the truth's "lookalikes" lists source, image, change) that is the source's own face
# before a background of another hue.
BACKGROUND_HUE = "background_hue"


def read_truth(folder: Path | str) -> dict:
    """The ground truth a synthetic folder was written with."""
    return json.loads((Path(folder) / TRUTH_FILE).read_text())


def clean_labels(truth: dict) -> pd.DataFrame:
    """The labels before noise, as a 0/1 frame indexed by file name."""
    names = list(truth["clean_labels"])
    values = np.array([[int(c) for c in s] for s in truth["clean_labels"].values()], dtype=np.int8)
    return pd.DataFrame(values, index=pd.Index(names, name="image_id"), columns=list(ATTRIBUTES))


def truth_if_synthetic(folder: Path | str) -> dict | None:
    """The ground truth of a raw folder the synthetic generator wrote; None for any other CelebA."""
    return read_truth(folder) if (Path(folder) / TRUTH_FILE).exists() else None
