"""Parquet shards: round trips, byte-identical rewrites, schema and a corrupt input."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faceattrs.cleaning.clean import load_raw
from faceattrs.core.errors import InputError
from faceattrs.data import archive, shards
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import read_truth


@pytest.fixture(scope="module")
def rows(synthetic_raw):

    frame = load_raw(synthetic_raw)
    return frame.drop(index=list(read_truth(synthetic_raw)["unreadable"])).iloc[:150]


@pytest.mark.parametrize("fmt", ["jpeg", "raw"])
def test_round_trip(rows, synthetic_raw, tmp_path, fmt):
    spec = shards.ImageSpec((10, 20, 168, 208), (60, 48), fmt, 95)
    entries = shards.write_split(
        rows, ImageArchive.of(synthetic_raw), tmp_path, "train", spec, 64, workers=2, progress=False
    )
    assert [e["rows"] for e in entries] == [64, 64, 22]
    back = pd.concat(pq.read_table(tmp_path / e["file"]).to_pandas() for e in entries).set_index("image_id")
    assert list(back.index) == list(rows.index)
    assert (back[list(ATTRIBUTES)] == rows[list(ATTRIBUTES)]).all().all()
    assert all(back[a].dtype == np.int8 for a in ATTRIBUTES)
    assert (back["identity"] == rows["identity"]).all()
    assert shards.read_spec(tmp_path / entries[0]["file"]) == spec
    first = shards.decode_image(back["image"].iloc[0], spec)
    assert first.shape == (60, 48, 3) and first.dtype == np.uint8
    direct = np.asarray(
        Image.open(io.BytesIO(ImageArchive.of(synthetic_raw).read(rows.index[0])))
        .convert("RGB")
        .crop((10, 20, 168, 208))
        .resize((48, 60), Image.BICUBIC),
        dtype=np.int16,
    )
    # libjpeg-turbo and PIL upsample chroma a little differently: raw pixels agree to a fraction of a level.
    tolerance = 0.25 if fmt == "raw" else 12
    assert np.abs(first.astype(np.int16) - direct).mean() <= tolerance
    labels = shards.read_labels(tmp_path, "train")
    assert (labels[list(ATTRIBUTES)].to_numpy() == rows[list(ATTRIBUTES)].to_numpy()).all()


def test_same_inputs_same_bytes(rows, synthetic_raw, tmp_path):
    spec = shards.ImageSpec(None, (80, 64), "jpeg", 90)
    a = shards.write_split(
        rows, ImageArchive.of(synthetic_raw), tmp_path / "a", "val", spec, 100, workers=1, progress=False
    )
    b = shards.write_split(
        rows, ImageArchive.of(synthetic_raw), tmp_path / "b", "val", spec, 100, workers=2, progress=False
    )
    assert a == b
    for entry in a:
        assert (tmp_path / "a" / entry["file"]).read_bytes() == (tmp_path / "b" / entry["file"]).read_bytes()


def test_corrupt_image_names_the_file(rows, synthetic_raw, tmp_path):
    source = ImageArchive.of(synthetic_raw)
    items = [(name, b"GIF89a broken" if k == 2 else source.read(name)) for k, name in enumerate(rows.index[:5])]
    broken = ImageArchive(tmp_path / "images.zip")
    archive.pack(items, broken.path)
    spec = shards.ImageSpec(None, (80, 64), "jpeg", 90)
    with pytest.raises(InputError, match=rf"images.zip:{rows.index[2]}: cannot decode image"):
        shards.write_split(rows.iloc[:5], broken, tmp_path / "out", "train", spec, 100, workers=1, progress=False)


def test_reduced_decode_scales_only_when_the_crop_stays_large_enough():
    assert shards._draft_scale((19, 30, 159, 205), (80, 64)) == 2  # 140x175 -> 70x87, still >= 64x80
    assert shards._draft_scale((0, 0, 178, 218), (27, 22)) == 8
    assert shards._draft_scale((0, 0, 178, 218), (218, 178)) == 1  # never upsamples


def test_reduced_decode_is_close_to_full_decode(rows, synthetic_raw):
    source = ImageArchive.of(synthetic_raw)
    full = shards.ImageSpec((19, 30, 159, 205), (80, 64), "raw", 90, "full")
    reduced = shards.ImageSpec((19, 30, 159, 205), (80, 64), "raw", 90, "reduced")
    diffs = []
    for name in rows.index[:20]:
        a = shards.decode_image(shards.encode_image(source.read(name), full), full).astype(np.int16)
        b = shards.decode_image(shards.encode_image(source.read(name), reduced), reduced).astype(np.int16)
        assert a.shape == b.shape == (80, 64, 3)
        diffs.append(np.abs(a - b).mean())
    assert 0 < np.mean(diffs) < 6  # softer, not different


def _claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``: decoders size their buffer by the header."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_a_jpeg_claiming_absurd_dimensions_is_refused_from_its_header(tmp_path):
    spec = shards.ImageSpec(None, (80, 64), "jpeg", 90)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"^photo\.jpg: 9000x8000 pixels \(72\.0 megapixels\), over the") as caught:
            shards.encode_image(_claiming(9000, 8000), spec, "photo.jpg")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak} bytes allocated: the image was decoded"
    from faceattrs.data.image_header import ImageTooLarge

    assert isinstance(caught.value, ImageTooLarge)


def test_an_archive_member_claiming_absurd_dimensions_is_refused_by_name(tmp_path):
    path = tmp_path / "images.zip"
    archive.pack([("000001.jpg", _claiming(20000, 20000))], path)
    with pytest.raises(InputError, match=r"images\.zip:000001\.jpg: 20000x20000 pixels"):
        ImageArchive(path).read("000001.jpg")


@pytest.mark.parametrize(
    "spec, data",
    [
        (shards.ImageSpec(None, (80, 64), "jpeg", 90), b"\xff\xd8\xff not a jpeg"),
        (shards.ImageSpec(None, (80, 64), "raw", 90), bytes(100)),
    ],
)
def test_a_stored_image_that_does_not_decode_is_an_input_error(spec, data):
    with pytest.raises(InputError, match=r"shard-00001\.parquet:000007\.jpg: cannot decode the stored image"):
        shards.decode_image(data, spec, "shard-00001.parquet:000007.jpg")
