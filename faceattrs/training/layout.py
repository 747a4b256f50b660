"""The memory layout of a model's weights and activations: channels_last, with NCHW kept where the CPU is faster."""

from __future__ import annotations

import torch
from torch import nn

# On the CPU, oneDNN's channels_last convolutions are slower than NCHW ones on the last, smallest feature maps
# and faster on the large ones: forward and backward of a 3x3 convolution on a batch of 64 took, channels_last
# against NCHW, 63 against 49 ms for 512 channels at 3x2 pixels, 27 against 22 ms for 256 at 5x4, and 21
# against 29 ms for 64 at 20x16 (``python bench/cpu_step.py``).
NCHW_BELOW_PIXELS = 32


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def input_maps(model: nn.Module, input_size: tuple[int, int]) -> dict[nn.Conv2d, tuple[int, int]]:
    """Each convolution's input map [height, width] at ``input_size``, found by one forward pass of zeros.

    A convolution called more than once keeps its smallest map.
    """
    maps: dict[nn.Conv2d, tuple[int, int]] = {}

    def record(conv: nn.Conv2d, args: tuple) -> None:
        h, w = args[0].shape[-2:]
        if conv not in maps or h * w < maps[conv][0] * maps[conv][1]:
            maps[conv] = (h, w)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()  # BatchNorm reads its statistics instead of updating them; no randomness is drawn
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device).contiguous(memory_format=torch.channels_last))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    return maps


def small_map_convolutions(model: nn.Module, input_size: tuple[int, int], below: int) -> list[nn.Conv2d]:
    """The convolutions whose input maps have fewer than ``below`` pixels at ``input_size``."""
    return [conv for conv, (h, w) in input_maps(model, input_size).items() if h * w < below]


def to_channels_last(model: nn.Module, device: torch.device, input_size: tuple[int, int] | None = None) -> int:
    """Channels_last weights; on the CPU, NCHW for the convolutions on maps under ``NCHW_BELOW_PIXELS``.

    ``input_size`` is the [height, width] the model is fed; without it every convolution
    is channels_last. Returns how many convolutions were kept NCHW.
    """
    model.to(memory_format=torch.channels_last)
    if device.type != "cpu" or input_size is None:
        return 0
    small = small_map_convolutions(model, input_size, NCHW_BELOW_PIXELS)
    for conv in small:
        conv.to(memory_format=torch.contiguous_format)
        conv.register_forward_pre_hook(_contiguous_input)
    return len(small)
