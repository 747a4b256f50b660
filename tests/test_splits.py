"""Split modes and the leakage report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceattrs.cleaning.clean import clean
from faceattrs.core.errors import InputError
from faceattrs.core.params import DedupeParams
from faceattrs.data import splits


@pytest.fixture(scope="module")
def manifest(synthetic_raw):
    return clean(synthetic_raw, DedupeParams(), workers=2, progress=False)


def test_official_follows_the_partition_file(manifest):
    m = manifest.manifest
    assigned = splits.assign(m, "official", (0.8, 0.1, 0.1), 0)
    assert (assigned == m["partition"].map({0: "train", 1: "val", 2: "test"})).all()


def test_random_split_is_sized_stratified_and_seeded(manifest):
    m = manifest.manifest
    a = splits.assign(m, "random", (0.7, 0.2, 0.1), seed=1)
    assert a.value_counts()["train"] == pytest.approx(0.7 * len(m), abs=len(np.unique(m["Male"])) * 8)
    assert (a == splits.assign(m, "random", (0.7, 0.2, 0.1), seed=1)).all()
    assert not (a == splits.assign(m, "random", (0.7, 0.2, 0.1), seed=2)).all()
    men = m["Male"] == 1
    for name in splits.SPLITS:
        assert men[a == name].mean() == pytest.approx(men.mean(), abs=0.05)


def test_identity_split_shares_no_identity(manifest):
    m = manifest.manifest
    a = splits.assign(m, "identity", (0.8, 0.1, 0.1), seed=0)
    per_identity = a.groupby(m["identity"]).nunique()
    assert per_identity.max() == 1
    assert a.value_counts()["train"] == pytest.approx(0.8 * len(m), rel=0.1)
    assert splits.summary(m, a)["identities_shared"] == {"train-val": 0, "train-test": 0, "val-test": 0}


def test_identity_split_without_identities_is_a_clear_error(manifest):
    m = manifest.manifest.assign(identity=-1)
    with pytest.raises(InputError, match="no identity file"):
        splits.assign(m, "identity", (0.8, 0.1, 0.1), 0)


def test_crossing_groups_separate_closed_from_open_leaks():
    groups = pd.DataFrame(
        {
            "group": [0, 0, 1, 1, 2, 2],
            "kind": ["exact"] * 6,
            "image_id": ["a", "b", "c", "d", "e", "f"],
            "partition": [0, 2, 0, 1, 0, 0],
        }
    )
    assigned = pd.Series({"a": "train", "c": "train", "d": "val", "e": "train", "f": "train"})
    out = splits.crossing_groups(groups, assigned, groups.set_index("image_id")["partition"])
    assert out["group"].tolist() == [0, 1]
    assert out["leaks_now"].tolist() == [False, True]
    assert out["splits"].tolist() == ["train/test", "train/val"]


def test_crossing_groups_are_found_in_the_synthetic_data(manifest):
    m, groups = manifest.manifest, manifest.groups
    assigned = splits.assign(m, "official", (0.8, 0.1, 0.1), 0)
    out = splits.crossing_groups(groups, assigned, groups.set_index("image_id")["partition"])
    assert len(out) == manifest.summary["duplicate_groups"]["crossing_official_partitions"] > 0
    assert not out["leaks_now"].any()  # dedupe keeps one image per group
