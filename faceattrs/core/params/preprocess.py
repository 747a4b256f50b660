"""The ``preprocess`` section: how images are stored in the Parquet shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faceattrs.core.attributes import IMAGE_HEIGHT, IMAGE_WIDTH
from faceattrs.core.params.base import MACHINE, Section


class PreprocessParams(Section):
    """How the images are stored in the Parquet shards."""

    crop: tuple[int, int, int, int] | None = Field(
        (19, 30, 159, 205),
        description=f"[left, top, right, bottom] on the {IMAGE_WIDTH}x{IMAGE_HEIGHT} image (head to tie); "
        "null keeps it whole",
    )
    size: tuple[int, int] = Field((80, 64), description="[height, width]")
    format: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(90, ge=50, le=100)
    decode: Literal["reduced", "full"] = Field(
        "reduced", description="reduced lets the JPEG decoder scale by 1/2, 1/4 or 1/8 when the crop allows"
    )
    rows_per_shard: int = Field(4096, ge=16)
    workers: int = Field(0, ge=0, description="0: one per core", json_schema_extra=MACHINE)

    @field_validator("crop")
    @classmethod
    def _crop_inside_image(cls, value):
        if value is not None:
            left, top, right, bottom = value
            if not (0 <= left < right <= IMAGE_WIDTH and 0 <= top < bottom <= IMAGE_HEIGHT):
                raise ValueError(
                    f"crop [left, top, right, bottom] must lie inside {IMAGE_WIDTH}x{IMAGE_HEIGHT}, got {list(value)}"
                )
        return value

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value):
        if min(value) < 8:
            raise ValueError(f"size [height, width] must be at least 8 pixels each, got {list(value)}")
        return value
