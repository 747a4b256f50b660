"""Parquet shards: round trips, byte-identical rewrites, schema and a corrupt input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faceattrs import celeba, shards
from faceattrs.celeba import ATTRIBUTES
from faceattrs.cleaning import load_raw


@pytest.fixture(scope="module")
def rows(synthetic_raw):
    from faceattrs import synthetic
    frame = load_raw(synthetic_raw)
    return frame.drop(index=list(synthetic.read_truth(synthetic_raw)["unreadable"])).iloc[:150]


@pytest.mark.parametrize("fmt", ["jpeg", "raw"])
def test_round_trip(rows, synthetic_raw, tmp_path, fmt):
    spec = shards.ImageSpec((10, 20, 168, 208), (60, 48), fmt, 95)
    entries = shards.write_split(rows, synthetic_raw / celeba.IMAGE_DIR, tmp_path, "train", spec, 64, workers=2, progress=False)
    assert [e["rows"] for e in entries] == [64, 64, 22]
    back = pd.concat(pq.read_table(tmp_path / e["file"]).to_pandas() for e in entries).set_index("image_id")
    assert list(back.index) == list(rows.index)
    assert (back[list(ATTRIBUTES)] == rows[list(ATTRIBUTES)]).all().all()
    assert all(back[a].dtype == np.int8 for a in ATTRIBUTES)
    assert (back["identity"] == rows["identity"]).all()
    assert shards.read_spec(tmp_path / entries[0]["file"]) == spec
    first = shards.decode_image(back["image"].iloc[0], spec)
    assert first.shape == (60, 48, 3) and first.dtype == np.uint8
    direct = np.asarray(Image.open(synthetic_raw / celeba.IMAGE_DIR / rows.index[0]).convert("RGB")
                        .crop((10, 20, 168, 208)).resize((48, 60), Image.BICUBIC), dtype=np.int16)
    tolerance = 0 if fmt == "raw" else 12
    assert np.abs(first.astype(np.int16) - direct).mean() <= tolerance
    labels = shards.read_labels(tmp_path, "train")
    assert (labels[list(ATTRIBUTES)].to_numpy() == rows[list(ATTRIBUTES)].to_numpy()).all()


def test_same_inputs_same_bytes(rows, synthetic_raw, tmp_path):
    spec = shards.ImageSpec(None, (80, 64), "jpeg", 90)
    a = shards.write_split(rows, synthetic_raw / celeba.IMAGE_DIR, tmp_path / "a", "val", spec, 100, workers=1, progress=False)
    b = shards.write_split(rows, synthetic_raw / celeba.IMAGE_DIR, tmp_path / "b", "val", spec, 100, workers=2, progress=False)
    assert a == b
    for entry in a:
        assert (tmp_path / "a" / entry["file"]).read_bytes() == (tmp_path / "b" / entry["file"]).read_bytes()


def test_corrupt_image_names_the_file(rows, synthetic_raw, tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for name in rows.index[:5]:
        (image_dir / name).write_bytes((synthetic_raw / celeba.IMAGE_DIR / name).read_bytes())
    (image_dir / rows.index[2]).write_bytes(b"GIF89a broken")
    spec = shards.ImageSpec(None, (80, 64), "jpeg", 90)
    with pytest.raises(ValueError, match=rf"{rows.index[2]}: cannot decode image"):
        shards.write_split(rows.iloc[:5], image_dir, tmp_path / "out", "train", spec, 100, workers=1, progress=False)
