"""The ``schedule`` section: the learning-rate schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from faceattrs.core.params.base import Monitor, Section


class ScheduleParams(Section):
    """The learning-rate schedule: warmup, floor, and the step and plateau settings."""

    name: Literal["none", "onecycle", "cosine", "plateau", "step"] = "cosine"
    warmup_epochs: float = Field(0.5, ge=0)
    min_lr: float = Field(0.0, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    step_epochs: int = Field(5, ge=1)
    monitor: Monitor | None = Field(None, description="what the plateau schedule reads; null: train.monitor")
