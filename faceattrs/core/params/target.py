"""The ``target`` section: what the model predicts."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from faceattrs.core.params.base import Section, attribute_names


class TargetParams(Section):
    """What the model predicts."""

    attributes: list[str] | None = Field(None, description="a subset of attribute names; null: all 40")
    expression: str | None = Field(None, description='one derived binary target, e.g. "Blond_Hair ^ Eyeglasses"')

    @field_validator("attributes")
    @classmethod
    def _known(cls, value):
        if value is not None:
            if not value:
                raise ValueError("target.attributes is empty; null means all 40")
            attribute_names(value, "target.attributes")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TargetParams:
        if self.attributes is not None and self.expression is not None:
            raise ValueError("set target.attributes or target.expression, not both")
        return self
