"""The ``model`` section: the timm backbone and the attribute head."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from faceattrs.core.params.base import Section


class ModelParams(Section):
    """The network: a timm backbone and an attribute head."""

    backbone: str = Field(
        "resnet10t_075",
        description="any timm model name; resnet10t_075, faceattrs's own, is resnet10t at three quarters of its width",
    )
    backbone_args: dict[str, Any] | None = Field(
        None,
        description="more keyword arguments for timm.create_model, e.g. {drop_path_rate: 0.1}; "
        "a resnet's widths: {stem_width: 16, channels: [32, 64, 128, 256]}",
    )
    pretrained: bool = Field(False, description="ImageNet weights through timm (needs the hub, or model.weights)")
    weights: str | None = Field(None, description="a local weights file for the backbone, for offline machines")
    head: Literal["linear", "mlp", "per_attribute"] = "linear"
    head_hidden: int = Field(512, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    freeze_blocks: int = Field(0, ge=0, description="freeze the backbone's first N top-level blocks")
    input_size: tuple[int, int] | None = Field(
        None, description="[height, width] the model sees; null keeps the shard size"
    )
    normalization: Literal["timm", "imagenet", "half"] = Field(
        "timm", description="the input's mean and std: the backbone's own (timm), ImageNet's, or 0.5 and 0.5"
    )

    @property
    def fixed_image_size(self) -> bool:
        """Whether the backbone is built for one image size: timm's transformers (position embeddings,
        windows) unless made with ``dynamic_img_size``. timm has no flag for this, hence the families."""
        families = ("vit_", "deit", "beit", "eva", "swin", "cait", "levit")
        return self.backbone.startswith(families) and not (self.backbone_args or {}).get("dynamic_img_size")
