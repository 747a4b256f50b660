"""Preprocess: the shard writer with 2 workers against a single-process PIL loop doing the same crop, resize and encode.

The baseline decodes each JPEG with PIL, crops, resizes (bicubic) and encodes a JPEG
at the same quality, one image after another, and keeps the bytes. Ours is
`shards.write_split`, Parquet files included, on the same images.

    python bench/preprocess.py [--raw data/raw] [--images 3000] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from bench.common import machine, rate, readable_images, report
from faceattrs.core.params import load_params
from faceattrs.data import shards
from faceattrs.data.archive import ImageArchive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    params = load_params("params.yaml").preprocess
    spec = shards.ImageSpec(params.crop, params.size, params.format, params.jpeg_quality, params.decode)
    archive = ImageArchive.of(args.raw)
    rows = readable_images(args.raw, args.images)
    height, width = spec.size
    print(
        f"{machine()}\n{len(rows)} images, crop {list(spec.crop) if spec.crop else None}, size {height}x{width}, "
        f"JPEG q{spec.jpeg_quality}, decode {spec.decode}, {args.workers} workers"
    )

    def baseline() -> int:
        out = []
        for name in rows.index:
            img = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            if spec.crop:
                img = img.crop(spec.crop)
            img = img.resize((width, height), Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=spec.jpeg_quality)
            out.append(buf.getvalue())
        return len(out)

    with tempfile.TemporaryDirectory() as tmp:

        def ours() -> int:
            entries = shards.write_split(
                rows,
                archive,
                Path(tmp) / "shards",
                "train",
                spec,
                params.rows_per_shard,
                workers=args.workers,
                progress=False,
            )
            return sum(e["rows"] for e in entries)

        base = rate(baseline, warmup=baseline, repeat=2)
        fast = rate(ours, warmup=ours, repeat=2)
    report(f"preprocess (1-process PIL loop vs shard writer, {args.workers} workers)", base, fast, target=1.8)


if __name__ == "__main__":
    main()
