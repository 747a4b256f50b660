"""Models: a timm backbone (timm is the backbone registry) under one of three attribute heads.

A model's signature travels in its files (``faceattrs.training.checkpoints``): a file
from another backbone, head or target set is refused with a message saying what differs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

from faceattrs.core.errors import InputError, UnknownChoice, choose
from faceattrs.core.params import ModelParams
from faceattrs.training import backbones  # noqa: F401  registers faceattrs's backbones with timm


def linear_head(features: int, outputs: int, params: ModelParams) -> nn.Module:
    return nn.Sequential(nn.Dropout(params.dropout), nn.Linear(features, outputs))


def mlp_head(features: int, outputs: int, params: ModelParams) -> nn.Module:
    """Linear, BatchNorm, ReLU, Dropout, Linear: the head of an EfficientNet-B0 recipe."""
    return nn.Sequential(
        nn.Linear(features, params.head_hidden),
        nn.BatchNorm1d(params.head_hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(params.dropout),
        nn.Linear(params.head_hidden, outputs),
    )


class PerAttributeHead(nn.Module):
    """One small binary classifier per attribute, as a MobileNetV2 recipe used."""

    def __init__(self, features: int, outputs: int, params: ModelParams):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(params.dropout), nn.Linear(features, 1)) for _ in range(outputs)
        )

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=1)


HEADS: dict[str, Callable[[int, int, ModelParams], nn.Module]] = {
    "linear": linear_head,
    "mlp": mlp_head,
    "per_attribute": PerAttributeHead,
}


class AttributeNet(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.backbone, self.head = backbone, head
        self._frozen = frozen

    def forward(self, x):
        return self.head(self.backbone(x))

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:  # frozen blocks keep their BatchNorm statistics too
            module.eval()
        return self


# A name in timm's registry, with an optional weights tag. A source prefix (hf-hub:, local-dir:) makes timm
# read a config from the network or a folder, which a model file could not be rebuilt from offline.
_REGISTRY_NAME = re.compile(r"\w+(\.\w+)?", re.ASCII)


def in_registry(name: str) -> bool:
    """Whether ``name`` is a model in timm's registry (with an optional weights tag), not a source to read."""
    return bool(_REGISTRY_NAME.fullmatch(name)) and timm.is_model(name)


def check_backbone(params: ModelParams) -> None:
    """Refuse a backbone timm does not have, or ImageNet weights it has nowhere to fetch, before building it.

    Asked of timm's registry, not read from the text of its errors, which may change between releases.
    """
    name, architecture = params.backbone, params.backbone.split(".")[0]
    if ":" in name:
        raise UnknownChoice(
            f"model.backbone: {name!r} names a source, not a model in timm's registry; faceattrs builds registry "
            "models only (for weights on disk, set model.weights)"
        )
    if not in_registry(name):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=6, cutoff=0.6)
        raise UnknownChoice(f"model.backbone: timm has no model {name!r}; similar: {', '.join(close)}")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # the registry's one refusal here: a tag the architecture does not have
        tags = timm.list_pretrained(architecture + ".*")
        raise UnknownChoice(
            f"model.backbone: timm has no weights tagged {name!r}; tagged: {', '.join(tags) or 'none'}"
        ) from None
    if params.pretrained and not params.weights and not (cfg and (cfg.hf_hub_id or cfg.url or cfg.file)):
        raise InputError(
            f"model.pretrained: timm has no ImageNet weights for {name}; choose a backbone "
            "that has them (model.backbone resnet10t is the full-width resnet10t), or set model.weights"
        )


def create_backbone(params: ModelParams) -> nn.Module:
    check_backbone(params)
    kwargs = {**(params.backbone_args or {}), "num_classes": 0}
    if params.weights:
        path = Path(params.weights)
        if not path.is_file():
            raise InputError(f"model.weights: {path} does not exist")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path), "hf_hub_id": None, "url": None}
    try:
        return timm.create_model(params.backbone, pretrained=params.pretrained or bool(params.weights), **kwargs)
    except TypeError as err:  # a keyword the model's constructor does not take
        if not params.backbone_args:
            raise
        raise InputError(
            f"model.backbone_args: {params.backbone} does not take {params.backbone_args} ({err})"
        ) from None


def build_model(params: ModelParams, outputs: int) -> AttributeNet:
    make_head = choose(HEADS, params.head, "head")
    backbone = create_backbone(params)
    # What the backbone returns: past its pooling, mobilenetv3, lcnet and ghostnet widen the features
    # again (head_hidden_size), so num_features alone would size the head wrong for them.
    features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    head = make_head(features, outputs, params)
    blocks = [m for name, m in backbone.named_children()]
    if params.freeze_blocks > len(blocks):
        raise InputError(
            f"model.freeze_blocks is {params.freeze_blocks} but {params.backbone} has {len(blocks)} blocks"
        )
    frozen = blocks[: params.freeze_blocks]
    for module in frozen:
        module.requires_grad_(False)
    return AttributeNet(backbone, head, frozen)


# model.normalization: the input's mean and std, besides the backbone's own (timm's config for it).
NORMALIZATIONS = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "half": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}


def normalization(model: AttributeNet, choice: str = "timm") -> tuple[list[float], list[float]]:
    """The mean and std for the input: timm's config for this backbone, or a fixed choice."""
    if choice == "timm":
        config = timm.data.resolve_model_data_config(model.backbone)
        return list(config["mean"]), list(config["std"])
    return choose(NORMALIZATIONS, choice, "model.normalization")


def signature(params: ModelParams, target_names: tuple[str, ...]) -> dict:
    """What must match for a checkpoint to load into a model."""
    return {
        "backbone": params.backbone,
        # As JSON has it (tuples are lists in model.pt); None when empty, as in checkpoints from before it existed.
        "backbone_args": params.model_dump(mode="json")["backbone_args"] or None,
        "head": params.head,
        "head_hidden": params.head_hidden if params.head == "mlp" else None,
        "targets": list(target_names),
    }


def check_signature(found: dict, expected: dict, path: Path) -> None:
    diffs = [
        f"{k}: checkpoint has {found.get(k)!r}, params ask for {v!r}" for k, v in expected.items() if found.get(k) != v
    ]
    if diffs:
        raise InputError(f"{path}: checkpoint does not fit this model ({'; '.join(diffs)})")
