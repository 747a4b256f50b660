"""Every published recipe is a valid params change whose parts build, and a `dvc exp run` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

from faceattrs import recipes
from faceattrs.core.params import Params, ParamsError, load_params
from faceattrs.core.params_file import render
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


@pytest.fixture
def defaults(tmp_path) -> Path:
    """A workspace's params.yaml as the schema writes it."""
    path = tmp_path / "params.yaml"
    path.write_text(render())
    return path


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
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("dvc exp run -n resnext50-mse-adamax -S ")
    assert "-S loss.name=mse" in one.stdout and "-S model.freeze_blocks=6" in one.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "faceattrs.cli", "recipe", "nope"], capture_output=True, text=True, cwd=REPO
    )
    assert bad.returncode == 1 and "unknown recipe 'nope'; valid:" in bad.stderr


def _as_dvc_applies(command: list[str], params_file: Path, tmp_path: Path) -> Params:
    """The params ``command``'s -S values give when DVC applies them to ``params_file``, in DVC's own code."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "applied.yaml"
    copy.write_bytes(params_file.read_bytes())
    apply_overrides(str(copy), [command[i + 1] for i, arg in enumerate(command) if arg == "-S"])
    return load_params(copy)


@pytest.mark.parametrize("name", NAMES)
def test_the_command_makes_the_workspace_s_params_the_recipe_s(name, defaults, tmp_path):
    assert _as_dvc_applies(recipes.command(name, defaults), defaults, tmp_path) == recipes.resolve(name, defaults)


def test_a_recipe_after_another_resets_every_key_the_first_set(defaults, tmp_path):
    """`dvc exp run` leaves an experiment's params in the workspace: the next recipe must not inherit them."""
    dino = recipes.resolve("dino-vits8-fair-target", defaults)
    defaults.write_text(yaml.safe_dump(dino.model_dump(mode="json"), sort_keys=False))
    for name in ("resnet18-bce-baseline", "resnest50-focal-frequency"):
        command = recipes.command(name, defaults)
        assert "-S target.expression=null" in " ".join(command)
        applied = _as_dvc_applies(command, defaults, tmp_path)
        assert applied == recipes.resolve(name, defaults)
        assert applied.augment.center_crop is None and applied.target.expression is None


def test_a_recipe_keeps_the_user_s_data_and_machine_settings_and_nothing_else(defaults):
    users = {
        "data": {"source": "local", "local": {"path": "/data/celeba"}},
        "train": {"workers": 3, "device": "cpu", "epochs": 2},
        "preprocess": {"workers": 2},
        "loss": {"gamma": 5.0},
        "model": {"head": "mlp"},
    }
    raw = yaml.safe_load(defaults.read_text())
    for section, values in users.items():
        raw[section].update(values)
    defaults.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = recipes.resolve("resnet18-bce-baseline", defaults)
    assert params.data.source == "local" and params.data.local.path == "/data/celeba"
    assert (params.train.workers, params.train.device, params.preprocess.workers) == (3, "cpu", 2)
    assert params.train.epochs == recipes.load("resnet18-bce-baseline")["train"]["epochs"]
    assert params.loss.gamma == Params().loss.gamma and params.model.head == Params().model.head
    assert set(recipes.users_keys()) >= {"data", "train.device", "train.workers", "train.processes"}
    for name in NAMES:  # a recipe states the experiment; the machine's settings are the user's
        assert not set(recipes.flat_keys(recipes.load(name))) & set(recipes.users_keys()), name


def test_a_key_the_workspace_lacks_is_named_before_dvc_runs(tmp_path):
    partial = tmp_path / "params.yaml"
    partial.write_text(yaml.safe_dump({"train": {"epochs": 3}}))
    with pytest.raises(ParamsError, match=r"params\.yaml: no key .*model\.backbone.*which the experiment sets"):
        recipes.command("resnext50-mse-adamax", partial)


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
def test_extra_overrides_mean_what_dvc_will_make_of_them(name, extra, defaults, tmp_path, monkeypatch):
    params = recipes.resolve(name, defaults, extra)
    command = recipes.command(name, defaults, extra)
    assert params == _as_dvc_applies(command, defaults, tmp_path)
    if name == "resnext50-mse-adamax":
        assert params.data.source == "local" and params.data.local.path == "/data/celeba"
        assert params.optimizer.name == "adam" and params.train.epochs == 3 and params.loss.name == "mse"
    else:  # a section given is merged into the recipe's
        assert params.augment.affine.degrees == 5 and params.augment.affine.translate == 0.02
        assert params.augment.affine.scale == (0.95, 1.05)

    from faceattrs import cli

    ran = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: ran.append(cmd) or 0)
    monkeypatch.setattr(cli, "_experiments", lambda: [name, f"{name}-2"])
    run = ["recipe", name, "--run", "--params", str(defaults)] + [a for x in extra for a in ("-S", x)]
    for args in (run, [*run, "--replace"]):
        with pytest.raises(SystemExit) as done:
            cli.main(args)
        assert done.value.code == 0
    # A second run of a recipe is a new experiment; --replace overwrites the one of its name.
    assert ran == [
        recipes.command(name, defaults, extra, experiment=f"{name}-3"),
        recipes.command(name, defaults, extra, replace=True),
    ]
    assert ran[1][:6] == ["dvc", "exp", "run", "-f", "-n", name]


def test_a_bad_extra_override_is_refused_before_dvc_runs(monkeypatch, capsys, defaults):
    from faceattrs import cli

    ran = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: ran.append(cmd) or 0)
    for bad, message in (
        ("loss.gamma=-1", "loss.gamma: Input should be greater than or equal to 0"),
        ("loss.gama=1", "-S loss.gama=1: unknown params key loss.gama; valid keys of loss: name, gamma"),
        # What DVC would apply to another file, or as a key to add or delete: never passed on.
        ("dvc.yaml:stages.train.cmd='touch x'", "dvc.yaml:stages.train.cmd='touch x': a file prefix is not accepted"),
        ("+loss.extra=1", "-S +loss.extra=1: Hydra's +, ++ and ~ are not accepted"),
        ("~loss.gamma", "-S ~loss.gamma: Hydra's +, ++ and ~ are not accepted"),
        # Resolved by DVC, an interpolation would write this machine's environment into the experiment's params.
        ("data.local.path=${oc.env:HOME}", "-S data.local.path=${oc.env:HOME}: an interpolation"),
    ):
        with pytest.raises(SystemExit) as done:
            cli.main(["recipe", "resnext50-mse-adamax", "--run", "--params", str(defaults), "-S", bad])
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
    from faceattrs.training.run import train

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
    unlisted = [k for k in recipes.flat_keys(recipes.load(name)) if k not in covered]
    assert not unlisted, f"{name} sets {unlisted}, which its table does not list"


def test_the_recipes_page_is_written_from_the_tables():
    from tools import recipe_tables

    assert (REPO / "docs" / "recipes.md").read_text() == recipe_tables.render(), (
        "run python -m tools.recipe_tables --write"
    )
