"""The ``loss`` section: the training loss and its weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faceattrs.core.params.base import Section, attribute_names


class LossParams(Section):
    """The training loss."""

    name: Literal["bce", "focal", "mse"] = Field("focal", description="focal with gamma 0 is exactly BCE")
    gamma: float = Field(0.0, ge=0)
    alpha: float | Literal["frequency"] | None = Field(None, description='a value, "frequency", or null')
    alpha_rare: float = Field(0.75, ge=0, le=1, description="focal alpha of attributes rarer than rare_below")
    alpha_common: float = Field(0.25, ge=0, le=1)
    rare_below: float = Field(0.25, gt=0, lt=1)
    weighting: Literal["none", "frequency", "positive_ratio"] = Field(
        "none",
        description="weights of each attribute's positives and negatives from its positive ratio p: frequency by "
        "the inverse of their share (0.5/p, 0.5/(1-p)), positive_ratio by their share (2p, 2(1-p))",
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    group: str | None = Field(None, description="an attribute whose positive images' loss weighs group_weight")
    group_weight: float = Field(
        1.0, gt=0, description="the loss weight of images in `group` (others weigh 1): a penalty on one group's errors"
    )

    @field_validator("group")
    @classmethod
    def _group_is_an_attribute(cls, value: str | None) -> str | None:
        return None if value is None else attribute_names([value], "loss.group")[0]
