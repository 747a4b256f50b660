"""Why an image is unreadable or dropped: named values, written as categorical columns and read back by name."""

from __future__ import annotations

from enum import StrEnum


class Unreadable(StrEnum):
    """Why an image's bytes give no picture."""

    EMPTY = "empty file"
    NOT_JPEG = "not a JPEG"
    NOT_AN_IMAGE = "not an image"
    CORRUPT = "corrupt"


class Dropped(StrEnum):
    """Why dedupe left an image out of the clean manifest."""

    UNREADABLE = "unreadable"
    EXACT_DUPLICATE = "exact duplicate"
    NEAR_DUPLICATE = "near duplicate"
    CONFLICT = "duplicate group with conflicting labels (policy drop)"
    NO_FACE = "no face found"


def categorical(values, kind: type[StrEnum]):
    """A pandas categorical of ``values`` (members of ``kind``) whose categories are all of ``kind``'s values."""
    import pandas as pd

    return pd.Categorical([str(v) for v in values], categories=[str(m) for m in kind])
