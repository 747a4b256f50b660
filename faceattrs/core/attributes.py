"""The CelebA names every part shares: the 40 attributes in their published order, their rates, the image size.

Read from the published attribute table (package data), so the schema, the readers
and the generator all take the names from one place.
"""

from __future__ import annotations

import io
from importlib import resources

import pandas as pd

# The aligned release's images: 178 wide, 218 high.
IMAGE_WIDTH, IMAGE_HEIGHT = 178, 218
# How messages name that size.
ALIGNED_SIZE = f"{IMAGE_WIDTH}x{IMAGE_HEIGHT}"


def _load_attribute_table() -> pd.DataFrame:
    text = resources.files("faceattrs.resources").joinpath("attribute_counts.tsv").read_text()
    return pd.read_csv(io.StringIO(text), sep="\t")


ATTRIBUTE_TABLE = _load_attribute_table()
ATTRIBUTES: tuple[str, ...] = tuple(ATTRIBUTE_TABLE["attribute"])
# Positive rate of each attribute over all 202,599 published images.
POSITIVE_RATES: dict[str, float] = {
    row.attribute: row.positives / (row.positives + row.negatives) for row in ATTRIBUTE_TABLE.itertuples()
}
