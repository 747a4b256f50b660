"""The ``dedupe`` section: duplicates, unreadable and faceless images, label conflicts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from faceattrs.core.params.base import MACHINE, Section


class DedupeParams(Section):
    """Duplicates, unreadable images and label conflicts."""

    hash_size: int = Field(8, ge=4, le=16)
    max_distance: int = Field(
        8, ge=0, le=16, description="largest perceptual-hash Hamming distance that proposes a near duplicate"
    )
    max_difference: float = Field(
        80.0,
        ge=0,
        description="largest smoothed colour difference (grey levels) of a registered pair that is the same photo",
    )
    max_difference_ratio: float = Field(
        6.0,
        gt=0,
        description="largest ratio of that difference to the pair's typical one: a local change is another photo",
    )
    max_thumbnail_difference: float = Field(
        25.0,
        gt=0,
        description="mean colour difference (grey levels) of 10x8 thumbnails over which a proposed pair is another "
        "photo, without the full comparison",
    )
    conflict_policy: Literal["drop", "majority", "first"] = Field(
        "majority", description="what a duplicate group whose labels disagree keeps"
    )
    no_face_policy: Literal["drop", "report", "off"] = Field(
        "drop", description="images where no face is found: dropped, only listed, or not looked for"
    )
    min_face_score: float = Field(
        -0.9,
        description="dlib HOG margin (the better of the image and its mirror) under which an image has no face; "
        "dlib's own call of a face is 0",
    )
    workers: int = Field(0, ge=0, description="0: one per core", json_schema_extra=MACHINE)
    sample_groups: int = Field(12, ge=0, description="duplicate groups drawn on the contact sheet")

    @field_validator("no_face_policy", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value):
        # YAML 1.1 (PyYAML, and DVC's `-S`) reads a bare `off` as false.
        return "off" if value is False else value
