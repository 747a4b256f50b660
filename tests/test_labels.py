"""Wrong labels: confident learning and its baseline scored against known flips, folds by identity, the policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceattrs.cleaning import label_errors
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.training.folds import identity_folds


def _noisy(seed: int = 0, n: int = 3000, k: int = 6, rate: float = 0.04):
    """Clean labels, labels with known flips, and probabilities of a decent model of the clean ones."""
    rng = np.random.default_rng(seed)
    clean = (rng.random((n, k)) < np.linspace(0.05, 0.6, k)).astype(np.int8)
    flipped = rng.random((n, k)) < rate
    given = np.where(flipped, 1 - clean, clean).astype(np.int8)
    logits = np.where(clean == 1, 2.5, -2.5) + rng.normal(0, 1.2, (n, k))
    return clean, given, 1 / (1 + np.exp(-logits))


@pytest.mark.parametrize("finder", sorted(label_errors.FINDERS))
def test_each_finder_recovers_planted_flips_and_its_score_says_so(finder):
    clean, given, probs = _noisy()
    flags = label_errors.FINDERS[finder](given, probs)
    score = label_errors.score(flags, given, clean, [f"a{i}" for i in range(6)])
    assert score["wrong"] == int((given != clean).sum())
    assert score["recall"] >= 0.55 and score["precision"] >= 0.6, score
    # A scorer that counted wrongly would not tell these flags from random ones.
    random_flags = np.random.default_rng(1).random(flags.shape) < flags.mean()
    chance = label_errors.score(random_flags, given, clean, [f"a{i}" for i in range(6)])
    assert chance["precision"] < 0.2 and chance["recall"] < 0.2


def test_confident_learning_needs_no_fixed_threshold_for_rare_attributes():
    """Confident learning adapts to each attribute: a rare one's flips are found though its probabilities are low."""
    clean, given, probs = _noisy(seed=3)
    flags = label_errors.confident_learning(given, probs)
    per = label_errors.score(flags, given, clean, [f"a{i}" for i in range(6)])["per_attribute"]
    assert per["a0"]["recall"] >= 0.6  # the 5% attribute


def test_policies_decide_what_training_sees():
    given = np.array([[1, 0], [0, 1]], dtype=np.int8)
    flags = np.array([[True, False], [False, False]])
    assert (label_errors.apply_policy(given, flags, "report") == given).all()
    assert label_errors.apply_policy(given, flags, "drop").tolist() == [[-1, 0], [0, 1]]
    assert label_errors.apply_policy(given, flags, "flip").tolist() == [[0, 0], [0, 1]]
    table = label_errors.flagged_table(flags, given, np.array([[0.1, 0.5], [0.5, 0.5]]), ["x", "y"], ["A", "B"])
    assert table.to_dict("records") == [
        {"image_id": "x", "attribute": "A", "given": 1, "suggested": 0, "probability": 0.1}
    ]


def test_folds_keep_each_identity_in_one_fold_and_balance_images():
    identity = np.repeat(np.arange(60), np.random.default_rng(0).integers(1, 12, 60))
    fold = identity_folds(identity, 3, seed=5)
    assert all(len(set(fold[identity == i])) == 1 for i in np.unique(identity))
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= identity.size * 0.05 + 12
    assert (identity_folds(identity, 3, seed=5) == fold).all()


@pytest.mark.integration
def test_kfold_search_on_tiny_shards_flags_and_applies_the_policy(tiny_shards, synthetic_raw):
    from faceattrs.synthetic.truth import read_truth
    from faceattrs.training.build import TrainingParams
    from faceattrs.training.label_search import search
    from tests.conftest import tiny_params

    params = tiny_params(labels={"method": "kfold", "folds": 2, "epochs": 2, "policy": "flip"})
    training = TrainingParams.of(params, target=False)
    result = search(params.labels, training, tiny_shards, read_truth(synthetic_raw), progress=False)
    s = result.summary
    assert s["flagged_labels"] == len(result.flagged) > 0
    assert s["labels_changed"] == s["flagged_labels"]  # flip changes exactly the flagged labels
    flipped = result.flagged.iloc[0]
    assert result.seen.loc[flipped["image_id"], flipped["attribute"]] == flipped["suggested"]
    noise = s["against_planted_noise"]["confident_learning"]
    # Two epochs at 40x32 make a weak model; its flags must still beat chance (the share of wrong labels).
    assert noise["precision"] > 2 * noise["wrong"] / (s["images"] * len(ATTRIBUTES))
    assert set(result.scores["finder"]) == {"confident_learning", "confident_disagreement"}


