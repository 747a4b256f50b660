"""Every published recipe is a valid params change whose parts build, and a `dvc exp run` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
import yaml

from faceattrs import recipes
from faceattrs.core.params import Params, ParamsError, ScheduleParams, load_params
from faceattrs.core.params_file import render
from faceattrs.training import fit as fit_module
from faceattrs.training import models, optim, targets
from faceattrs.training.epoch import PassResult
from faceattrs.training.fit import FitRun, FitState, Parts
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


@pytest.mark.integration
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
@pytest.mark.integration
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


# The keys every table has a row for: a choice each seed could have stated, whether or not it did.
EVERY_TABLE = (
    "split.method",
    "dedupe.conflict_policy",
    "dedupe.no_face_policy",
    "model.backbone",
    "model.pretrained",
    "model.head",
    "model.normalization",
    "loss.name",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "schedule.name",
    "train.epochs",
    "train.batch_size",
    "train.keep",
    "train.monitor",
    "train.precision",
    "evaluate.tta",
    "evaluate.thresholds",
    "augment.hflip",
    "preprocess.size",
)
# Statuses whose row names the key that holds the recipe's value; "built in" rows have none.
KEYED = ("reproduced", "unstated", "tried and dropped")


@pytest.mark.parametrize("name", NAMES)
def test_each_recipe_agrees_with_its_table_of_the_seed_s_choices(name):
    """Every row with a key holds the recipe's own value; every key the recipe sets has a row."""
    table = recipes.table(name)
    params = recipes.resolve(name, REPO / "params.yaml")
    assert table["seed"].endswith(".txt") and table["report"] and table["choices"]
    disagree = []
    for row in table["choices"]:
        assert row["status"] in recipes.STATUSES, row
        assert "quote" in row and (row["quote"] or row["status"] == "unstated"), f"{row['choice']}: no quote"
        if row["status"] != "reproduced":
            assert row.get("why"), f"{row['choice']}: a {row['status']} row says why"
        if row["status"] in KEYED:
            assert row["key"], f"{row['choice']}: a {row['status']} row names the key that holds the recipe's value"
        if row["status"] == "built in":
            assert row["key"] is None, f"{row['choice']}: what every run does has no key"
        if row["key"] == "split.method" and row["value"] == "official":
            # The `test` figure is on the test split after dedupe; the report's is on the partition as published.
            assert "`official_test`" in row["why"], f"{row['choice']}: say which figure compares with the seed's"
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
    missing = [k for k in EVERY_TABLE if k not in covered]
    assert not missing, f"{name}'s table has no row for {missing}, which its seed could have stated"


# The seed reports, beside the repository as the project's shared folder holds them.
SEEDS = REPO.parent / "shared" / "seeds"


def _words(text: str) -> str:
    """``text`` with each run of whitespace (line breaks too) one space: the only liberty a quote may take."""
    return " ".join(text.split())


def quoted(quote: str, seed: str) -> bool:
    """Whether ``quote`` is a passage of ``seed``, word for word."""
    return _words(quote) in _words(seed)


def one_word_changed(quote: str) -> str:
    """``quote`` with its longest word spelt backwards (or, a palindrome, doubled)."""
    words = quote.split()
    k = max(range(len(words)), key=lambda i: len(words[i]))
    words[k] = words[k][::-1] if words[k][::-1] != words[k] else words[k] * 2
    return " ".join(words)


@pytest.mark.parametrize("name", NAMES)
def test_every_quote_is_a_passage_of_its_seed_report(name):
    if not SEEDS.is_dir():
        pytest.skip(f"no seed reports at {SEEDS} (the project's shared folder) to check the quotes against")
    table = recipes.table(name)
    seed = (SEEDS / table["seed"]).read_text(encoding="utf-8")
    quotes = [table["published"]] + [row["quote"] for row in table["choices"] if row["quote"]]
    assert not [q for q in quotes if not quoted(q, seed)], f"{name}: not in {table['seed']}"
    # A quote with one word changed is not found: the check reads the words, not only where they break.
    assert not [q for q in map(one_word_changed, quotes) if quoted(q, seed)]
    assert quoted("a mean\n0.5   and", "with a mean 0.5 and a standard deviation")


def test_the_recipes_page_is_written_from_the_tables():
    from tools import recipe_tables

    assert (REPO / "docs" / "recipes.md").read_text() == recipe_tables.render(), (
        "run python -m tools.recipe_tables --write"
    )


def _scripted_fit(monkeypatch, monitor: str, values: list[float], patience: int) -> tuple[float, FitState]:
    """A plateau schedule (factor 0.1, as resnest50-focal-frequency has it) through ``fit``, whose epochs read
    ``values`` from ``monitor``; the learning rate after the last epoch, and where the fit stands."""
    readings = iter(values)

    def scripted(step, run):
        value = next(readings) if not run.training else 0.0
        accuracy = {"val_accuracy": value, "val_loss": 0.9, "train_val_gap": 0.9 - value}[monitor]
        loss = value if monitor == "val_loss" else 0.5
        return PassResult(loss, np.full(40, 0.9 if run.training else accuracy))

    monkeypatch.setattr(fit_module, "run_epoch", scripted)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = ScheduleParams(name="plateau", factor=0.1, patience=patience)
    schedule = optim.build_schedule(opt, plateau, 10, len(values), 0.1)
    parts = Parts(
        step=SimpleNamespace(evaluated=lambda: None),
        optimizer=opt,
        schedule=schedule,
        train_batches=lambda epoch: [],
        plan=lambda epoch: None,
        val_batches=lambda epoch: [],
    )
    state = fit_module.fit(parts, FitRun(epochs=len(values), monitor=monitor, schedule_monitor=monitor))
    return opt.param_groups[0]["lr"], state


