"""What the model predicts: all 40 attributes, a subset, or one binary target derived by an expression.

Expressions (``Blond_Hair ^ Eyeglasses``) are those of ``faceattrs.core.expressions``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from faceattrs.core import expressions
from faceattrs.data.celeba import ATTRIBUTES, POSITIVE_RATES


@dataclass(frozen=True)
class Targets:
    names: tuple[str, ...]
    expression: str | None = None

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """int8 0/1 targets, one column per name, from a frame with the 40 attribute columns."""
        if self.expression is None:
            return frame[list(self.names)].to_numpy(np.int8)
        value = expressions.evaluate(self.expression, frame).astype(np.int8)
        return np.where(expressions.known(self.expression, frame), value, -1).astype(np.int8)[:, None]

    @property
    def attributes(self) -> tuple[str, ...]:
        """The published attributes the targets are made of."""
        if self.expression is None:
            return self.names
        return expressions.names(self.expression)

    def positive_rates(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Positive rate per target: from ``frame`` when given (its known labels), else CelebA's published rates."""
        if frame is not None:
            values = self.labels(frame)
            known = values >= 0
            return (values * known).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
        if self.expression is not None:
            raise ValueError("a derived target has no published rate; pass the training labels")
        return np.array([POSITIVE_RATES[n] for n in self.names])


def from_params(attributes: list[str] | None, expression: str | None) -> Targets:
    if expression is not None:
        expressions.check(expression, "target.expression")  # refused before any training starts
        return Targets((expression.replace(" ", ""),), expression)
    return Targets(tuple(attributes) if attributes else ATTRIBUTES)
