"""Bounded, seeded fuzzing of everything that reads files from outside: any input gives a result or an InputError.

Each target starts from valid files, mutates them (bytes flipped, inserted, deleted or cut; tokens
a parser trips on: huge integers, NULs, byte-order marks, non-ASCII, CR/LF) and counts what came
back. A traceback of any other type, or a file left behind by a failed call, fails the test. The
default run takes a few seconds; more inputs, or other ones:

    FACEATTRS_FUZZ_SCALE=20 FACEATTRS_FUZZ_SEED=3 python -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py
"""

from __future__ import annotations

import io
import os
import shutil
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattrs.core import atomic
from faceattrs.core.errors import InputError
from faceattrs.core.params import DataParams
from faceattrs.data import archive, celeba, shards, sources
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.faces import align

# PIL warns about the broken metadata it skips in fuzzed files: expected here, and not what is counted.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]
SCALE = float(os.environ.get("FACEATTRS_FUZZ_SCALE", "1"))
SEED = int(os.environ.get("FACEATTRS_FUZZ_SEED", "0"))
# What parsers trip on, inserted or swapped in for a token of the file.
TOKENS = (
    b"-1", b" 1", b"1", b"0", b"2", b"+1", b"1_0", b"-", b"", b"99999999999999999999", b"4294967296",
    b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\xa9", b"\xd9\xa3", b"\xff", b"\r\n", b"\n", b"\r", b"\t",
    b" ", b",", b'"', b"<html>", b"000001.jpg", b"image_id", b"a/b.jpg", b"0" * 300,
)  # fmt: skip


@dataclass
class Tally:
    """What a target gave back over its inputs."""

    target: str
    tried: int = 0
    results: int = 0
    input_errors: int = 0
    tracebacks: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    def run(self, call: Callable[[], object], scratch: Path, data: bytes) -> None:
        """One input: ``call`` must return or raise InputError, and leave ``scratch`` as it found it."""
        before = sorted(os.listdir(scratch))
        self.tried += 1
        try:
            call()
            self.results += 1
        except InputError:
            self.input_errors += 1
        except Exception:
            self.tracebacks.append(f"input {data[:300]!r}\n{traceback.format_exc()}")
        if sorted(os.listdir(scratch)) != before:
            self.partial.append(f"input {data[:300]!r} left {sorted(set(os.listdir(scratch)) - set(before))}")

    def report(self, record_property) -> None:
        line = (
            f"fuzz {self.target}: {self.tried} inputs, {self.results} results, {self.input_errors} input errors, "
            f"{len(self.tracebacks)} tracebacks, {len(self.partial)} partial outputs"
        )
        print(line)
        for key in ("tried", "results", "input_errors"):
            record_property(f"{self.target}.{key}", getattr(self, key))
        record_property(f"{self.target}.tracebacks", len(self.tracebacks))
        record_property(f"{self.target}.partial_outputs", len(self.partial))
        assert not self.tracebacks, f"{line}\n\n" + "\n\n".join(self.tracebacks[:3])
        assert not self.partial, f"{line}\n" + "\n".join(self.partial[:3])
        assert self.results and self.input_errors, f"{line}: the mutations should give both"


def mutate(rng: np.random.Generator, data: bytes, hot: tuple[int, int] | None = None) -> bytes:
    """``data`` after one to four random edits; ``hot`` is a byte range edited more often (a header, a directory).

    One input in five gets one small edit a reader may well accept (a value swapped, a line end
    changed), so that the accepting paths are fuzzed too, not only the first check that fails.
    """
    if rng.random() < 0.2:
        return _small_edit(rng, data)
    out = bytearray(data)
    for _ in range(rng.integers(1, 5)):
        if hot and rng.random() < 0.5:
            lo, hi = hot
        else:
            lo, hi = 0, len(out)
        at = int(rng.integers(lo, max(hi, lo + 1))) if out else 0
        op = rng.integers(7)
        if op == 0 and out:  # flip a byte
            out[min(at, len(out) - 1)] = int(rng.integers(256))
        elif op == 1:  # insert a token
            out[at:at] = TOKENS[rng.integers(len(TOKENS))]
        elif op == 2:  # replace the run of non-space bytes at ``at`` by a token
            end = at
            while end < len(out) and out[end] not in b" ,\r\n\t":
                end += 1
            out[at:end] = TOKENS[rng.integers(len(TOKENS))]
        elif op == 3:  # delete a range
            del out[at : at + int(rng.integers(1, 64))]
        elif op == 4:  # cut the end
            del out[at:]
        elif op == 5:  # repeat a line
            start = out.rfind(b"\n", 0, at) + 1
            end = out.find(b"\n", at)
            end = len(out) if end < 0 else end + 1
            out[end:end] = out[start:end]
        else:  # random bytes
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
    return bytes(out)


