"""The library's functions stay short and narrow enough to read at once: none over 80 lines or 8 parameters."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

MAX_LINES = 80
MAX_PARAMETERS = 8


def _functions():
    for path in sorted((REPO / "faceattrs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield f"{path.relative_to(REPO)}:{node.lineno} {node.name}", node


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [f"*{a.arg}" for a in (args.vararg, args.kwarg) if a is not None]
    # The receiver is not a parameter a caller passes.
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_the_functions_are_found():
    found = dict(_functions())
    assert len(found) > 300, "the walk missed the library"
    assert any(name.endswith(" train") for name in found)


@pytest.mark.parametrize(("limit", "measure"), [(MAX_LINES, "lines"), (MAX_PARAMETERS, "parameters")])
def test_no_function_is_over_the_limit(limit, measure):
    over = {}
    for where, node in _functions():
        size = node.end_lineno - node.lineno + 1 if measure == "lines" else len(_parameters(node))
        if size > limit:
            over[where] = size
    assert not over, f"over {limit} {measure} (split them, or pass one typed value): {over}"


def test_the_measure_counts_what_a_caller_passes():
    tree = ast.parse("class A:\n    def f(self, a, /, b, *rest, c, **more):\n        return a\n")
    method = tree.body[0].body[0]
    assert _parameters(method) == ["a", "b", "c", "*rest", "*more"]
    assert method.end_lineno - method.lineno + 1 == 2
