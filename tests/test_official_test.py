"""The official test partition, whole: what published CelebA results are measured on, beside the cleaned split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.data.splits import OFFICIAL_TEST_FIGURES, official_test


def _published(partitions: list[int]) -> pd.DataFrame:
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    frame = pd.DataFrame(0, index=pd.Index(names, name="image_id"), columns=list(ATTRIBUTES), dtype=np.int8)
    frame.insert(0, "partition", np.array(partitions, dtype=np.int8))
    frame.insert(0, "identity", np.arange(len(names), dtype=np.int32))
    return frame


def test_every_readable_test_image_as_published_and_what_cleaning_changed():
    published = _published([0, 0, 1, 2, 2, 2, 2, 2])
    published.loc["000004.jpg", "Smiling"] = 1  # as published, whatever cleaning would make of it
    # Groups: 000001 (train) and 000004 (test) are one photo; 000005 and 000006 are copies inside test.
    groups = pd.DataFrame({"image_id": ["000001.jpg", "000004.jpg", "000005.jpg", "000006.jpg"], "group": [0, 0, 1, 1]})
    kept = ["000001.jpg", "000002.jpg", "000003.jpg", "000005.jpg", "000007.jpg"]
    assigned = pd.DataFrame({"split": ["train", "train", "val", "test", "test"]}, index=kept)
    rows, figures = official_test(published, {"000008.jpg"}, groups, assigned)
    assert list(rows.index) == ["000004.jpg", "000005.jpg", "000006.jpg", "000007.jpg"]
    assert rows.loc["000004.jpg", "Smiling"] == 1
    assert tuple(figures) == OFFICIAL_TEST_FIGURES
    assert figures == {
        "images": 4,
        "unreadable": 1,
        "left_out_by_cleaning": 2,  # 000004 (its copy is in train) and 000006 (a copy of 000005)
        "in_training": 0,
        "copies_in_training": 1,  # 000004: leakage the official figure contains
    }


def test_a_split_that_is_not_the_official_one_is_counted_as_training_on_official_test_images():
    published = _published([2, 2, 2, 0])
    assigned = pd.DataFrame({"split": ["train", "test", "val", "test"]}, index=published.index)
    _, figures = official_test(published, set(), pd.DataFrame(columns=["image_id", "group"]), assigned)
    assert figures["in_training"] == 2 and figures["copies_in_training"] == 0 and figures["images"] == 3
