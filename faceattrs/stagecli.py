"""What every stage command shares: its argument parser, params loading and clean error exits."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

from faceattrs.celeba import FormatError
from faceattrs.params import Params, ParamsError, load_params

# Errors that describe bad input: shown as one clear line, not a traceback.
USER_ERRORS = (FormatError, ParamsError, ValueError, FileNotFoundError, RuntimeError, FloatingPointError)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def params_of(args: argparse.Namespace) -> Params:
    return load_params(args.params)


def show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and os.environ.get("FACEATTRS_PROGRESS", "1") != "0"


def run(main: Callable[[], None], name: str) -> None:
    """Run a stage's main; a bad-input error exits 1 with one line naming file and line."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("FACEATTRS_DEBUG"):
            traceback.print_exc()
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(1)
