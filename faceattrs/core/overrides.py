"""Params overrides (``dvc exp run -S KEY=VALUE``): checked here, one params key each, before anything runs them.

DVC's ``-S`` is more than a params setting: a file prefix (``dvc.yaml:stages.s.cmd=...``)
rewrites any file DVC reads, so a stage's command too, and Hydra's ``+``, ``++`` and ``~``
add or delete keys. Overrides reach DVC from the command line, from flow runs created
through a Prefect server, from recipes and from sweep grids; each passes ``check`` where
it is submitted and again where DVC runs it. What passes names a key of the params
schema (``loss.gamma``, ``augment.affine.degrees``) in Hydra's plain ``key=value`` form
with one value; the value is anything Hydra reads (lists, dicts, quoted strings, null)
but an interpolation (``${oc.env:...}`` would copy the machine's environment into the
experiment).
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterable

from pydantic import BaseModel

from faceattrs.core.errors import InputError
from faceattrs.core.params import Params

# A dotted key of plain names: no file prefix (``file.yaml:``), no Hydra ``+``/``++``/``~``, no ``@package``.
PLAIN_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class BadOverride(InputError):
    """A params override that is not one plain ``key=value`` setting of a params schema key."""


def check(override: str, option: str = "-S") -> str:
    """``override`` itself if it sets one known params key in Hydra's plain form; else BadOverride naming it and why.

    ``option`` is how the user gave it (``-S``, ``-g``, ``grid``), for the message.
    """
    key, sep, value = override.partition("=")

    def refuse(why: str) -> BadOverride:
        return BadOverride(f"{option} {override}: {why}")

    if ":" in key:  # where DVC looks for a file prefix: before the first '='
        raise refuse("a file prefix is not accepted: an override sets a key of params.yaml, nothing else")
    if key.startswith(("+", "~")):
        raise refuse("Hydra's +, ++ and ~ are not accepted: an override changes a key params.yaml has")
    if not sep:
        raise refuse("expected KEY=VALUE")
    if not PLAIN_KEY.fullmatch(key):
        raise refuse(f"{key!r} is not a dotted params key (letters, digits, underscores and dots)")
    unknown = _unknown(key)
    if unknown:
        raise refuse(unknown)
    if "${" in value:
        raise refuse("an interpolation (${...}) is not accepted: give the value itself")
    _parsed(override, refuse)
    return override


def check_all(overrides: Iterable[str], option: str = "-S") -> list[str]:
    """Each of ``overrides`` checked (``check``); the first bad one raises."""
    return [check(override, option) for override in overrides]


def _parsed(override: str, refuse) -> None:
    """Raise unless Hydra, as DVC calls it, reads ``override`` as one change of one value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType, ValueType
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(override)
    except HydraException as err:
        raise refuse(f"not an override Hydra reads ({str(err).splitlines()[0]}); quote the value") from None
    if parsed.type != OverrideType.CHANGE or parsed.package is not None:
        raise refuse("not a plain key=value change")
    if parsed.value_type != ValueType.ELEMENT:
        raise refuse("one value, not a sweep: put the values to sweep in a grid (-g KEY=[V1,V2])")


def _unknown(key: str) -> str | None:
    """Why ``key`` is no key of the params schema, or None when it is one."""
    model: type[BaseModel] = Params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "params.yaml's top level"
            return f"unknown params key {key}; valid keys of {where}: {', '.join(model.model_fields)}"
        inner = _section(field.annotation)
        if inner is not None:
            model = inner
        elif _is_mapping(field.annotation):
            return None  # a free mapping's own keys (label_noise, backbone_args): its field checks them
        elif depth < len(parts) - 1:
            return f"unknown params key {key}: {'.'.join(parts[: depth + 1])} is a value, not a section"
    return None


def _section(annotation) -> type[BaseModel] | None:
    """The section model a field holds (``AffineParams | None`` holds AffineParams), or None."""
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_mapping(annotation) -> bool:
    return any(typing.get_origin(candidate) is dict for candidate in _alternatives(annotation))


def _alternatives(annotation) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def hydra_value(value) -> str:
    """A params value (as JSON has it) in Hydra's override syntax, as ``dvc exp run -S key=VALUE`` reads it."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if value is None:  # Hydra's null: a recipe's `crop: null` keeps the whole image
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # Hydra reads a bare word as it is; anything else (~Male, a ^ b) needs quotes
        return value if re.fullmatch(r"[\w.\-/]+", value) else json.dumps(value)
    return str(value)
