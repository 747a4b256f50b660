"""Where a model looks: Grad-CAM for convolutional backbones, attention rollout for vision transformers.

Which method runs follows from the backbone, never from a flag. Grad-CAM
(Selvaraju et al., 2017) weights a feature map by the gradient of one attribute's
logit; attention rollout (Abnar and Zuidema, 2020) multiplies the layers'
attention, so it shows what the class token gathers from, the same for every
attribute. Both are written here because the libraries that do them
(pytorch-grad-cam, captum) are not installed and each is a few lines over timm.
"""

from __future__ import annotations

import difflib

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from scipy.special import expit

from faceattrs.core.errors import InputError

# Grad-CAM reads the deepest stage whose map is at least this many cells on its short
# side: the last stage of a small-input model (80x64 by default: 2.5x2 cells) says little
# about where. On the default model, the stage at 5x4 cells put a median 53% of the
# Eyeglasses map in the eye band (a quarter of the rows), the one at 10x8 43% and noisier.
MIN_CELLS = 4


def is_transformer(backbone: torch.nn.Module) -> bool:
    blocks = getattr(backbone, "blocks", None)
    return hasattr(backbone, "patch_embed") and blocks is not None and hasattr(blocks[0], "attn")


def method(backbone: torch.nn.Module) -> str:
    return "attention rollout" if is_transformer(backbone) else "Grad-CAM"


def saliency(model: torch.nn.Module, x: torch.Tensor, index: int) -> np.ndarray:
    """(N, H, W) maps in [0, 1] at the input's size, for output ``index`` of ``model`` on inputs ``x``."""
    backbone = model.backbone
    maps = _rollout(backbone, x) if is_transformer(backbone) else _grad_cam(model, x, index)
    maps = F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()


def _grad_cam_layer(backbone: torch.nn.Module, size: tuple[int, int]) -> torch.nn.Module:
    info = getattr(backbone, "feature_info", None)
    entries = info.get_dicts() if hasattr(info, "get_dicts") else info
    if not entries:
        raise InputError(f"{type(backbone).__name__}: timm gives no feature stages to take Grad-CAM from")
    usable = [e for e in entries if min(size) / e["reduction"] >= MIN_CELLS] or entries[:1]
    return backbone.get_submodule(usable[-1]["module"])


def _grad_cam(model: torch.nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    layer = _grad_cam_layer(model.backbone, tuple(x.shape[-2:]))
    seen: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _module, _inputs, output: seen.__setitem__("act", output))
    try:
        with torch.enable_grad():
            # Needed for a gradient at the layer when the blocks before it are frozen.
            x = x.detach().requires_grad_(True)
            out = model(x)[:, index].sum()
            # The gradient at the layer only: backward() would also fill every weight's .grad.
            (grad,) = torch.autograd.grad(out, seen["act"])
    finally:
        handle.remove()
    act, grad = seen["act"].detach().float(), grad.float()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * act).sum(dim=1))


def _rollout(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    inputs: list[torch.Tensor] = []
    handles = [b.attn.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for b in backbone.blocks]
    try:
        with torch.no_grad():
            backbone(x)
            rollout = None
            for block, tokens in zip(backbone.blocks, inputs, strict=True):
                attn = block.attn
                n, count, _ = tokens.shape
                qkv = attn.qkv(tokens).reshape(n, count, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
                q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
                weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1).mean(1)
                # Half the residual path, as rollout models the skip connection; rows sum to 1.
                weights = 0.5 * weights + 0.5 * torch.eye(count, device=x.device)
                weights = weights / weights.sum(-1, keepdim=True)
                rollout = weights if rollout is None else weights @ rollout
    finally:
        for h in handles:
            h.remove()
    prefix = getattr(backbone, "num_prefix_tokens", 1)
    patch = backbone.patch_embed.patch_size
    rows, cols = x.shape[-2] // patch[0], x.shape[-1] // patch[1]
    return rollout[:, 0, prefix:].reshape(-1, rows, cols)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """A map over a picture: inferno where the model looks, the picture itself where it does not."""
    height, width = rgb.shape[:2]
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)) / 255
    colour = colormaps["inferno"](heat)[..., :3] * 255
    weight = alpha * heat[..., None]
    return Image.fromarray((rgb * (1 - weight) + colour * weight).astype(np.uint8))


def explain(predictor, aligned: bytes | np.ndarray, attribute: str) -> tuple[float, np.ndarray, np.ndarray]:
    """One aligned face: the attribute's probability, the map, and the picture the network saw (uint8 HxWx3)."""
    if attribute not in predictor.targets:
        close = difflib.get_close_matches(attribute, predictor.targets, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"it predicts {', '.join(predictor.targets)}"
        raise InputError(f"--attribute: the model predicts no {attribute!r}; {hint}")
    index = predictor.targets.index(attribute)
    images = predictor.tensor(aligned)[None]
    x = predictor.inputs(images)
    heat = saliency(predictor.model, x, index)[0]
    probability = float(expit(predictor.logits(images)[0, index]))  # as predict gives it
    return probability, heat, seen_by(predictor, x)[0]


def seen_by(predictor, x: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) uint8: what the network saw (after any centre crop and resize), normalisation undone."""
    mean, std = predictor.mean.view(1, -1, 1, 1), predictor.std.view(1, -1, 1, 1)
    pixels = ((x.detach().float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def explanation_picture(aligned: np.ndarray, seen: np.ndarray, heat: np.ndarray, title: str) -> Image.Image:
    """The aligned face beside the map over what the network saw, both at the aligned face's height, titled."""
    from PIL import ImageDraw, ImageFont

    height = aligned.shape[0]
    width = round(seen.shape[1] * height / seen.shape[0])
    shown = np.asarray(Image.fromarray(seen).resize((width, height), Image.BICUBIC))
    font = ImageFont.load_default(size=13)
    picture = Image.new("RGB", (aligned.shape[1] + width + 12, height + 24), "white")
    picture.paste(Image.fromarray(aligned), (4, 22))
    picture.paste(overlay(shown, heat), (aligned.shape[1] + 8, 22))
    ImageDraw.Draw(picture).text((4, 4), title, fill="black", font=font)
    return picture


def sheet_rows(predictor, data, logits: np.ndarray, labels: np.ndarray, attributes: list[str], per_row: int = 6):
    """Contact-sheet rows for ``reports.pictures.contact_sheet``: per attribute, its surest true positives' maps.

    ``data`` is the split's ShardDataset, ``logits`` and ``labels`` its rows in order.
    """
    import io

    rows = []
    for name in [a for a in attributes if a in predictor.targets]:
        k = predictor.targets.index(name)
        positives = np.flatnonzero((labels[:, k] == 1) & (logits[:, k] > 0))
        chosen = positives[np.argsort(-logits[positives, k], kind="stable")[:per_row]]
        if not len(chosen):
            continue
        x = predictor.inputs(torch.stack([data[int(i)][0] for i in chosen]))
        heat = saliency(predictor.model, x, k)
        cells = []
        for img, m, i in zip(seen_by(predictor, x), heat, chosen, strict=True):
            buffer = io.BytesIO()
            overlay(img, m).save(buffer, format="PNG")
            cells.append((buffer.getvalue(), f"{data.ids[i]}\np={expit(logits[i, k]):.2f}"))
        rows.append((f"{name} ({method(predictor.model.backbone)}): the surest true positives", cells))
    return rows