def _small_edit(rng: np.random.Generator, data: bytes) -> bytes:
    out = bytearray(data)
    at = int(rng.integers(len(out))) if out else 0
    if rng.random() < 0.3:
        end = out.find(b"\r\n", at)
        if end >= 0:
            del out[end]  # CRLF to LF
        return bytes(out)
    while at < len(out) and out[at] in b" ,\r\n\t":
        at += 1
    end = at
    while end < len(out) and out[end] not in b" ,\r\n\t":
        end += 1
    out[at:end] = (b"1", b"-1", b"0", b"2", b"7")[rng.integers(5)]
    return bytes(out)


def inputs(base: int) -> int:
    return max(1, round(base * SCALE))


# ---------------------------------------------------------------- seeds


def _labels(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    index = pd.Index([celeba.image_name(i + 1) for i in range(n)], name="image_id")
    return pd.DataFrame(rng.integers(0, 2, (n, 40)).astype(np.int8), index=index, columns=list(ATTRIBUTES))


def _text_seeds(n: int = 4) -> dict[str, tuple[bytes, Callable[[Path], object]]]:
    labels = _labels(n)
    index = labels.index
    bbox = pd.DataFrame([[95, 71, 226, 313]] * n, index=index, columns=list(celeba.BBOX_HEADER[1:]))
    marks = pd.DataFrame([[69, 109, 106, 113, 77, 142, 73, 152, 108, 154]] * n, index=index)
    marks.columns = list(celeba.LANDMARK_HEADER)
    partition = pd.Series([0, 1, 2, 0][:n], index=index, name="partition")
    kaggle = lambda frame, columns: (  # noqa: E731
        frame.to_csv(lineterminator="\r\n").encode(),
        lambda path: celeba.read_kaggle_csv(path, columns),
    )
    return {
        "attributes": (celeba.format_attributes(labels), celeba.read_attributes),
        "partition": (celeba.format_pairs(partition), celeba.read_partition),
        "identity": (celeba.format_pairs(pd.Series([3, 3, 8, 1][:n], index=index)), celeba.read_identity),
        "bbox": (celeba.format_table(bbox, celeba.BBOX_HEADER), celeba.read_bbox),
        "landmarks": (celeba.format_table(marks, celeba.LANDMARK_HEADER), celeba.read_landmarks),
        "kaggle attributes": kaggle(labels * 2 - 1, ATTRIBUTES),
        "kaggle partition": kaggle(partition.to_frame(), ("partition",)),
        "kaggle bbox": kaggle(bbox, celeba.BBOX_HEADER[1:]),
        "kaggle landmarks": kaggle(marks, celeba.LANDMARK_HEADER),
    }


def _picture(size: tuple[int, int] = (24, 20)) -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _photo_seeds() -> list[bytes]:
    """Small pictures in every format a user might hand to predict, JPEGs of several kinds first."""
    seeds = []
    picture = _picture()
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: exif_transpose has work to do
    for fmt, options in [
        ("JPEG", {"quality": 90}),
        ("JPEG", {"progressive": True}),
        ("JPEG", {"exif": exif.tobytes()}),
        ("PNG", {}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {}),
    ]:
        out = io.BytesIO()
        picture.save(out, fmt, **options)
        seeds.append(out.getvalue())
    aligned = io.BytesIO()
    _picture(align.ALIGNED_SIZE).save(aligned, "JPEG")
    return [*seeds, aligned.getvalue()]


def _header_range(data: bytes) -> tuple[int, int]:
    """The bytes that say what the picture is: a JPEG's frame header, else the file's first 64."""
    sof = data.find(b"\xff\xc0")
    sof = data.find(b"\xff\xc2") if sof < 0 else sof
    return (sof, sof + 10) if sof >= 0 else (0, 64)


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize("name", list(_text_seeds()))
def test_text_readers(tmp_path, record_property, name):
    seed, reader = _text_seeds()[name]
    rng = np.random.default_rng([SEED, len(name)])
    tally = Tally(f"text {name}")
    path = tmp_path / "input.txt"
    for _ in range(inputs(150)):
        data = mutate(rng, seed)
        path.write_bytes(data)
        tally.run(lambda: reader(path), tmp_path, data)
    tally.report(record_property)


def _zip_seed(method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for i in range(3):
            jpeg = io.BytesIO()
            _picture().save(jpeg, "JPEG")
            zf.writestr(f"{celeba.IMAGE_DIR}/{celeba.image_name(i + 1)}", jpeg.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_archive_reader(tmp_path, record_property, method):
    seed = _zip_seed(method)
    directory = seed.rfind(b"PK\x01\x02", 0, seed.rfind(b"PK\x01\x02"))  # the central directory's entries
    rng = np.random.default_rng([SEED, method])
    tally = Tally(f"archive {'deflated' if method else 'stored'}")

    def read_all(path: Path) -> list[bytes]:
        images = archive.ImageArchive(path)
        return [images.read(name) for name in images.names()]

    for i in range(inputs(200)):
        data = mutate(rng, seed, (directory, len(seed)))
        path = tmp_path / f"{i}.zip"  # a new name each time: open archives are cached by path
        path.write_bytes(data)
        tally.run(lambda path=path: read_all(path), tmp_path, data)
        path.unlink()
    tally.report(record_property)


def test_photo_decoder(tmp_path, record_property):
    seeds = _photo_seeds()
    rng = np.random.default_rng([SEED, 7])
    tally = Tally("photo open_photo")
    path = tmp_path / "photo"
    for i in range(inputs(300)):
        seed = seeds[i % len(seeds)]
        data = mutate(rng, seed, _header_range(seed))
        path.write_bytes(data)
        tally.run(lambda: align.open_photo(path), tmp_path, data)
    tally.report(record_property)


SPECS = (
    shards.ImageSpec(None, (40, 32), "jpeg", 90),
    shards.ImageSpec((2, 3, 20, 19), (10, 8), "raw", 90, "reduced"),
)


def test_shard_encode_and_decode(tmp_path, record_property):
    seeds = _photo_seeds()
    rng = np.random.default_rng([SEED, 11])
    encode, decode = Tally("shards encode_image"), Tally("shards decode_image")
    for i in range(inputs(200)):
        seed, spec = seeds[i % len(seeds)], SPECS[i % len(SPECS)]
        data = mutate(rng, seed, _header_range(seed))
        encode.run(lambda data=data, spec=spec: shards.encode_image(data, spec, "fuzzed"), tmp_path, data)
        stored = shards.encode_image(seeds[0], spec)
        data = mutate(rng, stored, _header_range(stored))
        decode.run(lambda data=data, spec=spec: shards.decode_image(data, spec, "fuzzed"), tmp_path, data)
    encode.report(record_property)
    decode.report(record_property)


# ---------------------------------------------------------------- through the download stage's writes


def _local_layouts(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """A published-layout folder and a Kaggle one, four images each, and the files of each to mutate."""
    labels = _labels(4)
    partition = pd.Series([0, 1, 2, 0], index=labels.index, name="partition")
    published, kaggle = root / "published", root / "kaggle"
    for folder in (published / celeba.IMAGE_DIR, kaggle / celeba.IMAGE_DIR / celeba.IMAGE_DIR):
        folder.mkdir(parents=True)
        for name in labels.index:
            _picture().save(folder / name, "JPEG")
    (published / celeba.ATTR_FILE).write_bytes(celeba.format_attributes(labels))
    (published / celeba.PARTITION_FILE).write_bytes(celeba.format_pairs(partition))
    (published / celeba.IDENTITY_FILE).write_bytes(celeba.format_pairs(pd.Series([3, 3, 8, 1], index=labels.index)))
    (labels * 2 - 1).to_csv(kaggle / "list_attr_celeba.csv")
    partition.to_frame().to_csv(kaggle / "list_eval_partition.csv")
    return {
        "published": (published, [celeba.ATTR_FILE, celeba.PARTITION_FILE, celeba.IDENTITY_FILE]),
        "kaggle": (kaggle, ["list_attr_celeba.csv", "list_eval_partition.csv"]),
    }


@pytest.mark.parametrize("layout", ["published", "kaggle"])
def test_local_source_writes_all_or_nothing(tmp_path, record_property, layout):
    root, files = _local_layouts(tmp_path / "in")[layout]
    originals = {name: (root / name).read_bytes() for name in files}
    scratch = tmp_path / "work"
    scratch.mkdir()
    params = DataParams(source="local", local={"path": str(root)})
    rng = np.random.default_rng([SEED, len(layout)])
    tally = Tally(f"local {layout} source")

    def download() -> None:
        with atomic.atomic_dir(scratch / "raw") as tmp:
            sources.fetch(params, tmp, scratch / "dl", progress=False)
        # Whole when it is there: what the download stage verified reads back.
        assert len(celeba.read_attributes(scratch / "raw" / celeba.ATTR_FILE)) >= 0
        shutil.rmtree(scratch / "raw")

    for i in range(inputs(60)):
        name = files[i % len(files)]
        data = mutate(rng, originals[name])
        (root / name).write_bytes(data)
        tally.run(download, scratch, data)
        (root / name).write_bytes(originals[name])
    tally.report(record_property)
