"""The ``split`` section: the train/val/test assignment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faceattrs.core.params.base import Section


class SplitParams(Section):
    """Train/val/test assignment."""

    method: Literal["official", "random", "identity"] = "official"
    ratios: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, val, test for random and identity")
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _ratios_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"train/val/test ratios must be non-negative and sum to 1, got {list(value)}")
        return value
