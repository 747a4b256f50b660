"""Published CelebA recipes as params overrides: each YAML file here becomes one ``dvc exp run -S ...``."""

from __future__ import annotations

import json
import re
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
    if value is None:  # Hydra's null: a recipe's `crop: null` keeps the whole image
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # Hydra reads a bare word as it is; anything else (~Male, a ^ b) needs quotes
        return value if re.fullmatch(r"[\w.\-/]+", value) else json.dumps(value)
    return str(value)


def command(name: str, extra: Sequence[str] = (), folder: Path = RECIPE_DIR) -> list[str]:
    """``dvc exp run`` with the recipe's overrides, then ``extra``.

    DVC applies them in order, as ``resolve`` does: a value in ``extra`` replaces the
    recipe's, a section (``{...}``) is merged into the recipe's.
    """
    return ["dvc", "exp", "run", "-n", name] + [
        arg for o in [*overrides(load(name, folder)), *extra] for arg in ("-S", o)
    ]


# Per recipe, every choice its seed report states and how the recipe takes it (seeds/<name>.yaml).
TABLE_DIR = RECIPE_DIR / "seeds"
STATUSES = ("reproduced", "changed", "not expressible")


def table(name: str, folder: Path = TABLE_DIR) -> dict:
    """The recipe's table of its seed's choices: seed, report, published figure and the choices."""
    path = folder / f"{name}.yaml"
    if not path.exists():
        raise UnknownChoice(f"recipe {name!r} has no table of its seed's choices ({path})")
    return yaml.safe_load(path.read_text())


def value_at(params: Params, key: str):
    """The value of a dotted params key, as JSON has it (lists, not tuples); KeyError if the schema has none."""
    value = params.model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def flat_keys(overrides: dict, prefix: str = "") -> list[str]:
    """The dotted keys a recipe file sets (a section's keys, not the section)."""
    keys = []
    for k, v in overrides.items():
        keys += flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return keys


# The recipes whose backbones (resnext50, resnest50d, vit_small_patch8: 22-28 M parameters) take minutes an
# epoch on a CPU even at a quarter of their size: slow tests, and fewer epochs in bench/recipe_accuracy.py.
HEAVY = ("resnext50-mse-adamax", "resnest50-focal-frequency", "dino-vits8-fair-target")


def scaled(params: Params, factor: float, *, name: str = "recipe", train: dict | None = None) -> Params:
    """A recipe at another scale: every image size and crop times ``factor`` (at least 8 pixels), no
    pretrained weights, one loader process, ``train`` keys changed; every other choice as the recipe makes it.

    For running a recipe where its real size does not fit (a test, a CPU benchmark). A backbone
    built for one image size (a ViT) is built for the scaled size it will see.
    """
    from faceattrs.training.augment import model_input_size, scaled_size

    def times(size):
        return list(scaled_size(size, factor)) if size else None

    raw = params.model_dump(mode="json")
    raw["model"].update(pretrained=False, weights=None, input_size=times(params.model.input_size))
    if params.model.fixed_image_size:
        seen = model_input_size(params, params.preprocess.size)
        raw["model"]["backbone_args"] = {**(params.model.backbone_args or {}), "img_size": times(seen)}
    raw["preprocess"].update(size=times(params.preprocess.size), workers=1)
    for crop in ("center_crop", "random_crop", "eval_crop"):
        raw["augment"][crop] = times(getattr(params.augment, crop))
    raw["train"].update(workers=0, **(train or {}))
    return parse_params(raw, f"{name} at {factor:g} of its size")
