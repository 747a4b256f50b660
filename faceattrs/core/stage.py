"""What every stage command shares: its argument parser, params loading, and one-line exits on bad input."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from faceattrs.core.errors import InputError
from faceattrs.core.params import Params, load_params


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


class Undeclared:
    """A params section a stage does not declare: reading it is a bug, since DVC would not rerun the stage on it."""

    def __init__(self, section: str, declared: tuple[str, ...]):
        self._section, self._declared = section, declared

    def __getattr__(self, name: str):
        if name.startswith("__"):  # copy, pickle and friends probe for special methods
            raise AttributeError(name)
        raise RuntimeError(
            f"params section {self._section!r} read by a stage that declares only {', '.join(self._declared)} "
            "(its PARAMS, which dvc.yaml lists): add it there, then `python -m tools.stage_deps --write`"
        )


def params_of(args: argparse.Namespace, declared: tuple[str, ...]) -> Params:
    """params.yaml, validated whole, with only the ``declared`` sections (a stage's ``PARAMS``) readable.

    A dotted key (``evaluate.tta``) makes its section readable.
    """
    params = load_params(args.params)
    sections = {key.split(".")[0] for key in declared}
    hidden = {name: Undeclared(name, declared) for name in type(params).model_fields if name not in sections}
    return params.model_copy(update=hidden)


def declared_values(params: Params, declared: tuple[str, ...]) -> dict:
    """The values of the ``declared`` params keys, as JSON has them: what a stage's outputs record."""
    out = {}
    for key in declared:
        section, _, field = key.partition(".")
        dumped = getattr(params, section).model_dump(mode="json")
        out[key] = dumped[field] if field else dumped
    return out


def show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and os.environ.get("FACEATTRS_PROGRESS", "1") != "0"


def run(main: Callable[[], None], name: str) -> None:
    """Run a command's main: bad input exits 1 with one line naming file and line (FACEATTRS_DEBUG=1 for the
    traceback); any other exception is a bug and propagates with its traceback."""
    try:
        main()
    except InputError as err:
        if os.environ.get("FACEATTRS_DEBUG"):
            raise
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(1)
