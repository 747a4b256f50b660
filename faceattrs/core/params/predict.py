"""The ``predict`` section: what the predict stage scores."""

from __future__ import annotations

from pydantic import Field

from faceattrs.core.params.base import Section


class PredictParams(Section):
    """What the predict stage scores."""

    source: str = Field(
        "test",
        description="test (the cleaned test split's shards), official_test (the official test partition whole, "
        "labels as published) or a folder of images",
    )
