"""Errors that mean bad input, which commands show as one line; any other exception is a bug and keeps its traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class InputError(Exception):
    """Input the user can fix (a file, a parameter, an earlier stage's output); the message names it."""


class UnknownChoice(InputError):
    """A name that no registry entry has; the message lists the valid names."""


class Diverged(InputError):
    """Training produced a non-finite loss: the params (learning rate, loss) need changing."""


def choose(registry: Mapping[str, T], name: str, what: str) -> T:
    """``registry[name]``, or an error that lists the valid names of this kind of choice."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownChoice(f"unknown {what} {name!r}; valid: {', '.join(registry)}") from None
