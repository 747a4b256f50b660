"""Published CelebA recipes as params overrides: each YAML file here becomes one ``dvc exp run -S ...``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from faceattrs.core.errors import UnknownChoice
from faceattrs.core.params import Params, ParamsError, parse_params

# Package data, so an installed faceattrs has its recipes wherever it runs.
RECIPE_DIR = Path(__file__).resolve().parent


def available(folder: Path = RECIPE_DIR) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load(name: str, folder: Path = RECIPE_DIR) -> dict:
    recipes = available(folder)
    if name not in recipes:
        raise UnknownChoice(f"unknown recipe {name!r}; valid: {', '.join(recipes)}")
    return yaml.safe_load(recipes[name].read_text())


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(base.get(key) or {}, value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return out


def resolve(name: str, params_file: Path, extra: Sequence[str] = (), folder: Path = RECIPE_DIR) -> Params:
    """The params a recipe runs with: params.yaml with the recipe's overrides, then ``extra``, validated.

    ``extra`` are ``-S`` overrides, applied by DVC's own parser so they mean here
    what they will mean to ``dvc exp run``.
    """
    raw = _merge(yaml.safe_load(params_file.read_text()), load(name, folder))
    if extra:
        from dvc.exceptions import InvalidArgumentError
        from dvc.utils.hydra import apply_overrides

        with tempfile.TemporaryDirectory(prefix="faceattrs-recipe-") as tmp:
            merged = Path(tmp) / "params.yaml"
            merged.write_text(yaml.safe_dump(raw, sort_keys=False))
            for item in extra:  # one by one, so an error names the override that caused it
                try:
                    apply_overrides(str(merged), [item])
                except InvalidArgumentError as err:
                    raise ParamsError(f"recipe {name}: -S {item}: {err.__cause__ or err}") from None
            raw = yaml.safe_load(merged.read_text())
    return parse_params(raw, f"recipe {name}")


def overrides(recipe: dict, prefix: str = "") -> list[str]:
    """``-S`` values: one per leaf, in Hydra's override syntax that ``dvc exp run`` reads."""
    out = []
    for key, value in recipe.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not _is_leaf_section(path):
            out += overrides(value, path + ".")
        else:
            out.append(f"{path}={_hydra(value)}")
    return out


def _is_leaf_section(path: str) -> bool:
    """Optional sections that are null in params.yaml must be set whole, not key by key."""
    return path in {"augment.affine", "augment.random_resized_crop", "augment.color_jitter", "model.backbone_args"}


def _hydra(value) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if any(c in value for c in " ^|&,") else value
    return str(value)


def command(name: str, extra: Sequence[str] = (), folder: Path = RECIPE_DIR) -> list[str]:
    """``dvc exp run`` with the recipe's overrides, then ``extra``.

    DVC applies them in order, as ``resolve`` does: a value in ``extra`` replaces the
    recipe's, a section (``{...}``) is merged into the recipe's.
    """
    return ["dvc", "exp", "run", "-n", name] + [
        arg for o in [*overrides(load(name, folder)), *extra] for arg in ("-S", o)
    ]
