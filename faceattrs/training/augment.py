"""Augmentations on uint8 batches already on the device, random per sample, from one generator.

Flip, affine, random resized crop and centre crop compose into one affine map per
sample, so each image is resampled once (``grid_sample``); colour jitter, noise and
erasing are tensor operations; MixUp mixes the batch and its labels. Written by hand
because torchvision's batched transforms draw one random parameter per batch, not
per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceattrs.core.errors import choose
from faceattrs.core.params import AugmentParams

# The registry: what each name switches on in AugmentParams (used by tests and docs).
AUGMENTATIONS = {
    "hflip": {"hflip": 0.5},
    "alternating_flip": {"hflip": 0.5, "flip_order": "alternate"},
    "affine": {"affine": {"degrees": 10, "translate": 0.05, "scale": (0.9, 1.1)}},
    "affine_sometimes": {"affine": {"degrees": 10, "translate": 0.05, "scale": (0.9, 1.1), "p": 0.5}},
    "random_resized_crop": {"random_resized_crop": {"scale": (0.7, 1.0), "ratio": (0.75, 1.333)}},
    "center_crop": {"center_crop": (48, 40)},
    "random_crop": {"random_crop": (32, 24)},
    "eval_crop": {"eval_crop": (32, 24)},
    "color_jitter": {"color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05}},
    "pca_lighting": {"pca_lighting": 0.1},
    "noise": {"noise_std": 0.05},
    "erasing": {"erasing": 0.5},
    "mixup": {"mixup_alpha": 0.2},
    "mixup_on_loss": {"mixup_alpha": 0.2, "mixup_on": "loss"},
}


# The augment keys that crop: each applies in evaluation too (random_crop as its centre crop), so a model
# file keeps them (its eval_geometry) and a recipe scaled to another size scales them.
CROPS = ("center_crop", "random_crop", "eval_crop")


def only(name: str) -> AugmentParams:
    """Params with just the named augmentation on."""
    return AugmentParams(**{"hflip": 0.0, **choose(AUGMENTATIONS, name, "augmentation")})


def _uniform(gen, n, low, high, device):
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def output_size(params: AugmentParams, height: int, width: int, train: bool = True) -> tuple[int, int]:
    """The size geometric() gives: a fixed crop's, evaluation's own crop's, or the input's."""
    crop = params.center_crop or params.random_crop or (None if train else params.eval_crop)
    return tuple(crop) if crop else (height, width)


def model_input_size(
    input_size: tuple[int, int] | None, params: AugmentParams, stored: tuple[int, int]
) -> tuple[int, int]:
    """The [height, width] the model is fed in training from shard images of size ``stored``: ``model.input_size``
    where set, else what the augmentations give."""
    return tuple(input_size or output_size(params, *stored))


def scaled_size(size: tuple[int, ...], factor: float) -> tuple[int, ...]:
    """``size`` times ``factor``, at least 8 pixels a side: a resnet's stem and pooling need that many."""
    return tuple(max(8, round(v * factor)) for v in size)


def epoch_flips(params: AugmentParams, n: int, seed: int, epoch: int) -> torch.Tensor | None:
    """Which of ``n`` training rows are flipped in ``epoch`` under ``flip_order: alternate``; None under random.

    The same random half every even epoch and the other half every odd one, so that
    each pair of epochs shows every image both ways (airbench's alternating flip).
    """
    if params.flip_order != "alternate" or not params.hflip:
        return None
    half = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return half ^ bool(epoch % 2)


