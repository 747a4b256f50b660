"""Boolean expressions over attribute names (``Blond_Hair ^ Eyeglasses``), parsed with ``ast``, never run as Python.

An expression combines attribute names with ``^`` (xor), ``&``, ``|``, ``~``,
``and``, ``or``, ``not`` and parentheses. Derived targets and the rules that find
contradictory labels are written in it.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd

from faceattrs.core.attributes import ATTRIBUTES
from faceattrs.core.errors import InputError


def evaluate(expression: str, frame: pd.DataFrame) -> np.ndarray:
    """The expression's value for each row of a frame with the attribute columns, as booleans."""
    return _evaluate(_parse(expression), frame)


def known(expression: str, frame: pd.DataFrame) -> np.ndarray:
    """Rows where every attribute the expression reads has a label: an unknown one (-1, left out by the
    labels stage) would otherwise read as true."""
    return (frame[list(names(expression))] >= 0).all(axis=1).to_numpy()


def names(expression: str) -> tuple[str, ...]:
    """The attributes an expression reads, sorted."""
    return tuple(sorted({_attribute(n) for n in ast.walk(_parse(expression)) if isinstance(n, ast.Name)}))


def check(expression: str, key: str) -> None:
    """Refuse an expression with unknown attributes or syntax, naming the params ``key``."""
    try:
        evaluate(expression, pd.DataFrame({a: np.zeros(1, dtype=np.int8) for a in ATTRIBUTES}))
    except InputError as err:
        raise InputError(f"{key}: {err}") from None


# Attribute names that are not Python identifiers (5_o_Clock_Shadow) are read under an alias.
_ALIASES = {name: f"_{name}" for name in ATTRIBUTES if not name.isidentifier()}
_UNALIASED = {alias: name for name, alias in _ALIASES.items()}
_ALIAS_PATTERN = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, _ALIASES)) + r")(?!\w)") if _ALIASES else None


def _attribute(node: ast.Name) -> str:
    return _UNALIASED.get(node.id, node.id)


def _parse(expression: str) -> ast.AST:
    source = _ALIAS_PATTERN.sub(lambda m: _ALIASES[m.group(1)], expression) if _ALIAS_PATTERN else expression
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError as err:
        raise InputError(f"cannot parse {expression!r}: {err.msg}") from None


_BINARY = {ast.BitXor: np.logical_xor, ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or}
_BOOL = {ast.And: np.logical_and, ast.Or: np.logical_or}


def _evaluate(node: ast.AST, frame: pd.DataFrame) -> np.ndarray:
    if isinstance(node, ast.Name):
        name = _attribute(node)
        if name not in ATTRIBUTES:
            raise InputError(f"unknown attribute {name!r}")
        return frame[name].to_numpy().astype(bool)
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
