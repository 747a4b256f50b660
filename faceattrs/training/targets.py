"""What the model predicts: all 40 attributes, a subset, or one binary target derived by an expression.

An expression combines attribute names with ``^`` (xor), ``&``, ``|``, ``~``,
``and``, ``or``, ``not`` and parentheses, e.g. ``Blond_Hair ^ Eyeglasses``. It is
parsed with ``ast``, never evaluated as Python.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faceattrs.core.errors import InputError
from faceattrs.data.celeba import ATTRIBUTES, POSITIVE_RATES


@dataclass(frozen=True)
class Targets:
    names: tuple[str, ...]
    expression: str | None = None

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """int8 0/1 targets, one column per name, from a frame with the 40 attribute columns."""
        if self.expression is None:
            return frame[list(self.names)].to_numpy(np.int8)
        return _evaluate(ast.parse(self.expression, mode="eval").body, frame).astype(np.int8)[:, None]

    @property
    def attributes(self) -> tuple[str, ...]:
        """The published attributes the targets are made of."""
        if self.expression is None:
            return self.names
        tree = ast.parse(self.expression, mode="eval")
        return tuple(sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}))

    def positive_rates(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Positive rate per target: from ``frame`` when given, else CelebA's published rates."""
        if frame is not None:
            return self.labels(frame).mean(axis=0)
        if self.expression is not None:
            raise ValueError("a derived target has no published rate; pass the training labels")
        return np.array([POSITIVE_RATES[n] for n in self.names])


_BINARY = {ast.BitXor: np.logical_xor, ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or}
_BOOL = {ast.And: np.logical_and, ast.Or: np.logical_or}


def _evaluate(node: ast.AST, frame: pd.DataFrame) -> np.ndarray:
    if isinstance(node, ast.Name):
        if node.id not in ATTRIBUTES:
            raise InputError(f"target.expression: unknown attribute {node.id!r}")
        return frame[node.id].to_numpy().astype(bool)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left, frame), _evaluate(node.right, frame))
    if isinstance(node, ast.BoolOp) and type(node.op) in _BOOL:
        values = [_evaluate(v, frame) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = _BOOL[type(node.op)](out, v)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.Not)):
        return ~_evaluate(node.operand, frame)
    raise InputError(
        f"target.expression: unsupported syntax {ast.unparse(node)!r}; "
        "use attribute names with ^ & | ~ and or not and parentheses"
    )


def from_params(attributes: list[str] | None, expression: str | None) -> Targets:
    if expression is not None:
        tree = ast.parse(expression, mode="eval")
        _evaluate(tree.body, pd.DataFrame({a: np.zeros(1, dtype=np.int8) for a in ATTRIBUTES}))  # validate early
        return Targets((expression.replace(" ", ""),), expression)
    return Targets(tuple(attributes) if attributes else ATTRIBUTES)
