"""Cleaning: the near-duplicate index against brute force, scores against the planted flaws, the policies."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattrs.cleaning import duplicates
from faceattrs.cleaning.clean import clean, duplicate_pairs, score_against_truth
from faceattrs.core.params import DedupeParams
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import read_truth


@pytest.mark.parametrize("radius", [0, 2, 4, 7])
def test_multi_index_search_equals_all_pairs(radius):
    rng = np.random.default_rng(radius)
    packed = rng.integers(0, 256, size=(1500, 8), dtype=np.uint8)
    for k in range(60):  # plant close pairs at every distance up to radius + 2
        src, dst = rng.choice(1500, size=2, replace=False)
        bits = np.unpackbits(packed[src])
        flip = rng.choice(64, size=k % (radius + 3), replace=False)
        bits[flip] ^= 1
        packed[dst] = np.packbits(bits)
    i, j, dist = duplicates.near_pairs(packed, radius)
    all_i, all_j = np.triu_indices(len(packed), k=1)
    all_dist = duplicates.hamming(packed, all_i, all_j)
    expected = {(a, b, d) for a, b, d in zip(all_i, all_j, all_dist, strict=True) if d <= radius}
    found = set(zip(i.tolist(), j.tolist(), dist.tolist(), strict=True))
    assert found == {(int(a), int(b), int(d)) for a, b, d in expected}
    assert len(expected) >= 15


@pytest.fixture(scope="module")
def cleaned(synthetic_raw):
    return clean(synthetic_raw, DedupeParams(), workers=2, progress=False)


def test_duplicate_detection_scores_against_planted_truth(cleaned, synthetic_raw):
    truth = read_truth(synthetic_raw)
    score = score_against_truth(cleaned, truth)
    assert score["exact_pair_recall"] == 1.0, "every byte-identical copy must be found"
    assert score["duplicate_pair_precision"] >= 0.95
    assert score["near_pair_recall"] >= 0.9
    assert score["unreadable_recall"] == score["unreadable_precision"] == 1.0
    exact = {a for a, _ in truth["exact_duplicates"]}
    kinds = cleaned.groups.drop_duplicates("group").set_index("group")["kind"]
    assert (kinds.loc[cleaned.groups[cleaned.groups["image_id"].isin(exact)]["group"]] == "exact").all()


def test_score_counts_misses_and_false_pairs(cleaned, synthetic_raw):
    truth = read_truth(synthetic_raw)
    fake = {**truth, "near_duplicates": truth["near_duplicates"] + [["000001.jpg", "000002.jpg", "shift"]]}
    assert score_against_truth(cleaned, fake)["near_pair_recall"] < 1.0
    assert duplicate_pairs(cleaned.groups.iloc[:0]) == set()


def test_every_unreadable_file_is_found_and_dropped(cleaned, synthetic_raw):
    truth = read_truth(synthetic_raw)
    unreadable = cleaned.dropped[cleaned.dropped["reason"].str.startswith("unreadable")]
    assert set(unreadable["image_id"]) == set(truth["unreadable"])
    reasons = dict(zip(unreadable["image_id"], unreadable["reason"], strict=True))
    for name, kind in truth["unreadable"].items():
        expected = {"empty": "empty file", "not_jpeg": "not an image", "truncated": "corrupt"}[kind]
        assert expected in reasons[name]
    assert not set(truth["unreadable"]) & set(cleaned.manifest.index)


def test_manifest_keeps_one_image_per_group(cleaned):
    kept = cleaned.groups[cleaned.groups["kept"]]
    assert kept["group"].is_unique
    assert set(kept["image_id"]) <= set(cleaned.manifest.index)
    redundant = cleaned.groups[~cleaned.groups["kept"]]["image_id"]
    assert not set(redundant) & set(cleaned.manifest.index)
    s = cleaned.summary
    assert s["images_kept"] == s["images_listed"] - s["unreadable"] - s["duplicate_groups"]["redundant_images"]


def _frame(rows):
    names = [f"{i:06d}.jpg" for i in range(1, len(rows) + 1)]
    labels = pd.DataFrame(0, index=pd.Index(names, name="image_id"), columns=list(ATTRIBUTES), dtype=np.int8)
    for name, row in zip(names, rows, strict=True):
        for attr in row:
            labels.loc[name, attr] = 1
    return labels


GROUPS = pd.DataFrame(
    {"group": [0, 0, 0, 1, 1], "image_id": [f"{i:06d}.jpg" for i in range(1, 6)], "kind": ["near"] * 3 + ["exact"] * 2}
)
LABELS = _frame([["Smiling"], ["Smiling", "Bangs"], ["Bangs"], ["Male"], ["Male"]])


def test_policy_first_keeps_the_first_with_its_labels():
    table, relabel = duplicates.resolve_groups(GROUPS, LABELS, None, "first")
    assert table["kept"].tolist() == [True, False, False, True, False]
    assert table["labels_conflict"].tolist() == [True] * 3 + [False] * 2
    assert table["conflicting_attributes"].iloc[0] == "Bangs Smiling"
    assert relabel.empty


def test_policy_majority_votes_per_attribute():
    _, relabel = duplicates.resolve_groups(GROUPS, LABELS, None, "majority")
    assert list(relabel.index) == ["000001.jpg"]
    assert relabel.loc["000001.jpg", "Smiling"] == 1 and relabel.loc["000001.jpg", "Bangs"] == 1
    # a tie goes to the first member
    tie = duplicates.resolve_groups(GROUPS.iloc[:2], LABELS, None, "majority")[1]
    assert tie.loc["000001.jpg", "Bangs"] == 0


def test_policy_drop_removes_conflicting_groups_only():
    table, _ = duplicates.resolve_groups(GROUPS, LABELS, None, "drop")
    assert table["kept"].tolist() == [False, False, False, True, False]


def test_identity_conflicts_are_flagged():
    identity = pd.Series([1, 1, 1, 5, 6], index=LABELS.index)
    table, _ = duplicates.resolve_groups(GROUPS, LABELS, identity, "first")
    assert table["identity_conflict"].tolist() == [False] * 3 + [True] * 2


def test_truncated_jpeg_is_reported_not_hashed(tmp_path, synthetic_raw):
    images = ImageArchive.of(synthetic_raw)
    name = next(n for n in images.names() if len(images.read(n)) > 1000)
    check = duplicates.check_image(name, images.read(name)[:600])
    assert check.phash is None and check.problem.startswith("corrupt")


def test_hashes_match_imagehash_phash_of_a_full_decode(synthetic_raw):
    import imagehash

    images = ImageArchive.of(synthetic_raw)
    truth = read_truth(synthetic_raw)
    names = [n for n in images.names() if n not in truth["unreadable"]][:80]
    ours = [duplicates.check_image(n, images.read(n), 8) for n in names]
    theirs = [imagehash.phash(Image.open(io.BytesIO(images.read(n))), hash_size=8).hash.ravel() for n in names]
    bits = np.array(
        [(np.unpackbits(np.frombuffer(a.phash, np.uint8)) != b).sum() for a, b in zip(ours, theirs, strict=True)]
    )
    # Rounding (uint8 between PIL's passes, luma from the file vs from RGB) moves a bit now and then.
    assert bits.mean() <= 0.5 and bits.max() <= 3, bits
    thumb = np.frombuffer(ours[0].thumb, np.uint8).reshape(16, 16).astype(int)
    pil = np.asarray(Image.open(io.BytesIO(images.read(names[0]))).convert("L").resize((16, 16), Image.BOX), int)
    assert np.abs(thumb - pil).mean() < 2


def test_a_jpeg_turbo_refuses_is_still_hashed_through_pil(synthetic_raw):
    images = ImageArchive.of(synthetic_raw)
    name = images.names()[0]
    img = Image.open(io.BytesIO(images.read(name)))
    buf = io.BytesIO()
    img.convert("CMYK").save(buf, format="JPEG")  # turbo's GRAY decode refuses CMYK
    check = duplicates.check_image(name, buf.getvalue())
    assert check.problem is None and check.phash is not None
