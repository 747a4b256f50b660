"""Published CelebA recipes as params overrides: each YAML file here becomes one ``dvc exp run -S ...``."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel

from faceattrs.core.errors import UnknownChoice
from faceattrs.core.overrides import check_all, hydra_value
from faceattrs.core.params import Params, ParamsError, load_params, parse_params

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


def users_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """The dotted keys a recipe leaves as the user has them: the data section, and the machine's settings
    (the fields the schema marks ``MACHINE``: device, loader workers, processes, nodes, rendezvous)."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if key == "data" or (field.json_schema_extra or {}).get("machine"):
            keys.append(key)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += users_keys(annotation, key + ".")
    return keys


def _at(raw: dict, key: str):
    for part in key.split("."):
        raw = raw[part]
    return raw


def _set(raw: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        raw = raw[part]
    raw[leaf] = value


def resolve(name: str, params_file: Path, extra: Sequence[str] = (), folder: Path = RECIPE_DIR) -> Params:
    """The params a recipe runs with: the schema's defaults, the recipe's overrides, the user's data and machine
    settings from ``params_file`` (``users_keys``), then ``extra``; validated.

    Every other key comes from the recipe or the defaults, never from whatever the workspace last
    ran, so a recipe's experiment is the same wherever it runs. ``extra`` are ``-S`` overrides,
    applied by DVC's own parser so they mean here what they mean to ``dvc exp run``.
    """
    users = load_params(params_file).model_dump(mode="json")
    raw = _merge(Params().model_dump(mode="json"), load(name, folder))
    for key in users_keys():
        _set(raw, key, _at(users, key))
    check_all(extra)  # a params key each, nothing DVC would read as another file or a key to add
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


def _is_leaf_section(path: str) -> bool:
    """Optional sections, null by default, that are set whole, not key by key."""
    return path in {"augment.affine", "augment.random_resized_crop", "augment.color_jitter", "model.backbone_args"}


def changes(current: dict, wanted: dict, prefix: str = "") -> list[tuple[str, object]]:
    """The (dotted key, value) leaves where ``wanted`` differs from ``current`` (both as JSON has them)."""
    out = []
    for key, value in wanted.items():
        path = f"{prefix}{key}"
        here = current.get(key) if isinstance(current, dict) else None
        if isinstance(value, dict) and isinstance(here, dict) and not _is_leaf_section(path):
            out += changes(here, value, path + ".")
        elif value != here:
            out.append((path, value))
    return out


def overrides(params_file: Path, wanted: Params) -> list[str]:
    """``-S`` values that turn ``params_file`` into ``wanted``, in Hydra's override syntax that ``dvc exp run`` reads.

    A key the file lacks cannot be set with a plain override (Hydra's ``+`` is not accepted): the
    error names the keys to add, for instance from ``faceattrs params --defaults``.
    """
    written = yaml.safe_load(params_file.read_text()) or {}
    current = load_params(params_file).model_dump(mode="json")
    found = changes(current, wanted.model_dump(mode="json"))
    missing = [key for key, _ in found if not _has(written, key)]
    if missing:
        raise ParamsError(
            f"{params_file}: no key {', '.join(missing)}, which the experiment sets: add "
            f"{'them' if len(missing) > 1 else 'it'} (`faceattrs params --defaults` prints every key with its default)"
        )
    return [f"{key}={hydra_value(value)}" for key, value in found]


def _has(raw: dict, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def command(
    name: str,
    params_file: Path,
    extra: Sequence[str] = (),
    *,
    experiment: str | None = None,
    replace: bool = False,
    queue: bool = False,
    folder: Path = RECIPE_DIR,
) -> list[str]:
    """``dvc exp run`` that makes the workspace's params exactly the recipe's (``resolve``), as experiment
    ``experiment`` (the recipe's name by default); ``replace`` overwrites an experiment of that name,
    ``queue`` queues it for ``dvc queue start``."""
    wanted = resolve(name, params_file, extra, folder)
    flags = ["-f"] if replace else []
    flags += ["--queue"] if queue else []
    return [
        "dvc",
        "exp",
        "run",
        *flags,
        "-n",
        experiment or name,
        *[arg for o in check_all(overrides(params_file, wanted)) for arg in ("-S", o)],
    ]


def free_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... the first no experiment has."""
    if name not in taken:
        return name
    return next(f"{name}-{k}" for k in itertools.count(2) if f"{name}-{k}" not in taken)


# Per recipe, every choice its seed report states, in the report's own words, and how the recipe takes it
# (seeds/<name>.yaml); also the keys the recipe leaves at a default that a report could have stated.
TABLE_DIR = RECIPE_DIR / "seeds"
# What a row of a table says of its choice:
#   reproduced: the key holds what the quoted words say;
#   changed: the seed states it and the recipe differs (why says how and why);
#   unstated: the seed does not give the value (why says why the recipe's is taken);
#   tried and dropped: the seed tried or weighed it and its model does without it (the key holds what the
#     recipe does instead, usually the default that leaves it off);
#   not expressible: no params key can express it;
#   built in: every run does it, so no key expresses it.
STATUSES = ("reproduced", "changed", "unstated", "tried and dropped", "not expressible", "built in")


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
    from faceattrs.training.augment import CROPS, model_input_size, scaled_size

    def times(size):
        return list(scaled_size(size, factor)) if size else None

    raw = params.model_dump(mode="json")
    raw["model"].update(pretrained=False, weights=None, input_size=times(params.model.input_size))
    if params.model.fixed_image_size:
        seen = model_input_size(params.model.input_size, params.augment, params.preprocess.size)
        raw["model"]["backbone_args"] = {**(params.model.backbone_args or {}), "img_size": times(seen)}
    raw["preprocess"].update(size=times(params.preprocess.size), workers=1)
    for crop in CROPS:
        raw["augment"][crop] = times(getattr(params.augment, crop))
    raw["train"].update(workers=0, **(train or {}))
    return parse_params(raw, f"{name} at {factor:g} of its size")