def geometric(
    x: torch.Tensor,
    params: AugmentParams,
    gen: torch.Generator | None,
    train: bool,
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flip, affine and crops as one resampling; in evaluation only centre crops apply.

    ``random_crop`` is a crop at a random place in training and the centre one in
    evaluation; ``eval_crop`` crops the centre in evaluation only. ``flips`` (per
    image) replaces the random flip: ``epoch_flips``' rows of this batch.
    """
    b, _, h, w = x.shape
    out_h, out_w = output_size(params, h, w, train)
    crops = params.center_crop or params.random_crop or (not train and params.eval_crop)
    active = crops or (train and (params.hflip or params.affine or params.random_resized_crop))
    if not active:
        return x
    dev = x.device
    ones = torch.ones(b, device=dev)
    crop_w, crop_h = ones * out_w, ones * out_h  # pixels of input covered by the output
    # A centred crop starts on a whole pixel, as torchvision's CenterCrop rounds it (an odd margin would blend).
    centre_x = torch.full((b,), round((w - out_w) / 2) - (w - out_w) / 2, device=dev)
    centre_y = torch.full((b,), round((h - out_h) / 2) - (h - out_h) / 2, device=dev)
    angle, zoom, flip = torch.zeros(b, device=dev), ones.clone(), ones.clone()
    shift_x, shift_y = torch.zeros(b, device=dev), torch.zeros(b, device=dev)
    if train and params.random_resized_crop:
        rrc = params.random_resized_crop
        area = _uniform(gen, b, *rrc.scale, dev) * h * w
        ratio = torch.exp(_uniform(gen, b, math.log(rrc.ratio[0]), math.log(rrc.ratio[1]), dev))
        crop_w = torch.sqrt(area * ratio).clamp(max=w)
        crop_h = torch.sqrt(area / ratio).clamp(max=h)
        centre_x = (torch.rand(b, generator=gen, device=dev) - 0.5) * (w - crop_w)
        centre_y = (torch.rand(b, generator=gen, device=dev) - 0.5) * (h - crop_h)
    if train and params.random_crop:
        # Whole-pixel offsets, as torchvision's RandomCrop: the crop is the input's own pixels, not resampled.
        left = torch.floor(torch.rand(b, generator=gen, device=dev) * (w - out_w + 1))
        top = torch.floor(torch.rand(b, generator=gen, device=dev) * (h - out_h + 1))
        centre_x, centre_y = left - (w - out_w) / 2, top - (h - out_h) / 2
    if train and flips is not None:
        flip = torch.where(flips.to(dev), -1.0, 1.0)
    elif train and params.hflip:
        flip = torch.where(torch.rand(b, generator=gen, device=dev) < params.hflip, -1.0, 1.0)
    if train and params.affine:
        a = params.affine
        angle = _uniform(gen, b, -a.degrees, a.degrees, dev) * math.pi / 180
        zoom = _uniform(gen, b, *a.scale, dev)
        shift_x = _uniform(gen, b, -a.translate, a.translate, dev) * w
        shift_y = _uniform(gen, b, -a.translate, a.translate, dev) * h
        if a.p < 1:  # the others keep the identity
            on = torch.rand(b, generator=gen, device=dev) < a.p
            angle, shift_x, shift_y = angle * on, shift_x * on, shift_y * on
            zoom = torch.where(on, zoom, 1.0)
    # Output pixel q (from the output centre) -> input pixel p: p = R(angle) / zoom * flip * S q + shift + centre.
    sx, sy = crop_w / out_w * flip, crop_h / out_h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * sx * out_w / w, -sin * sy * out_h / w, (shift_x + centre_x) * 2 / w], dim=1),
            torch.stack([sin * sx * out_w / h, cos * sy * out_h / h, (shift_y + centre_y) * 2 / h], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [b, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: torch.Tensor, params: AugmentParams, gen) -> torch.Tensor:
    cj = params.color_jitter
    b, dev = x.shape[0], x.device
    if cj.brightness:
        x = x * _uniform(gen, b, 1 - cj.brightness, 1 + cj.brightness, dev).view(b, 1, 1, 1)
    if cj.contrast:  # towards or away from each image's mean grey, as torchvision's adjust_contrast
        mean = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(b, 1, 1, 1)
        c = _uniform(gen, b, 1 - cj.contrast, 1 + cj.contrast, dev).view(b, 1, 1, 1)
        x = mean + (x - mean) * c
    if cj.saturation:
        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        s = _uniform(gen, b, 1 - cj.saturation, 1 + cj.saturation, dev).view(b, 1, 1, 1)
        x = grey + (x - grey) * s
    if cj.hue:
        # A hue shift is a rotation of the chroma plane in YIQ space.
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
        phi = _uniform(gen, b, -cj.hue, cj.hue, dev) * 2 * math.pi
        c, s = torch.cos(phi), torch.sin(phi)
        z, o = torch.zeros_like(c), torch.ones_like(c)
        rot = torch.stack([torch.stack([o, z, z], 1), torch.stack([z, c, -s], 1), torch.stack([z, s, c], 1)], 1)
        m = torch.linalg.inv(yiq) @ rot @ yiq
        x = torch.einsum("bij,bjhw->bihw", m, x)
    return x


# ImageNet's RGB covariance, for pixels in [0, 1]: eigenvalues and eigenvectors (columns), as AlexNet's
# PCA lighting noise uses them (the figures of fb.resnet.torch and fastai).
PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


def pca_lighting(x: torch.Tensor, std: float, gen) -> torch.Tensor:
    """AlexNet's lighting noise: each image shifted by eigvec @ (alpha * eigval), alpha ~ N(0, std) per component."""
    b, dev = x.shape[0], x.device
    alpha = torch.randn(b, 3, generator=gen, device=dev) * std
    vectors = torch.tensor(PCA_EIGENVECTORS, device=dev)
    shift = (alpha * torch.tensor(PCA_EIGENVALUES, device=dev)) @ vectors.T
    return x + shift.view(b, 3, 1, 1)


def erase(x: torch.Tensor, p: float, gen) -> torch.Tensor:
    """Random erasing: one rectangle per chosen image, 2-33% of its area, filled with noise."""
    b, _, h, w = x.shape
    dev = x.device
    area = _uniform(gen, b, 0.02, 0.33, dev) * h * w
    ratio = torch.exp(_uniform(gen, b, math.log(0.3), math.log(3.3), dev))
    eh = torch.sqrt(area * ratio).clamp(max=h)
    ew = torch.sqrt(area / ratio).clamp(max=w)
    top = torch.rand(b, generator=gen, device=dev) * (h - eh)
    left = torch.rand(b, generator=gen, device=dev) * (w - ew)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (rows >= top.view(b, 1, 1))
        & (rows < (top + eh).view(b, 1, 1))
        & (cols >= left.view(b, 1, 1))
        & (cols < (left + ew).view(b, 1, 1))
    )
    chosen = (torch.rand(b, generator=gen, device=dev) < p).view(b, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    return torch.where(mask, torch.randn(x.shape, generator=gen, device=dev), x)


def prepare(
    batch: torch.Tensor,
    params: AugmentParams,
    mean: torch.Tensor,
    std: torch.Tensor,
    gen: torch.Generator | None,
    train: bool,
    size: tuple[int, int] | None = None,
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 NCHW -> normalized float NCHW, augmented when ``train``; ``size`` resizes for the model.

    ``flips``: which images to flip, where ``flip_order`` is alternate (``epoch_flips``).
    """
    x = batch.float().div_(255)
    x = geometric(x, params, gen, train, flips)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    if train and params.color_jitter:
        x = color_jitter(x, params, gen)
    if train and params.pca_lighting:
        x = pca_lighting(x, params.pca_lighting, gen)
    if train and params.noise_std:
        x = x + params.noise_std * torch.randn(x.shape, generator=gen, device=x.device)
    x = (x.clamp(0, 1) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    if train and params.erasing:
        x = erase(x, params.erasing, gen)
    return x


def mixup(x: torch.Tensor, alpha: float, gen: torch.Generator | None) -> tuple[torch.Tensor, float, torch.Tensor]:
    """MixUp's images: pairs by a random permutation mixed by lambda ~ Beta(alpha, alpha).

    Returns the mixed batch, lambda and the permutation; the caller mixes the labels
    (``mix_labels``) or the losses of the two label sets.
    """
    beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
    # Beta has no generator argument: draw it from a seed the generator provides, to stay reproducible.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=x.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lam = float(beta.sample())
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    return lam * x + (1 - lam) * x[perm], lam, perm


def mix_labels(y: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    return lam * y + (1 - lam) * y[perm]
