"""Cleaning: the near-duplicate index against brute force, scores against the planted flaws, the policies."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattrs.cleaning import duplicates
from faceattrs.cleaning.clean import clean, duplicate_pairs, score_against_truth
from faceattrs.cleaning.reasons import Dropped, Unreadable
from faceattrs.core.params import DedupeParams
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import read_truth


@pytest.mark.parametrize("radius", [0, 2, 4, 7, 8, 10])
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
    assert score["duplicate_pair_precision"] == 1.0, "a look-alike or another pair was merged"
    assert score["lookalike_pairs_kept_apart"] == 1.0
    assert score["background_hue_lookalikes"] >= 3, "the generator plants the same face before another hue"
    assert score["background_hue_pairs_kept_apart"] == 1.0
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
    unreadable = cleaned.dropped[cleaned.dropped["reason"] == Dropped.UNREADABLE]
    assert set(unreadable["image_id"]) == set(truth["unreadable"])
    details = dict(zip(unreadable["image_id"], unreadable["detail"], strict=True))
    for name, kind in truth["unreadable"].items():
        expected = {"empty": Unreadable.EMPTY, "not_jpeg": Unreadable.NOT_AN_IMAGE, "truncated": Unreadable.CORRUPT}
        assert details[name].startswith(expected[kind])
    assert list(cleaned.dropped["reason"].cat.categories) == [str(r) for r in Dropped]
    assert not set(truth["unreadable"]) & set(cleaned.manifest.index)


def test_manifest_keeps_one_image_per_group(cleaned):
    kept = cleaned.groups[cleaned.groups["kept"]]
    assert kept["group"].is_unique
    assert set(kept["image_id"]) <= set(cleaned.manifest.index)
    redundant = cleaned.groups[~cleaned.groups["kept"]]["image_id"]
    assert not set(redundant) & set(cleaned.manifest.index)
    s = cleaned.summary
    assert s["images_kept"] == (
        s["images_listed"] - s["unreadable"] - s["duplicate_groups"]["redundant_images"] - s["no_face"]["dropped"]
    )


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
    assert check.phash is None and check.problem is Unreadable.CORRUPT and check.detail


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


def test_a_jpeg_turbo_refuses_is_still_hashed_through_pil(synthetic_raw):
    images = ImageArchive.of(synthetic_raw)
    name = images.names()[0]
    img = Image.open(io.BytesIO(images.read(name)))
    buf = io.BytesIO()
    img.convert("CMYK").save(buf, format="JPEG")  # turbo's GRAY decode refuses CMYK
    check = duplicates.check_image(name, buf.getvalue())
    assert check.problem is None and check.phash is not None


def _encoded(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(synthetic_raw) -> np.ndarray:
    images = ImageArchive.of(synthetic_raw)
    truth = read_truth(synthetic_raw)
    name = next(n for n in images.names() if n not in truth["unreadable"] and n not in truth["no_face"])
    return np.asarray(Image.open(io.BytesIO(images.read(name))).convert("RGB"), dtype=float)


@pytest.mark.parametrize("copy", ["recompressed", "shifted", "rescaled"])
def test_a_copy_of_a_photo_is_the_same_photo(photo, copy):
    from faceattrs.cleaning.confirm import compare_bytes

    img = Image.fromarray(photo.astype(np.uint8))
    if copy == "shifted":
        img = img.transform(img.size, Image.AFFINE, (1, 0, -2, 0, 1, 1), resample=Image.BILINEAR)
    elif copy == "rescaled":
        w, h = round(img.width * 1.02), round(img.height * 1.02)
        img = img.resize((w, h), Image.BILINEAR).crop(
            ((w - 178) // 2, (h - 218) // 2, (w - 178) // 2 + 178, (h - 218) // 2 + 218)
        )
    result = compare_bytes(_encoded(photo), _encoded(np.asarray(img, dtype=float), quality=75), 80.0)
    assert result.same_photo(80.0, 6.0), result


def test_a_small_local_change_is_another_photo(photo):
    """One pair of glasses-sized dark rims over an otherwise identical picture: not a copy."""
    from faceattrs.cleaning.confirm import compare_bytes

    changed = photo.copy()
    changed[95:105, 60:80] = changed[95:105, 60:80] * 0.3
    result = compare_bytes(_encoded(photo), _encoded(changed), 80.0)
    assert not result.same_photo(80.0, 6.0), result
    assert result.ratio > 6.0


def _regraded(img: Image.Image, strength: float) -> Image.Image:
    """A colour grade over the whole picture: warmer channels, more saturation, brighter."""
    from PIL import ImageEnhance

    pixels = np.asarray(img, dtype=float) * [1 + 0.1 * strength, 1.0, 1 - 0.1 * strength] + [
        8 * strength,
        0,
        -6 * strength,
    ]
    graded = ImageEnhance.Color(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))).enhance(1 + 0.3 * strength)
    return ImageEnhance.Brightness(graded).enhance(1 + 0.1 * strength)


def _drawn(background_hue: float = 0.0, seed: int = 3) -> Image.Image:
    from faceattrs.synthetic.drawing import draw_face, random_look

    attrs = dict.fromkeys(ATTRIBUTES, 0) | {"No_Beard": 1, "Male": 1}
    look = random_look(np.random.default_rng(seed), True)
    return draw_face(attrs, look, np.random.default_rng([seed, 2]), background_hue=background_hue)[0]


@pytest.mark.parametrize("seed", range(4))
def test_a_regraded_copy_is_the_same_photo(seed):
    from faceattrs.cleaning.confirm import compare_bytes

    original = _drawn(seed=seed)
    result = compare_bytes(_encoded(np.asarray(original)), _encoded(np.asarray(_regraded(original, 1.0)), 85), 80.0)
    assert result.same_photo(80.0, 6.0), result


@pytest.mark.parametrize("seed", range(4))
def test_the_same_face_before_a_background_of_another_hue_is_another_photo(seed):
    from faceattrs.cleaning.confirm import compare_bytes

    turned = _drawn(0.3, seed)
    luma = [0.299, 0.587, 0.114]
    # Equal brightness (but where a saturated colour clips): the two differ in colour only.
    assert abs((np.asarray(turned, float) @ luma).mean() - (np.asarray(_drawn(0.0, seed), float) @ luma).mean()) < 3.0
    result = compare_bytes(_encoded(np.asarray(_drawn(0.0, seed))), _encoded(np.asarray(turned)), 80.0)
    assert not result.same_photo(80.0, 6.0), result


def test_a_regrade_does_not_hide_a_local_change(photo):
    from faceattrs.cleaning.confirm import compare_bytes

    changed = photo.copy()
    changed[95:105, 60:80] = changed[95:105, 60:80] * 0.3
    graded = _regraded(Image.fromarray(changed.astype(np.uint8)), 1.0)
    assert not compare_bytes(_encoded(photo), _encoded(np.asarray(graded, float)), 80.0).same_photo(80.0, 6.0)


def test_lookalikes_are_proposed_by_the_hashes_and_kept_apart(cleaned, synthetic_raw):
    truth = read_truth(synthetic_raw)
    lookalikes = {tuple(sorted(p[:2])) for p in truth["lookalikes"]}
    proposed = {tuple(sorted(p)) for p in cleaned.candidates[["image_a", "image_b"]].itertuples(index=False)}
    # The test is only worth something if the hashes do confuse look-alikes with copies.
    assert len(lookalikes & proposed) >= len(lookalikes) // 3
    assert not lookalikes & duplicate_pairs(cleaned.groups)
    kept = set(cleaned.manifest.index)
    assert all(a in kept and b in kept for a, b in lookalikes)


def test_the_thumbnail_screen_changes_no_verdict_and_spares_comparisons(cleaned, synthetic_raw):
    from faceattrs.cleaning.confirm import confirm_pairs

    p = DedupeParams()
    pairs = cleaned.candidates
    args = (ImageArchive.of(synthetic_raw), pairs["image_a"].tolist(), pairs["image_b"].tolist())
    every = confirm_pairs(*args, p.max_difference, p.max_difference_ratio, float("inf"), workers=2, progress=False)
    screened = pairs["peak"].isna()
    assert every["peak"].notna().all() and screened.any()
    assert (every["same_photo"].to_numpy() == pairs["same_photo"].to_numpy()).all()
    # What the screen settled, the full comparison calls other photos too, by a wide margin.
    assert not every["same_photo"][screened.to_numpy()].any()
    assert pairs.loc[pairs["same_photo"], "thumbnail_difference"].max() < p.max_thumbnail_difference / 1.5
    nothing = confirm_pairs(args[0], [], [], p.max_difference, p.max_difference_ratio, progress=False)
    assert nothing.empty and list(nothing.columns) == ["thumbnail_difference", "peak", "ratio", "same_photo"]


def test_contradicting_labels_are_counted_by_rule():
    from faceattrs.cleaning import rules

    labels = pd.DataFrame(0, index=["a.jpg", "b.jpg", "c.jpg"], columns=list(ATTRIBUTES), dtype=np.int8)
    labels.loc[:, "No_Beard"] = 1
    labels.loc["a.jpg", "No_Beard"] = 0  # a beard on a woman
    labels.loc["b.jpg", ["Bald", "Bangs", "Male"]] = 1
    labels.loc["c.jpg", ["Male", "5_o_Clock_Shadow"]] = [0, 1]
    found = rules.contradictions(labels)
    assert set(zip(found["image_id"], found["rule"], strict=True)) == {
        ("a.jpg", "beard_not_male"),
        ("b.jpg", "bald_bangs"),
        ("c.jpg", "facial_hair_not_male"),
    }
    assert "No_Beard=0" in found.loc[found["image_id"] == "a.jpg", "labels"].iloc[0]


def test_pictures_with_no_face_are_found_and_dropped(cleaned, synthetic_raw):
    truth = read_truth(synthetic_raw)
    score = score_against_truth(cleaned, truth)
    assert len(truth["no_face"]) >= 20
    assert score["no_face_recall"] >= 0.9
    assert score["faces_flagged_as_no_face"] == 0, "a drawn face was taken for a picture with no face"
    dropped = cleaned.dropped.set_index("image_id")["reason"]
    found = cleaned.faces.index[cleaned.faces < DedupeParams().min_face_score]
    assert (dropped.loc[found] == Dropped.NO_FACE).all()
    assert not set(found) & set(cleaned.manifest.index)


def test_no_face_policy_report_keeps_them_and_off_skips_the_check(synthetic_raw):
    report = clean(synthetic_raw, DedupeParams(no_face_policy="report"), workers=2, progress=False)
    assert report.summary["no_face"]["found"] > 0 and report.summary["no_face"]["dropped"] == 0
    flagged = report.faces.index[report.faces < DedupeParams().min_face_score]
    assert set(flagged) <= set(report.manifest.index)
    off = clean(synthetic_raw, DedupeParams(no_face_policy="off"), workers=2, progress=False)
    assert off.faces.empty and off.summary["no_face"]["found"] == 0
    assert score_against_truth(off, read_truth(synthetic_raw))["no_face_recall"] is None


def test_a_real_photo_tells_its_copy_from_a_locally_changed_one():
    # matplotlib's portrait, not a drawn face: a recompressed copy shifted 2 px is the same photo,
    # the same photo with a dark bar over the eyes is not.
    from pathlib import Path

    import matplotlib
    from PIL import ImageDraw

    from faceattrs.cleaning.confirm import compare_bytes

    portrait = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    base = portrait.resize((178, 218))
    shifted = Image.new("RGB", base.size)
    shifted.paste(base, (2, 1))
    barred = base.copy()
    ImageDraw.Draw(barred).rectangle([60, 80, 120, 95], fill=(10, 10, 10))

    def jpeg(img, quality):
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        return out.getvalue()

    # A re-grade of the whole photo stays it; the face before a background turned to another hue does not.
    from faceattrs.synthetic.drawing import turn_hue

    face = Image.new("L", base.size, 0)
    ImageDraw.Draw(face).ellipse([35, 20, 145, 200], fill=255)
    rebacked = Image.composite(base, turn_hue(base, 0.5), face)

    p = DedupeParams()
    copy = compare_bytes(jpeg(base, 90), jpeg(shifted, 70), p.max_difference)
    changed = compare_bytes(jpeg(base, 90), jpeg(barred, 70), p.max_difference)
    regraded = compare_bytes(jpeg(base, 90), jpeg(_regraded(base, 1.0), 80), p.max_difference)
    other_background = compare_bytes(jpeg(base, 90), jpeg(rebacked, 90), p.max_difference)
    assert copy.same_photo(p.max_difference, p.max_difference_ratio)
    assert not changed.same_photo(p.max_difference, p.max_difference_ratio)
    assert regraded.same_photo(p.max_difference, p.max_difference_ratio), regraded
    assert not other_background.same_photo(p.max_difference, p.max_difference_ratio), other_background
