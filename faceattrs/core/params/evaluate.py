"""The ``evaluate`` section: evaluation on val and test."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faceattrs.core.params.base import Section, attribute_names


class EvaluateParams(Section):
    """Evaluation on val and test."""

    thresholds: Literal["fixed", "tuned"] = Field(
        "fixed",
        description="fixed is probability 0.5; tuned is tuned on val and applied to test (for real CelebA's val)",
    )
    tta: Literal["none", "flip"] = Field(
        "flip", description="test-time augmentation: flip averages each image's logits with its mirror image's"
    )
    fair_group: str = Field("Male", description="the attribute that splits people for the group-fair score")
    curves_for: list[str] = Field(
        default_factory=lambda: ["Smiling", "Eyeglasses", "Male", "Bald", "Young"],
        description="attributes with ROC, precision-recall and confusion plots",
    )

    @field_validator("fair_group")
    @classmethod
    def _group_is_an_attribute(cls, value: str) -> str:
        return attribute_names([value], "evaluate.fair_group")[0]

    @field_validator("curves_for")
    @classmethod
    def _curves_ofattribute_names(cls, value: list[str]) -> list[str]:
        return attribute_names(value, "evaluate.curves_for")
