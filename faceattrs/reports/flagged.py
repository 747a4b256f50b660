"""The contact sheet of flagged labels, which the evaluate and labels stages' reports both draw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from faceattrs.data import shards
from faceattrs.reports.pictures import contact_sheet, dealt_rows


def _stored_images(shard_dir: Path, split: str, names: set[str]) -> dict[str, bytes]:
    """The stored bytes of the images ``names`` of a split, by image_id (those the split does not hold left out)."""
    found = {}
    for path in shards.shard_paths(shard_dir, split) if names else []:
        table = pq.read_table(path, columns=["image_id", "image"], filters=[("image_id", "in", sorted(names))])
        found.update(zip(table.column("image_id").to_pylist(), table.column("image").to_pylist(), strict=True))
    return found


def flagged_sheet(
    flagged: pd.DataFrame, shard_dir: Path, path: Path, title: str, shown: int = 24, per_row: int = 8
) -> None:
    """The flagged labels the model is surest of, each image with its given and suggested label.

    ``flagged`` has image_id, attribute, given, suggested and probability, and the split
    each image is in (``split``; the training split when absent).
    """
    flagged = flagged.reindex(flagged["probability"].sub(0.5).abs().sort_values(ascending=False).index).head(shown)
    splits = flagged["split"] if "split" in flagged else pd.Series("train", index=flagged.index)
    images = {}
    for split in splits.unique():
        images.update(_stored_images(shard_dir, split, set(flagged.loc[splits == split, "image_id"])))
    cells = [
        (images.get(r.image_id), f"{r.attribute[:16]}\n{r.given}->{r.suggested} p={r.probability:.2f}")
        for r in flagged.itertuples()
    ]
    contact_sheet(dealt_rows(cells, per_row, lambda a, b: f"{title}, {a}-{b} (given -> suggested)"), path)