def test_training_leaves_dropped_labels_out(tiny_shards, tmp_path):
    from faceattrs.training.loader import ShardDataset
    from faceattrs.training.run import train
    from faceattrs.training.targets import Targets
    from tests.conftest import tiny_params

    frame = ShardDataset(tiny_shards, "train", Targets(ATTRIBUTES)).frame
    seen = frame[list(ATTRIBUTES)].astype(np.int8).copy()
    seen.iloc[:40, :5] = -1
    seen.to_parquet(tmp_path / "labels.parquet")
    data = ShardDataset(tiny_shards, "train", Targets(ATTRIBUTES), labels=pd.read_parquet(tmp_path / "labels.parquet"))
    assert (data.targets[:40, :5] == -1).all() and (data.targets[40:] >= 0).all()
    summary = train(
        tiny_params(train={"epochs": 1}),
        tiny_shards,
        tmp_path / "m",
        tmp_path / "live",
        progress=False,
        labels_file=tmp_path / "labels.parquet",
    )
    assert np.isfinite(summary["best_val_mean_accuracy"])


def test_an_attribute_with_one_value_in_the_split_is_not_judged():
    from faceattrs.cleaning.label_errors import confident_learning

    rng = np.random.default_rng(0)
    labels = (rng.random((60, 3)) < 0.3).astype(np.int8)
    labels[:, 1] = 0  # nobody in this small split has it: cleanlab has no second class to compare with
    probs = np.clip(labels + rng.normal(0, 0.2, labels.shape), 0.01, 0.99)
    probs[:4, 0] = 1 - labels[:4, 0]  # four labels the model confidently contradicts
    flags = confident_learning(labels, probs)
    assert flags.shape == labels.shape and not flags[:, 1].any()
    assert flags[:4, 0].all()


def test_method_none_gives_the_shards_labels_unflagged_without_loading_torch(tiny_shards, tmp_path):
    import subprocess
    import sys

    from faceattrs.core.errors import InputError
    from faceattrs.core.params import LabelsParams
    from faceattrs.data import shards
    from faceattrs.training.label_search import search

    result = label_errors.labels_as_given(LabelsParams(method="none", policy="drop"), tiny_shards)
    given = shards.read_labels(tiny_shards, "train")[list(ATTRIBUTES)]
    pd.testing.assert_frame_equal(result.seen, given)  # no flag, so the drop policy leaves every label
    assert result.flagged.empty and result.summary["images"] == len(given) > 0
    assert result.summary["flagged_labels"] == result.summary["labels_changed"] == 0
    # The search for method none is this, whatever the training params.
    same = search(LabelsParams(method="none", policy="drop"), None, tiny_shards, None)
    pd.testing.assert_frame_equal(same.seen, result.seen)
    assert same.summary == result.summary
    with pytest.raises(InputError, match=f"{tmp_path}: no shards for split 'train'"):
        label_errors.labels_as_given(LabelsParams(), tmp_path)
    # The labels stage with method none starts as a data stage does: no torch, no timm.
    probe = "import sys, stages.labels; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    from tests.conftest import REPO

    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_flagged_sheet_draws_each_flagged_image_from_its_split(tiny_shards, tmp_path):
    from PIL import Image

    from faceattrs.reports import flagged
    from faceattrs.training.loader import ShardDataset
    from faceattrs.training.targets import Targets

    data = ShardDataset(tiny_shards, "val", Targets(("Male",)))
    wanted = set(data.ids[:3])
    found = flagged._stored_images(tiny_shards, "val", wanted | {"not-in-val.jpg"})
    assert found == {name: data.images[k].as_py() for k, name in enumerate(data.ids) if name in wanted}
    rows = pd.DataFrame(
        {"image_id": sorted(wanted), "attribute": "Smiling", "given": 1, "suggested": 0, "probability": 0.1}
    )
    flagged.flagged_sheet(rows.assign(split="val"), tiny_shards, tmp_path / "sheet.png", "flagged")
    assert Image.open(tmp_path / "sheet.png").size[0] > 0
