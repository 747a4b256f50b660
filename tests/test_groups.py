"""Seed 004's fairness mitigations: training on a subset, group-balanced sampling, a group's loss weight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from faceattrs.core.params import ParamsError
from faceattrs.data import shards
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.training import groups, run
from faceattrs.training.build import TrainingParams, make_step
from faceattrs.training.callbacks import SampleTrace
from faceattrs.training.losses import AttributeLoss
from faceattrs.training.step import EpochPlan, model_step
from tests.conftest import tiny_params


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(0, index=range(n), columns=list(ATTRIBUTES), dtype=np.int8)
    frame["Male"] = (rng.random(n) < 0.3).astype(np.int8)
    frame["Blond_Hair"] = (rng.random(n) < 0.15).astype(np.int8)
    return frame


def test_a_subset_pool_holds_only_its_rows_once_each():
    frame = _frame()
    targets = frame[["Blond_Hair"]].to_numpy()
    rows = groups.pool(frame, targets, "~Male", None, 0, 0).numpy()
    assert len(rows) == (frame["Male"] == 0).sum() and len(set(rows)) == len(rows)
    assert (frame["Male"].to_numpy()[rows] == 0).all()
    assert groups.pool(frame, targets, None, None, 0, 0) is None


def test_a_row_whose_subset_label_is_unknown_is_not_in_the_subset():
    # The labels stage leaves a label it distrusts out as -1; "~Male" must not read it as a man, nor "Male" as one.
    frame = _frame(6)
    frame["Male"] = [0, 1, -1, 0, -1, 1]
    for expression, kept in (("~Male", [0, 3]), ("Male", [1, 5]), ("Male | Blond_Hair", [1, 5])):
        assert np.flatnonzero(groups.in_subset(frame, expression)).tolist() == kept


def test_balancing_oversamples_each_combination_to_the_commonest_and_leaves_no_row_out():
    frame = _frame()
    targets = frame[["Blond_Hair"]].to_numpy()
    first, second = (groups.pool(frame, targets, None, "Male", 0, epoch).numpy() for epoch in (0, 1))
    male, blond = frame["Male"].to_numpy(), targets[:, 0]
    cells = pd.crosstab(male[first], blond[first]).to_numpy()
    largest = pd.crosstab(male, blond).to_numpy().max()
    assert (cells == largest).all()
    assert set(first) == set(range(len(frame)))  # every row at least once: oversampling, never undersampling
    # The rare combination's extra draws differ between epochs; the commonest is each row once.
    assert sorted(first) != sorted(second)
    common = first[(male[first] == 0) & (blond[first] == 0)]
    assert len(set(common)) == len(common) == largest


def test_the_group_weight_weighs_that_group_s_loss():
    frame = _frame(4)
    frame["Male"] = [1, 0, 0, 1]
    params = tiny_params(loss={"group": "Male", "group_weight": 3.0, "name": "bce"})
    w = groups.weights(frame, params.loss.group, params.loss.group_weight)
    assert w.tolist() == [3.0, 1.0, 1.0, 3.0]
    logits, target = torch.tensor([[2.0], [-1.0], [0.5], [0.0]]), torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    loss = AttributeLoss(params.loss, torch.tensor([0.5]))(logits, target, w.view(-1, 1))
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
    assert loss.item() == pytest.approx(float((each * w).sum() / w.sum()), rel=1e-6)
    assert groups.weights(frame, None, 1.0) is None


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"train": {"subset": "Male & Wings"}}, r"train\.subset"),
        ({"train": {"balance": "Gender"}}, r"train\.balance"),
        ({"train": {"balance": "Male"}}, r"train\.balance balances one target"),
        ({"loss": {"group": "Gender"}}, r"loss\.group"),
        ({"loss": {"group_weight": 2.0}}, r"loss\.group_weight is set but loss\.group is null"),
        ({"augment": {"random_crop": [0, 4]}}, r"augment\.random_crop"),
        ({"augment": {"random_crop": [48, 32]}}, r"larger than preprocess\.size"),
        ({"augment": {"eval_crop": [8, 8], "center_crop": [16, 16]}}, r"augment\.eval_crop"),
        ({"train": {"monitor": "train_val_gap"}, "augment": {"mixup_alpha": 0.2}}, r"train_val_gap with augment"),
        (
            {
                "train": {"balance": "Male"},
                "target": {"attributes": ["Smiling"]},
                "augment": {"flip_order": "alternate"},
            },
            r"flip_order alternate with train\.balance",
        ),
    ],
)
def test_bad_group_and_crop_params_are_refused_by_key(sections, message):
    with pytest.raises(ParamsError, match=message):
        tiny_params(preprocess={"size": [40, 32]}, **sections)


def test_training_on_a_subset_sees_only_its_images(tiny_shards, tmp_path):
    params = tiny_params(train={"epochs": 1, "subset": "~Male"})
    labels = shards.read_labels(tiny_shards, "train")
    trace = SampleTrace(tmp_path / "trace", list(labels.index))
    run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False, callbacks=[trace])
    seen = (tmp_path / "trace" / "epoch0-rank0.txt").read_text().split()
    assert sorted(seen) == sorted(labels.index[labels["Male"] == 0])


@pytest.mark.parametrize("mixup_on", [None, "labels", "loss"])
def test_a_group_weight_changes_the_step_s_loss_on_every_path(mixup_on):
    """model_step weighs each image's loss by its row weight, with MixUp on either side or none."""
    sections = {"loss": {"name": "bce"}}
    if mixup_on:
        sections["augment"] = {"mixup_alpha": 0.4, "mixup_on": mixup_on, "hflip": 0.0}
    # The weights, images and labels are seeded: from the global generator's state they would depend on
    # the tests run before this one, and some draws leave the weighted loss within the tolerance of the plain one.
    torch.manual_seed(0)
    ctx = make_step(TrainingParams.of(tiny_params(**sections)), np.full(40, 0.5), torch.device("cpu"), 40)
    draw = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 40, 32), dtype=torch.uint8, generator=draw)
    labels = torch.randint(0, 2, (8, 40), dtype=torch.int8, generator=draw)

    def step(weights):
        plan = EpochPlan(generator=torch.Generator().manual_seed(5), row_weights=weights)
        torch.manual_seed(5)
        return model_step(ctx, images, labels, plan, torch.arange(8))[0].item()

    plain, ones = step(None), step(torch.ones(8))
    assert ones == pytest.approx(plain, rel=1e-5)  # weights of 1 are no weights
    heavy = torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 1])
    assert step(heavy) != pytest.approx(plain, rel=1e-4)
