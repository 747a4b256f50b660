"""Training step throughput fed by the real loader from shards, against the same steps fed random tensors on the device.

Both use the project's training step (bf16 or fp16 autocast and channels_last on CUDA, the
same augmentation and loss); the ratio says how much of the device the loader
leaves idle (target: 0.9 or more). Shards at the requested size are written first
from a raw folder, so the recipe resolutions can be measured. Runs on the CPU
too (small, to check it works), but its figures mean something on a GPU.

    python bench/gpu_train.py --model mobilenetv2_100 --size 198 158 --batch 256 --steps 50
    python bench/gpu_train.py --model resnet50 --size 218 178 --batch 128 --steps 50 --decode-on device
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import machine, readable_images
from faceattrs.core.params import parse_params
from faceattrs.data import shards
from faceattrs.data.archive import ImageArchive
from faceattrs.training import optim
from faceattrs.training.build import TrainingParams, make_step
from faceattrs.training.loader import ShardDataset, decode_batch, loader
from faceattrs.training.step import EpochPlan, model_step, optimizer_step, resolve_device
from faceattrs.training.targets import from_params

PREFETCH = 2  # torch's DataLoader default prefetch_factor, which the project's loader keeps


def images_per_second(ctx, batches, steps: int, warmup: int, work) -> float:
    """Images/s of ``work(images, labels)`` over ``steps`` batches after ``warmup``, synchronised with the device."""
    seen, start = 0, None
    for k, (images, labels, _) in enumerate(batches):
        if k == warmup:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        work(images, labels)
        seen += len(labels)
        if k + 1 == warmup + steps:
            break
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def training_step(ctx, optimizer):
    def step(images, labels):
        loss, _ = model_step(ctx, images, labels, EpochPlan())
        optimizer_step(ctx, loss, optimizer)  # with fp16's loss scaler, as training takes it

    return step


def to_device(ctx):
    """The loader's share alone: a batch decoded (on the device, with nvJPEG) and copied there, no model."""

    def copy(images, labels):
        if isinstance(images, list):
            images = decode_batch(images, ctx.device)
        images.to(ctx.device, non_blocking=True)

    return copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenetv2_100")
    p.add_argument("--size", type=int, nargs=2, default=[198, 158], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="steps before timing (default: twice the batches the workers prefetch, so none of those is timed)",
    )
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--decode-on", choices=["loader", "device"], default="loader")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16", help="autocast on a GPU")
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--images", type=int, default=0, help="images to shard (0: enough for the steps)")
    p.add_argument(
        "--timm-reference",
        type=float,
        default=0.0,
        help="timm's published training images/s for this model, to print the ratio against",
    )
    args = p.parse_args()
    device = resolve_device(args.device)
    # The loader's workers decode PREFETCH batches each ahead of the model: a window shorter than
    # that would time batches decoded during the warm-up and overstate the loader.
    warmup = args.warmup if args.warmup is not None else max(10, 2 * PREFETCH * args.workers)
    params = parse_params(
        {
            "model": {"backbone": args.model},
            "train": {"batch_size": args.batch, "compile": args.compile, "precision": args.precision},
            "augment": {"hflip": 0.5},
        }
    )
    height, width = args.size
    needed = args.images or args.batch * (args.steps + warmup)
    archive = ImageArchive.of(args.raw)
    rows = readable_images(args.raw, needed)
    print(
        f"{machine()}, device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"{args.model} at {height}x{width}, batch {args.batch}, {args.steps} steps after {warmup}, "
        f"decode on {args.decode_on}, {args.precision}, {args.workers} workers, {len(rows)} images"
    )

    with tempfile.TemporaryDirectory() as tmp:
        spec = shards.ImageSpec(None, (height, width), "jpeg", 90, "reduced")
        shards.write_split(rows, archive, Path(tmp), "train", spec, 4096, workers=0, progress=False)
        target = from_params(None, None)
        data = ShardDataset(Path(tmp), "train", target, encoded=args.decode_on == "device")
        torch.manual_seed(0)
        ctx = make_step(TrainingParams.of(params), target.positive_rates(data.frame), device, len(target.names))
        if args.compile:
            ctx = ctx.with_model(torch.compile(ctx.model))
        optimizer = optim.build_optimizer(ctx.model, params.optimizer)

        def real():
            while True:
                yield from loader(
                    data,
                    batch_size=args.batch,
                    shuffle=True,
                    seed=0,
                    epoch=0,
                    workers=args.workers,
                    pin_memory=device.type == "cuda",
                )

        def fake():
            images = torch.randint(0, 256, (args.batch, 3, height, width), dtype=torch.uint8, device=device)
            labels = torch.randint(0, 2, (args.batch, 40), dtype=torch.int8, device=device)
            while True:
                yield images, labels, None

        synthetic_rate = images_per_second(ctx, fake(), args.steps, warmup, training_step(ctx, optimizer))
        loader_rate = images_per_second(ctx, real(), args.steps, warmup, training_step(ctx, optimizer))
        alone = images_per_second(ctx, real(), args.steps, warmup, to_device(ctx))
    print(f"the loader alone (decoded, copied to the device, no model): {alone:,.0f} img/s")
    print(
        f"random tensors on the device: {synthetic_rate:,.0f} img/s; fed from shards: {loader_rate:,.0f} img/s; "
        f"ratio {loader_rate / synthetic_rate:.2f} "
        f"(target 0.90: {'met' if loader_rate / synthetic_rate >= 0.9 else 'NOT met'})"
    )
    print(f"one epoch of CelebA's 162,770 training images: {162_770 / loader_rate / 60:.1f} min")
    if args.timm_reference:
        print(f"against timm's published {args.timm_reference:,.0f} img/s: {loader_rate / args.timm_reference:.2f}")


if __name__ == "__main__":
    main()
