"""Parquet shards of one split: image bytes (JPEG or raw uint8), the 40 labels as int8, id and identity.

Writing streams rows in a fixed order through worker processes, one shard in memory
at a time, so the same inputs and params give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import simplejpeg
from PIL import Image

from faceattrs.core.atomic import write_json
from faceattrs.core.errors import InputError
from faceattrs.core.parallel import imap
from faceattrs.core.params import PreprocessParams
from faceattrs.data import image_header
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.data.splits import OFFICIAL_TEST, SPLITS

METADATA_KEY = b"faceattrs"
ROW_GROUP = 512


@dataclass(frozen=True)
class ImageSpec:
    """How images are stored: crop box on the aligned image, [height, width], and encoding."""

    crop: tuple[int, int, int, int] | None
    size: tuple[int, int]
    format: str
    jpeg_quality: int
    decode: str = "full"

    def to_dict(self) -> dict:
        return {
            "crop": list(self.crop) if self.crop else None,
            "size": list(self.size),
            "format": self.format,
            "jpeg_quality": self.jpeg_quality,
            "decode": self.decode,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ImageSpec:
        return cls(
            tuple(raw["crop"]) if raw["crop"] else None,
            tuple(raw["size"]),
            raw["format"],
            raw["jpeg_quality"],
            raw.get("decode", "full"),  # shards written before the choice decoded in full
        )


def schema(spec: ImageSpec) -> pa.Schema:
    fields = [pa.field("image_id", pa.string()), pa.field("identity", pa.int32()), pa.field("image", pa.binary())]
    fields += [pa.field(a, pa.int8()) for a in ATTRIBUTES]
    meta = {"attributes": list(ATTRIBUTES), **spec.to_dict()}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta).encode()})


def _draft_scale(box: tuple[int, int, int, int], size: tuple[int, int]) -> int:
    """The largest JPEG DCT scale (8, 4 or 2) that keeps the box at least the stored size, else 1."""
    left, top, right, bottom = box
    height, width = size
    return next((s for s in (8, 4, 2) if (right - left) / s >= width and (bottom - top) / s >= height), 1)


def _pixels(data: bytes, spec: ImageSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB pixels, decoded at a reduced scale where the spec allows, and the full size they stand for."""
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        scale = _draft_scale(spec.crop or (0, 0, width, height), spec.size) if spec.decode == "reduced" else 1
        # libjpeg-turbo (simplejpeg) decodes twice as fast as PIL here, and scales in the DCT.
        rgb = simplejpeg.decode_jpeg(data, min_width=-(-width // scale), min_height=-(-height // scale))
        return rgb, (width, height)
    except ValueError:  # not a JPEG turbo reads (another format, CMYK, broken): PIL decides
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB")), img.size


class ImageDecodeError(InputError):
    """An image, or a stored one, whose bytes do not decode (or not to what its shard says)."""


def encode_image(data: bytes, spec: ImageSpec, name: str = "image") -> bytes:
    """Crop, resize and encode one image as the spec says; its size is checked from its header before decoding."""
    image_header.check(data, name)
    try:
        rgb, full = _pixels(data, spec)
    except Exception as err:  # PIL raises several unrelated types for broken files
        raise ImageDecodeError(
            f"{name}: cannot decode image ({err}); rerun dedupe, which drops unreadable images"
        ) from None
    if spec.crop and (spec.crop[2] > full[0] or spec.crop[3] > full[1]):
        raise ImageDecodeError(f"{name}: {full[0]}x{full[1]} pixels, smaller than the crop box {list(spec.crop)}")
    return encode_pixels(rgb, spec, full)


def encode_pixels(rgb: np.ndarray, spec: ImageSpec, full: tuple[int, int] | None = None) -> bytes:
    """Crop, resize and encode decoded (H, W, 3) pixels that stand for an image of size ``full`` (width, height)."""
    full = full or (rgb.shape[1], rgb.shape[0])
    height, width = spec.size
    left, top, right, bottom = spec.crop or (0, 0, *full)
    # The crop box in the decoded image's coordinates (smaller when decoded at a reduced scale).
    fx, fy = rgb.shape[1] / full[0], rgb.shape[0] / full[1]
    box = (left * fx, top * fy, right * fx, bottom * fy)
    img = Image.fromarray(rgb)
    if (width, height) != (img.width, img.height) or box != (0, 0, img.width, img.height):
        img = img.resize((width, height), Image.BICUBIC, box=box)
    pixels = np.asarray(img, dtype=np.uint8)
    if spec.format == "raw":
        return pixels.tobytes()
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=spec.jpeg_quality, colorsubsampling="420")


def decode_image(data: bytes, spec: ImageSpec, name: str = "stored image") -> np.ndarray:
    """HxWx3 uint8 pixels of one stored image, which must be of the spec's size."""
    try:
        return _stored_pixels(data, spec)
    except ValueError as err:
        raise ImageDecodeError(f"{name}: cannot decode the stored image ({err})") from None


def _stored_pixels(data: bytes, spec: ImageSpec) -> np.ndarray:
    height, width = spec.size
    if spec.format == "raw":
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    # The header first: a shard from elsewhere could claim any size, and the decoder would allocate it.
    found = simplejpeg.decode_jpeg_header(data)[:2]
    if found != (height, width):
        raise ValueError(f"it is {found[1]}x{found[0]}, and the shard's images are {width}x{height}")
    return simplejpeg.decode_jpeg(data)  # libjpeg-turbo, the GIL released


def _encode_member(name: str, images: ImageArchive, spec: ImageSpec) -> bytes:
    return encode_image(images.read(name), spec, f"{images.path}:{name}")


def write_split(
    rows: pd.DataFrame,
    images: ImageArchive,
    out_dir: Path,
    split: str,
    spec: ImageSpec,
    rows_per_shard: int,
    workers: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Write ``rows`` (manifest rows indexed by image_id, in order) as shards; returns their entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table_schema = schema(spec)
    encoded = imap(
        partial(_encode_member, images=images, spec=spec),
        list(rows.index),
        total=len(rows),
        workers=workers,
        desc=f"shards {split}",
        progress=progress,
    )
    entries = []
    for number, start in enumerate(range(0, max(len(rows), 1), rows_per_shard)):
        chunk = rows.iloc[start : start + rows_per_shard]
        if chunk.empty and number > 0:
            break
        images = [next(encoded) for _ in range(len(chunk))]
        columns = {
            "image_id": pa.array(chunk.index.astype(str).tolist(), pa.string()),
            "identity": pa.array(chunk["identity"].to_numpy(np.int32)),
            "image": pa.array(images, pa.binary()),
            **{a: pa.array(chunk[a].to_numpy(np.int8)) for a in ATTRIBUTES},
        }
        table = pa.Table.from_pydict(columns, schema=table_schema)
        path = out_dir / f"{split}-{number:05d}.parquet"
        pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd", compression_level=3)
        entries.append(
            {
                "file": path.name,
                "rows": len(chunk),
                "bytes": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    return entries


def spec_of(params: PreprocessParams) -> ImageSpec:
    return ImageSpec(params.crop, params.size, params.format, params.jpeg_quality, params.decode)


def write_splits(
    manifest: pd.DataFrame,
    images: ImageArchive,
    out_dir: Path,
    params: PreprocessParams,
    progress: bool = True,
    eyes: np.ndarray | None = None,
    official: tuple[pd.DataFrame, dict] | None = None,
) -> dict:
    """Every split of ``manifest`` (sorted by image id) as shards in ``out_dir``, and their ``manifest.json``.

    ``eyes``, the mean eye positions of the training images on the aligned image, goes
    into the manifest for training to keep in the model file: photos are aligned to it.
    ``official``: the official test partition's rows and figures (``splits.official_test``),
    written beside the splits as ``official_test`` shards.
    """
    spec = spec_of(params)
    entries = {}
    for split in SPLITS:
        rows = manifest[manifest["split"] == split]
        entries[split] = {
            "rows": len(rows),
            "shards": write_split(rows, images, out_dir, split, spec, params.rows_per_shard, params.workers, progress),
        }
    extra = {}
    if official is not None:
        rows, figures = official
        written = write_split(
            rows, images, out_dir, OFFICIAL_TEST, spec, params.rows_per_shard, params.workers, progress
        )
        extra[OFFICIAL_TEST] = {**figures, "rows": len(rows), "shards": written}
    # Only what the shards hold: a commit stamp here would change the output training
    # depends on, and so retrain, whenever any code changed while the shards stayed the same.
    write_json(
        out_dir / "manifest.json",
        {
            "splits": entries,
            "image": spec.to_dict(),
            "schema": str(schema(spec)).split("\n-- schema metadata --")[0],
            "params": params.model_dump(mode="json"),
            "mean_eyes": None if eyes is None else np.round(eyes, 3).tolist(),
            **extra,
        },
    )
    return entries


def read_mean_eyes(shard_dir: Path) -> list | None:
    """The mean eye positions preprocess recorded, or None (no landmarks file, or shards written otherwise)."""
    path = Path(shard_dir) / "manifest.json"
    return json.loads(path.read_text()).get("mean_eyes") if path.exists() else None


def read_spec(path: Path) -> ImageSpec:
    return ImageSpec.from_dict(json.loads(pq.read_schema(path).metadata[METADATA_KEY]))


def shard_paths(shard_dir: Path, split: str) -> list[Path]:
    return sorted(Path(shard_dir).glob(f"{split}-*.parquet"))


def iter_batches(shard_dir: Path, split: str, batch_size: int = ROW_GROUP) -> Iterator[pa.RecordBatch]:
    for path in shard_paths(shard_dir, split):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)


def read_official_test(shard_dir: Path) -> dict | None:
    """The official test partition's entry in the shards' manifest (its figures), or None where not written."""
    path = Path(shard_dir) / "manifest.json"
    return json.loads(path.read_text()).get(OFFICIAL_TEST) if path.exists() else None


def read_labels(shard_dir: Path, split: str) -> pd.DataFrame:
    """Labels and identity of a split, without the image bytes."""
    paths = shard_paths(shard_dir, split)
    if not paths:
        return pd.DataFrame(columns=["identity", *ATTRIBUTES])
    table = pa.concat_tables(pq.read_table(p, columns=["image_id", "identity", *ATTRIBUTES]) for p in paths)
    return table.to_pandas().set_index("image_id")
