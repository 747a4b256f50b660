"""What every params section shares: the frozen base model, the error, shared choices and attribute-name checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from faceattrs.core.attributes import ATTRIBUTES
from faceattrs.core.errors import InputError


class ParamsError(InputError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A field of the machine a run happens on, not of the experiment: recipes keep the user's value
# (faceattrs.recipes), as they keep the whole data section.
MACHINE = {"machine": True}

# What picks the kept epoch, early stopping and the plateau schedule read (train.monitor, schedule.monitor).
Monitor = Literal["val_accuracy", "val_loss", "train_val_gap"]


def attribute_names(names: list[str], key: str) -> list[str]:
    """``names`` if every one is a CelebA attribute, else an error naming ``key`` and the valid names."""
    unknown = [a for a in names if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown} in {key}; valid: {', '.join(ATTRIBUTES)}")
    return names