@pytest.mark.parametrize("patience", [0, 1])
@pytest.mark.parametrize(
    "monitor, start, better",
    [("val_loss", 0.011, 0.995), ("train_val_gap", 0.011, 0.995), ("val_accuracy", 0.9, 1.001)],
)
def test_the_plateau_schedule_cuts_the_rate_on_a_plateau_not_on_a_slow_improvement(
    monkeypatch, monitor, start, better, patience
):
    """torch's default relative threshold (1e-4 of the best) on the monitor's own value, whichever way it improves.

    A validation loss near 0.011 (resnest50-focal-frequency's seed reads 0.0111) falling 0.5% an epoch
    improves on its best by 5.5e-5 an epoch: no plateau, though an absolute threshold of 1e-4 saw one.
    """
    epochs = 8
    improving = [start * better**k for k in range(epochs)]
    lr, state = _scripted_fit(monkeypatch, monitor, improving, patience)
    assert lr == pytest.approx(0.1), f"{monitor} improving by {abs(1 - better):.1%} an epoch cut the rate"
    assert state.best_epoch == epochs, "each epoch is the monitor's best so far"
    lr, state = _scripted_fit(monkeypatch, monitor, [start] * epochs, patience)
    assert lr < 0.1, f"a constant {monitor} is a plateau"
    assert state.best_epoch == 1 and state.stale == epochs - 1
    # Worse every epoch: the kept epoch is the first, and the rate is cut.
    lr, state = _scripted_fit(monkeypatch, monitor, improving[::-1], patience)
    assert lr < 0.1 and state.best_epoch == 1


@pytest.mark.integration
def test_keep_last_keeps_the_last_epoch_though_val_accuracy_peaked_earlier(tiny_shards, tmp_path, monkeypatch):
    """resnet18-bce-baseline: its seed trained all 10 epochs and evaluated that model, not the best epoch's."""
    from faceattrs.training import run
    from faceattrs.training.checkpoints import ModelFile
    from tests.conftest import tiny_params

    assert recipes.resolve("resnet18-bce-baseline", REPO / "params.yaml").train.keep == "last"
    real = fit_module.run_epoch
    calls = {"val": 0}

    def peaks_first(step, run):
        result = real(step, run)
        if run.training:
            return result
        calls["val"] += 1
        return PassResult(result.loss, np.full_like(result.accuracy, 0.6 - 0.01 * calls["val"]))

    monkeypatch.setattr(fit_module, "run_epoch", peaks_first)
    for keep, kept in (("last", 3), ("best", 1)):
        calls["val"] = 0
        params = tiny_params(train={"epochs": 3, "limit_batches": 1, "keep": keep})
        result = run.train(params, tiny_shards, tmp_path / keep, tmp_path / f"live-{keep}", progress=False)
        assert result["best_epoch"] == 1, "the monitor still names val accuracy's best epoch"
        assert result["kept_epoch"] == kept
        model = ModelFile.load(tmp_path / keep / "model.pt")
        assert model.epoch == kept
        assert model.val_mean_accuracy == pytest.approx(0.6 - 0.01 * kept)


@pytest.mark.integration
def test_weights_from_the_positive_ratios_make_the_model_more_selective(tiny_shards, tmp_path):
    """efficientnet-b0-weighted-focal: its seed reports, against its baseline, precision up and recall down
    ("the final model became for selective and precise"). Weighing each attribute's positives by its positive
    ratio p and negatives by 1-p does that: on the test shards, fewer positive calls, more of them right.

    Recall is not asserted: on 39 images, after three epochs, it is swayed by the three attributes commoner
    than half, which the weights push the other way; the calls over all 40 attributes are not. The share of
    calls is counted over every split: on the 39 test images alone it moves by a point with the number of
    OpenMP threads (one per pytest-xdist worker), more than the weights move it there.
    """
    from faceattrs.prediction.predictor import Predictor, split_logits
    from faceattrs.training import run
    from tests.conftest import tiny_params

    assert recipes.resolve("efficientnet-b0-weighted-focal", REPO / "params.yaml").loss.weighting == "positive_ratio"
    measured = {}
    for weighting in ("none", "positive_ratio"):
        params = tiny_params(
            loss={"name": "focal", "gamma": 2, "weighting": weighting}, train={"epochs": 3}, optimizer={"lr": 0.01}
        )
        run.train(params, tiny_shards, tmp_path / weighting, tmp_path / f"live-{weighting}", progress=False)
        predictor = Predictor(tmp_path / weighting / "model.pt", "cpu", tta="none")
        scored = {split: split_logits(predictor, tiny_shards, split)[:2] for split in ("train", "val", "test")}
        called, positive = scored["test"][0] > 0, scored["test"][1] == 1
        measured[weighting] = {
            "called": np.concatenate([logits > 0 for logits, _ in scored.values()]).mean(),
            "precision": (called & positive).sum() / called.sum(),
        }
    plain, weighted = measured["none"], measured["positive_ratio"]
    assert weighted["called"] < plain["called"], measured
    assert weighted["precision"] > plain["precision"], measured
