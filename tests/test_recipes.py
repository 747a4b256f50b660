"""Every published recipe is a valid params change whose parts build, and a `dvc exp run` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from faceattrs import recipes
from faceattrs.core.params import Params, load_params, parse_params
from faceattrs.training import models, optim, targets
from faceattrs.training.losses import AttributeLoss
from tests.conftest import REPO

NAMES = sorted(recipes.available())


def test_the_six_published_recipes_are_there():
    assert len(NAMES) == 6


@pytest.mark.parametrize("name", NAMES)
def test_recipe_validates_and_its_parts_build(name):
    params = recipes.resolve(name, REPO / "params.yaml")
    assert params.model.pretrained  # the recipes start from ImageNet weights
    offline = params.model.model_copy(update={"pretrained": False})
    target = targets.from_params(params.target.attributes, params.target.expression)
    model = models.build_model(offline, len(target.names))
    opt = optim.build_optimizer(model, params.optimizer)
    optim.build_schedule(opt, params.schedule, 10, 2, params.optimizer.lr)
    loss = AttributeLoss(params.loss, torch.full((len(target.names),), 0.3))
    size = params.model.input_size or (64, 64)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, len(target.names))
    assert torch.isfinite(loss(out, torch.ones_like(out))).all()


@pytest.mark.parametrize("name", NAMES)
def test_recipe_overrides_round_trip_to_the_same_params(name):
    """What `-S` would set (parsed back the way Hydra reads it) equals the recipe file."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for override in recipes.overrides(recipes.load(name)):
        key, value = override.split("=", 1)
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = (
            yaml.safe_load(value.replace(":", ": ").replace(",", ", "))
            if value.startswith("{")
            else yaml.safe_load(value)
        )
    assert parse_params(raw) == recipes.resolve(name, REPO / "params.yaml")


def test_recipe_command_lists_and_prints():
    listing = subprocess.run(
        [sys.executable, "-m", "faceattrs.cli", "recipe"], capture_output=True, text=True, cwd=REPO
    )
    assert listing.returncode == 0 and all(n in listing.stdout for n in NAMES)
    before = (REPO / "params.yaml").read_bytes()
    one = subprocess.run(
        [sys.executable, "-m", "faceattrs.cli", "recipe", "resnext50-mse-adamax"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert (REPO / "params.yaml").read_bytes() == before, "printing a recipe must not run it"
    assert one.stdout.startswith("dvc exp run -n resnext50-mse-adamax -S model.backbone=resnext50_32x4d")
    assert "-S loss.name=mse" in one.stdout and "-S model.freeze_blocks=6" in one.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "faceattrs.cli", "recipe", "nope"], capture_output=True, text=True, cwd=REPO
    )
    assert bad.returncode == 1 and "unknown recipe 'nope'; valid:" in bad.stderr


