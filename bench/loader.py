"""Loader: uint8 batches from the Parquet shards against torchvision's CelebA + PIL + ToTensor, 2 workers each.

Both read the same images with the same crop and size (params.yaml's preprocess);
the baseline decodes the original JPEGs per item, ours the small stored JPEGs.

    python bench/loader.py [--raw data/raw] [--images 4000] [--workers 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from bench.common import machine, rate, report
from faceattrs.cleaning.clean import load_raw
from faceattrs.core.params import load_params
from faceattrs.data import (
    celeba,
    shards,
)
from faceattrs.data.archive import ImageArchive
from faceattrs.training.loader import ShardDataset, loader
from faceattrs.training.targets import from_params


class _CelebA(torchvision.datasets.CelebA):
    def _check_integrity(self) -> bool:  # the published md5s are of the real files
        return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    params = load_params("params.yaml").preprocess
    crop, (height, width) = params.crop, params.size
    archive = ImageArchive.of(args.raw)
    frame = load_raw(args.raw)
    readable = []
    for name in frame.index[frame["partition"] == 0]:
        try:
            data = archive.read(name)
            shards.encode_image(data, shards.ImageSpec(None, (8, 8), "raw", 90))
            readable.append(name)
        except ValueError:
            continue
        if len(readable) == args.images:
            break
    rows = frame.loc[readable]
    print(
        f"{machine()}\n{len(rows)} images, crop {list(crop) if crop else None}, size {height}x{width}, "
        f"{args.workers} workers, batch {args.batch}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "celeba"
        (folder / celeba.IMAGE_DIR).mkdir(parents=True)
        for name in rows.index:
            (folder / celeba.IMAGE_DIR / name).write_bytes(archive.read(name))
        # torchvision reads the published text files; list only the chosen images, all as "train".
        (folder / celeba.ATTR_FILE).write_bytes(celeba.format_attributes(rows[list(celeba.ATTRIBUTES)]))
        (folder / celeba.PARTITION_FILE).write_bytes(celeba.format_pairs(rows["partition"] * 0))
        for name in (celeba.IDENTITY_FILE, celeba.BBOX_FILE, celeba.LANDMARKS_FILE):
            table = (args.raw / name).read_text().splitlines()
            keep = set(rows.index)
            head = [line for line in table[:2] if not line.split()[0].endswith(".jpg")]
            (folder / name).write_text(
                "\n".join(head + [row for row in table if row.split() and row.split()[0] in keep]) + "\n"
            )
        spec = shards.ImageSpec(crop, (height, width), params.format, params.jpeg_quality, params.decode)
        shard_dir = root / "shards"
        shards.write_split(
            rows, archive, shard_dir, "train", spec, params.rows_per_shard, workers=args.workers, progress=False
        )

        steps = [transforms.Lambda(lambda img: img.crop(crop))] if crop else []
        steps += [
            transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
        ]
        tv = _CelebA(str(root), split="train", target_type="attr", transform=transforms.Compose(steps), download=False)
        assert len(tv) == len(rows)
        tv_loader = DataLoader(tv, batch_size=args.batch, shuffle=False, num_workers=args.workers)

        ours_set = ShardDataset(shard_dir, "train", from_params(None, None))
        ours_loader = loader(ours_set, batch_size=args.batch, shuffle=False, seed=0, epoch=0, workers=args.workers)

        def drain(batches) -> int:
            n = 0
            for images, *_ in batches:
                n += len(images)
            return n

        first_tv, first_ours = next(iter(tv_loader))[0], next(iter(ours_loader))[0]
        assert first_tv.shape == first_ours.shape, (first_tv.shape, first_ours.shape)
        assert first_ours.dtype == torch.uint8 and first_tv.dtype == torch.float32
        base = rate(lambda: drain(tv_loader), warmup=lambda: drain(tv_loader), repeat=2)
        ours = rate(lambda: drain(ours_loader), warmup=lambda: drain(ours_loader), repeat=2)
    report("loader (torchvision CelebA+PIL+ToTensor vs Parquet shards, uint8)", base, ours, target=5.0)


if __name__ == "__main__":
    main()
