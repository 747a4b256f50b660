"""The ``optimizer`` section: the optimizer and its settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from faceattrs.core.params.base import Section


class OptimizerParams(Section):
    """The optimizer and its settings."""

    name: Literal["sgd", "adam", "adamw", "adamax"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    fused: bool = Field(
        True,
        description="torch's fused kernel for sgd, adam and adamw on the CPU and GPUs, in place of its Python loop "
        "over the weights; the same update up to rounding (adamax has none)",
    )