def _as_dvc_applies(command: list[str], tmp_path: Path) -> Params:
    """The params ``command``'s -S values give when DVC applies them to params.yaml, in DVC's own code."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_bytes((REPO / "params.yaml").read_bytes())
    apply_overrides(str(copy), [command[i + 1] for i, arg in enumerate(command) if arg == "-S"])
    return load_params(copy)


@pytest.mark.parametrize(
    "name, extra",
    [
        (
            "resnext50-mse-adamax",
            ["data.source=local", "data.local.path=/data/celeba", "optimizer.name=adam", "train.epochs=3"],
        ),
        ("mobilenetv2-focal-mixup", ["augment.affine={degrees:5}", "augment.affine.translate=0.02"]),
    ],
)
def test_extra_overrides_mean_what_dvc_will_make_of_them(name, extra, tmp_path, monkeypatch):
    params = recipes.resolve(name, REPO / "params.yaml", extra)
    command = recipes.command(name, extra)
    assert command[-2:] == ["-S", extra[-1]]
    assert params == _as_dvc_applies(command, tmp_path)
    if name == "resnext50-mse-adamax":
        assert params.data.source == "local" and params.data.local.path == "/data/celeba"
        assert params.optimizer.name == "adam" and params.train.epochs == 3 and params.loss.name == "mse"
    else:  # a section given is merged into the recipe's
        assert params.augment.affine.degrees == 5 and params.augment.affine.translate == 0.02
        assert params.augment.affine.scale == (0.95, 1.05)

    from faceattrs import cli

    ran = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: ran.append(cmd) or 0)
    with pytest.raises(SystemExit) as done:
        cli.main(
            ["recipe", name, "--run", "--params", str(REPO / "params.yaml")] + [a for x in extra for a in ("-S", x)]
        )
    assert done.value.code == 0 and ran == [command]


def test_a_bad_extra_override_is_refused_before_dvc_runs(monkeypatch, capsys):
    from faceattrs import cli

    ran = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: ran.append(cmd) or 0)
    for bad, message in (
        ("loss.gamma=-1", "loss.gamma: Input should be greater than or equal to 0"),
        ("loss.gama=1", "recipe resnext50-mse-adamax: -S loss.gama=1: Could not override 'loss.gama'"),
    ):
        with pytest.raises(SystemExit) as done:
            cli.main(["recipe", "resnext50-mse-adamax", "--run", "--params", str(REPO / "params.yaml"), "-S", bad])
        assert done.value.code == 1 and message in capsys.readouterr().err
    assert ran == []


def reduced(name: str) -> Params:
    """A recipe at a scale this machine runs in seconds: images and crops a quarter of the size, batches
    of 16, two in one epoch, no pretrained weights; every other choice as the recipe makes it."""
    train = {"epochs": 1, "batch_size": 16, "limit_batches": 2}
    return recipes.scaled(recipes.resolve(name, REPO / "params.yaml"), 0.25, name=name, train=train)


def weights_file(backbone: str, folder: Path) -> tuple[Path, str]:
    """The backbone's own architecture saved as a weights file, its first convolution set to 0.125
    so the test can tell the file's weights from a fresh initialisation; and that tensor's name."""
    source = timm.create_model(backbone, pretrained=False)
    state = source.state_dict()
    first = next(k for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    state[first] = torch.full_like(state[first], 0.125)
    path = folder / f"{backbone}.pth"
    torch.save(state, path)
    return path, first


# The three largest backbones take about 15 s each even at this scale; they run with -m slow (make test-all).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in recipes.HEAVY else n for n in NAMES])
def test_every_recipe_trains_evaluates_and_predicts_end_to_end(name, synthetic_raw, tmp_path):
    from faceattrs.cleaning.clean import load_raw
    from faceattrs.data import shards
    from faceattrs.data.archive import ImageArchive
    from faceattrs.evaluation.evaluate import evaluate
    from faceattrs.prediction import outputs
    from faceattrs.prediction.predictor import Predictor
    from faceattrs.synthetic.truth import read_truth
    from faceattrs.training.loop import train

    # Its ImageNet weights through model.weights, the path an offline machine takes, from a file written here.
    weights, first = weights_file(recipes.resolve(name, REPO / "params.yaml").model.backbone, tmp_path)
    params = reduced(name)
    params = params.model_copy(update={"model": params.model.model_copy(update={"weights": str(weights)})})
    start = models.build_model(params.model, 1).backbone.state_dict()[first]
    assert torch.equal(start, torch.full_like(start, 0.125))
    frame = load_raw(synthetic_raw).drop(index=list(read_truth(synthetic_raw)["unreadable"]))
    frame["split"] = frame["partition"].map({0: "train", 1: "val", 2: "test"})
    shards.write_splits(frame, ImageArchive.of(synthetic_raw), tmp_path / "shards", params.preprocess, progress=False)
    summary = train(params, tmp_path / "shards", tmp_path / "models", tmp_path / "live", progress=False)
    assert summary["epochs"] == 1
    results = evaluate(tmp_path / "models" / "model.pt", tmp_path / "shards", params.evaluate)
    target = targets.from_params(params.target.attributes, params.target.expression)
    assert results["targets"] == list(target.names)
    predictor = Predictor(tmp_path / "models" / "model.pt", tta=params.evaluate.tta)
    index, logits, faces = outputs.predict_paths(predictor, [tmp_path / "shards"])
    assert faces is None
    assert logits.shape == (int(frame["split"].eq("test").sum()), len(target.names))
    assert np.isfinite(logits).all()
    predicted = outputs.predictions_frame(index, logits, predictor.targets, results["thresholds"])
    written = outputs.write_predictions(predicted, predictor.targets, tmp_path / "predictions")
    assert len(written["csv"].read_text().splitlines()) == len(index) + 1


@pytest.mark.parametrize("name", NAMES)
def test_each_recipe_agrees_with_its_table_of_the_seed_s_choices(name):
    """Every row with a key holds the recipe's own value; every key the recipe sets has a row."""
    table = recipes.table(name)
    params = recipes.resolve(name, REPO / "params.yaml")
    assert table["seed"].endswith(".txt") and table["report"] and table["choices"]
    disagree = []
    for row in table["choices"]:
        assert row["status"] in recipes.STATUSES, row
        if row["status"] != "reproduced":
            assert row.get("why"), f"{row['choice']}: a {row['status']} row says why"
        if row["key"] is None:
            assert row["value"] is None, row
            continue
        try:
            value = recipes.value_at(params, row["key"])
        except KeyError:
            pytest.fail(f"{name}: {row['choice']}: the schema has no key {row['key']}")
        expected = list(row["value"]) if isinstance(row["value"], tuple) else row["value"]
        if value != expected and not (isinstance(value, float) and value == pytest.approx(expected)):
            disagree.append(f"{row['key']}: recipe {value!r}, table {expected!r}")
    assert not disagree, f"{name} disagrees with its table: {disagree}"
    covered = {row["key"] for row in table["choices"] if row["key"]}
    # train.workers is the machine's choice, not the seed's.
    unlisted = [k for k in recipes.flat_keys(recipes.load(name)) if k not in covered and k != "train.workers"]
    assert not unlisted, f"{name} sets {unlisted}, which its table does not list"


def test_the_recipes_page_is_written_from_the_tables():
    from tools import recipe_tables

    assert (REPO / "docs" / "recipes.md").read_text() == recipe_tables.render(), (
        "run python -m tools.recipe_tables --write"
    )
