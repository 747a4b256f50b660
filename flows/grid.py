"""A sweep's grid: its entries parsed, its points, their experiment names and ``-S`` values, each checked.

Pure Python (no Prefect), so the command line checks a grid before it reaches a server.
"""

from __future__ import annotations

import itertools
import json
import re

from faceattrs.core.overrides import check, check_all, hydra_value


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["loss.gamma=[0,1,2]", "augment.mixup_alpha=0.2"]`` as {key: values}; values are YAML/JSON scalars."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"grid entry {spec!r}: expected key=[v1,v2,...] or key=value")
        text = values.strip()
        try:
            parsed = json.loads(text if text.startswith("[") else f"[{text}]")
        except json.JSONDecodeError:
            parsed = [v.strip() for v in text.strip("[]").split(",") if v.strip()]
        if not parsed:
            raise ValueError(f"grid entry {spec!r}: no values")
        grid[key.strip()] = parsed
    return grid


def points(grid: dict[str, list]) -> list[dict]:
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(prefix: str, point: dict) -> str:
    """A DVC experiment name from the point's values (letters, digits, dashes)."""
    parts = [f"{key.split('.')[-1]}{value}" for key, value in point.items()]
    return re.sub(r"[^A-Za-z0-9-]+", "-", "-".join([prefix, *parts])).strip("-").lower()


def point_overrides(fixed: list[str], point: dict) -> list[str]:
    """A point's ``-S`` values: the settings every point shares, then the point's own."""
    return [*fixed, *(f"{key}={hydra_value(value)}" for key, value in point.items())]


def checked(specs: list[str], fixed: list[str]) -> dict[str, list]:
    """The grid of ``specs``, once ``fixed`` and every value of the grid pass the overrides check (BadOverride)."""
    check_all(fixed, "-S")
    grid = parse_grid(specs)
    for key, values in grid.items():
        for value in values:
            check(f"{key}={hydra_value(value)}", "-g")
    return grid
