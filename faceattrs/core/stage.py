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


def params_of(args: argparse.Namespace) -> Params:
    return load_params(args.params)


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
