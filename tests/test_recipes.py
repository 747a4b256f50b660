"""Every published recipe is a valid params change whose parts build, and a `dvc exp run` command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from faceattrs import recipes
from faceattrs.core.params import parse_params
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
