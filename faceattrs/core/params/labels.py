"""The ``labels`` section: the search for wrong training labels and what training sees of them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from faceattrs.core.params.base import Section


class LabelsParams(Section):
    """The search for wrong labels in the training split (the labels stage), and what training sees of them."""

    method: Literal["none", "kfold"] = Field(
        "none",
        description="kfold: out-of-fold models score every training label (minutes); none: only evaluate flags, "
        "on val and test",
    )
    folds: int = Field(3, ge=2, description="folds of identities for kfold")
    epochs: int = Field(3, ge=1, description="epochs of each fold's model")
    policy: Literal["report", "drop", "flip"] = Field(
        "report", description="what training sees of a flagged label: the given one, none, or the other one"
    )
