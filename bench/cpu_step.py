"""The CPU training step under each memory layout and precision, and whether bf16 gives the same weights twice.

Times forward, backward and an AdamW step of the default backbone on random
batches at the default shard size, NCHW fp32 (the baseline) against
channels_last (everywhere, or NCHW kept on the small maps as training does on
the CPU) and bf16 autocast, and prints each ratio. Then each of the backbone's
3x3 convolutions, by map size, in each layout, and AdamW's step as a loop,
foreach and fused. bf16 is then checked for determinism at the given size and
at 40x32: the same seed and batches, trained three times in one process, must
give identical weights (fp32 does).

    python bench/cpu_step.py
    python bench/cpu_step.py --backbone resnet10t --size 80 64 --batch 64   # the previous default backbone
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm
import torch
import torch.nn.functional as F

from bench.common import machine
from faceattrs.core.params import Params
from faceattrs.training import backbones, layout  # noqa: F401  backbones: faceattrs's timm names

NCHW = layout.NCHW_BELOW_PIXELS


def make(backbone: str, channels_last: bool, seed: int = 0, size=None, fused: bool = False):
    """The model and its AdamW; ``size`` keeps NCHW on small maps, as training does on the CPU."""
    torch.manual_seed(seed)
    model = timm.create_model(backbone, num_classes=40)
    if channels_last:
        layout.to_channels_last(model, torch.device("cpu"), size)
    return model, torch.optim.AdamW(model.parameters(), 1e-3, fused=fused)


def step(model, opt, x, y, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def batch(size, n, channels_last, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, *size, generator=gen)
    y = (torch.rand(n, 40, generator=gen) > 0.5).float()
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def seconds_per_step(
    backbone, size, n, channels_last, bf16, steps, compiled=False, small_nchw=False, fused=False
) -> tuple[float, float]:
    """Seconds per step after a warm-up of three steps, and the warm-up's seconds (torch.compile's cost)."""
    model, opt = make(backbone, channels_last, size=size if small_nchw else None, fused=fused)
    if compiled:
        model = torch.compile(model)
    x, y = batch(size, n, channels_last)
    start = time.perf_counter()
    for _ in range(3):
        step(model, opt, x, y, bf16)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y, bf16)
    return (time.perf_counter() - start) / steps, warm


def convolution_ms(pixels: tuple[int, int], channels: tuple[int, int], n: int, channels_last: bool, reps: int) -> float:
    """Milliseconds for the forward and backward of one 3x3 convolution on a batch of ``n``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, channels[0], *pixels).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(channels[1], channels[0], 3, 3).contiguous(memory_format=fmt).requires_grad_()
    for i in range(reps + 2):
        if i == 2:
            start = time.perf_counter()
        F.conv2d(x, w, padding=1).sum().backward()
    return 1000 * (time.perf_counter() - start) / reps


def convolutions(backbone: str, size: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The backbone's distinct 3x3 stride-1 convolutions at input ``size``: (input map, (in, out) channels)."""
    maps = layout.input_maps(timm.create_model(backbone, num_classes=40), size)
    plain = (m for m in maps if m.kernel_size == (3, 3) and m.stride == (1, 1) and m.groups == 1)
    return list(dict.fromkeys((maps[m], (m.in_channels, m.out_channels)) for m in plain))


def optimizer_ms(backbone: str, kind: str, reps: int = 30) -> float:
    """Milliseconds per AdamW step over the backbone's weights (random gradients)."""
    model = timm.create_model(backbone, num_classes=40)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    options = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]
    opt = torch.optim.AdamW(model.parameters(), 1e-3, **options)
    for i in range(reps + 3):
        if i == 3:
            start = time.perf_counter()
        opt.step()
    return 1000 * (time.perf_counter() - start) / reps


def weights_after(backbone, size, n, bf16, steps=3) -> torch.Tensor:
    model, opt = make(backbone, True)
    for i in range(steps):
        x, y = batch(size, n, True, seed=i)
        step(model, opt, x, y, bf16)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=Params().model.backbone)
    p.add_argument("--size", type=int, nargs=2, default=[80, 64], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (a minute to compile)")
    args = p.parse_args()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads, AMX: {amx}")
    threads = torch.get_num_threads()
    # name: (channels_last, bf16, threads, torch.compile, NCHW on small maps, fused AdamW)
    variants = {
        "NCHW fp32 (baseline)": (False, False, threads, False, False, False),
        "channels_last fp32": (True, False, threads, False, False, False),
        "channels_last, NCHW small maps": (True, False, threads, False, True, False),
        "the same, fused AdamW": (True, False, threads, False, True, True),
        "channels_last fp32, 1 thread": (True, False, 1, False, False, False),
        "channels_last fp32, compiled": (True, False, threads, True, False, False),
        "NCHW bf16 autocast": (False, True, threads, False, False, False),
        "channels_last bf16 autocast": (True, True, threads, False, False, False),
    }
    base = None
    for name, (cl, bf16, n_threads, compiled, small, fused) in variants.items():
        if compiled and args.no_compile:
            continue
        torch.set_num_threads(n_threads)
        s, warm = seconds_per_step(
            args.backbone, args.size, args.batch, cl, bf16, args.steps, compiled, small_nchw=small, fused=fused
        )
        torch.set_num_threads(threads)
        base = base or s
        extra = f"  (first three steps {warm:.1f} s)" if compiled else ""
        print(f"{name:30s} {1000 * s:7.1f} ms/step {args.batch / s:7.1f} img/s  {base / s:.2f}x{extra}", flush=True)
    # Where layout.NCHW_BELOW_PIXELS comes from: the backbone's 3x3 convolutions at its input size, by map size.
    for pixels, channels in convolutions(args.backbone, args.size):
        last, nchw = (convolution_ms(pixels, channels, args.batch, cl, args.steps) for cl in (True, False))
        print(
            f"3x3 convolution {channels[0]}->{channels[1]} at {pixels[0]}x{pixels[1]}: channels_last {last:.1f} ms, "
            f"NCHW {nchw:.1f} ms (forward and backward){'  NCHW in training' if pixels[0] * pixels[1] < NCHW else ''}",
            flush=True,
        )
    steps = ", ".join(f"{kind} {optimizer_ms(args.backbone, kind):.1f} ms" for kind in ("loop", "foreach", "fused"))
    print(f"AdamW step: {steps}")
    # Also at a small size: whether bf16 repeats itself depended on the shapes here.
    for size in (tuple(args.size), (40, 32)):
        for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
            runs = [weights_after(args.backbone, size, 32, bf16) for _ in range(3)]
            finite = [w for w in runs if torch.isfinite(w).all()]
            diff = max(((a - b).abs().max().item() for a in finite for b in finite), default=float("nan"))
            print(
                f"{name} at {size[0]}x{size[1]}: the same three steps three times: "
                f"{len(runs) - len(finite)} with NaN weights, largest difference between the others {diff:.3g}"
            )


if __name__ == "__main__":
    main()
